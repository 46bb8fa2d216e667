"""Where SUMO's max pressure waits more than SUMO's static programs, by the kind of junction.

    python benchmarks/sumo_where.py --scenario resco_ingolstadt21 --sumo-routes [--mp-sensing lane]

Runs one SUMO scenario twice, its static programs and max pressure with gridlight's rules
(benchmarks/sumo_max_pressure.py), with SUMO's per-edge ``edgeData`` output, and sums the
vehicles' waiting time (seconds at under 0.1 m/s) on the edges that end at each kind of junction
(SUMO's junction ``type``: traffic_light, priority, right_before_left, ...; ``priority_no_conflicts``
and the like when no two of the junction's links cross, a node that only splits a road, whose
queue is the next junction's). One JSON line per
simulator and controller (waiting by junction type, vehicles inserted and never inserted, and
the insertion delay of the finished trips: queues at the origins, which no edge's waiting time
counts), then one per edge for the ten edges whose waiting grew most in SUMO. ``--sumo-routes``
pins the trips to the routes SUMO chose in a first static run (benchmarks/sumo_routes.py), so
both runs drive the same paths. gridlight runs the same scenario with the same two controllers
(as benchmarks/sumo_fidelity.py does) and is counted the same way: per lane, each second, the
vehicles below 0.1 m/s, summed by the junction its road ends at, and its trips' wait to enter.
Needs eclipse-sumo.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from common import emit, log  # noqa: F401  (sets sys.path)

import torch

from envs.engine.readings import lane_halting
from envs.scenario import load_scenario, scenario_from_sumo
from envs.errors import ConfigError
from envs.scenario.registry import known_sumo_datasets, sumo_folder
from envs.scenario.sumo.config import find_config, read_config
from sumo_fidelity import run_gridlight_controller, sumo_binary
from sumo_max_pressure import SENSING, gridlight_sensing, run as run_max_pressure, sumo_command
from sumo_routes import pin_sumo_routes


def edge_waiting(config, workdir: Path, tag: str, max_pressure: bool,
                 sensing: str = "lane", network=None) -> tuple[dict, dict]:
    """Edge id -> total waiting seconds in one run of `config` (static, or max pressure), and
    the run's insertion figures (SUMO's statistic output); `network`: gridlight's import of
    `config`, for approach sensing."""
    edges = workdir / f"{tag}_edges.xml"
    additional = workdir / f"{tag}.add.xml"
    additional.write_text(f'<additional><edgeData id="{tag}" file="{edges}" excludeEmpty="true"/>'
                          "</additional>\n")
    stats = workdir / f"{tag}_stats.xml"
    extra = ["--additional-files", str(additional), "--statistic-output", str(stats)]
    trips = workdir / f"{tag}_trips.xml"  # SUMO writes trip statistics only with trip output
    if max_pressure:
        run_max_pressure(sumo_binary(), config, trips, extra_args=extra, sensing=sensing,
                         network=network)
    else:
        subprocess.run(sumo_command(sumo_binary(), config, "--tripinfo-output", str(trips), *extra),
                       check=True, capture_output=True)
    root = ET.parse(stats).getroot()
    vehicles, trip_stats = root.find("vehicles"), root.find("vehicleTripStatistics")
    insertion = {"inserted": int(vehicles.get("inserted")),
                 "not_inserted": int(vehicles.get("waiting")),  # still queued at the end
                 # seconds from scheduled to actual insertion, summed over the finished trips
                 # (SUMO reports their mean and count)
                 "insertion_delay_finished_s": round(float(trip_stats.get("departDelay"))
                                                     * int(trip_stats.get("count")))}
    return {edge.get("id"): float(edge.get("waitingTime", 0.0))
            for edge in ET.parse(edges).getroot().iter("edge")}, insertion


def junction_kind(junction) -> str:
    """SUMO's junction type, with ``_no_conflicts`` for a junction none of whose links has a foe
    (a node that only splits a road; the waiting in front of it belongs to the next junction)."""
    kind = junction.get("type")
    if kind in ("traffic_light", "dead_end", "internal"):
        return kind
    conflicts = any("1" in request.get("foes", "") for request in junction.iter("request"))
    return kind if conflicts else f"{kind}_no_conflicts"


def gridlight_waiting(scenario, config, max_pressure: bool, sensing: str = "lane") -> tuple[dict, dict]:
    """Road id -> vehicle-seconds halted (below 0.1 m/s) in one gridlight run, and its entries."""
    halted = torch.zeros(scenario.network.num_lanes, dtype=torch.int64)

    def count(sim) -> None:
        halted.add_(lane_halting(sim.state, sim.network.num_lanes, 0.1)[0])

    sim = run_gridlight_controller(scenario, config, max_pressure, on_step=count, sensing=sensing)
    network = sim.network
    per_road: dict[str, float] = defaultdict(float)
    for lane, seconds in enumerate(halted.tolist()):
        per_road[network.road_ids[int(network.lane_road[lane])]] += seconds
    trips = scenario.trips.num_trips
    entered = sim.state.trip_enter[0, :trips]
    depart = sim.demand.depart[0, :trips].to(entered.dtype)
    inserted = entered >= 0
    insertion = {"inserted": int(inserted.sum()), "not_inserted": int((~inserted).sum()),
                 "insertion_delay_finished_s": int(
                     (entered - depart)[inserted & (sim.state.trip_finish[0, :trips] >= 0)].sum())}
    return dict(per_road), insertion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="resco_ingolstadt21")
    parser.add_argument("--sumo-routes", action="store_true")
    parser.add_argument("--mp-sensing", choices=SENSING, default="lane",
                        help="what max pressure counts (benchmarks/sumo_max_pressure.py)")
    args = parser.parse_args()
    if args.scenario not in known_sumo_datasets():  # was a KeyError traceback
        raise ConfigError("benchmarks/sumo_where.py", "--scenario", args.scenario,
                          f"not a SUMO scenario; known: {', '.join(known_sumo_datasets())}")
    config = read_config(find_config(sumo_folder(args.scenario)))
    net = ET.parse(config.net_file).getroot()
    ends_at = {edge.get("id"): edge.get("to") for edge in net.iter("edge")}
    junction_type = {junction.get("id"): junction_kind(junction) for junction in net.iter("junction")}
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        if args.sumo_routes:
            log(f"{args.scenario}: SUMO, to pin its routes")
            config, _ = pin_sumo_routes(config, workdir, sumo_binary())
        scenario = (scenario_from_sumo(config.path) if args.sumo_routes
                    else load_scenario(args.scenario))
        log(f"{args.scenario}: static programs")
        static, static_insertion = edge_waiting(config, workdir, "static", False)
        log(f"{args.scenario}: max pressure")
        pressure, pressure_insertion = edge_waiting(config, workdir, "max_pressure", True,
                                                    args.mp_sensing, scenario.network)
        log(f"{args.scenario}: gridlight")
        runs = {("sumo", "static"): (static, static_insertion),
                ("sumo", "max_pressure"): (pressure, pressure_insertion),
                ("gridlight", "static"): gridlight_waiting(scenario, config, False),
                ("gridlight", "max_pressure"): gridlight_waiting(scenario, config, True,
                                                                  args.mp_sensing)}
    routes = "sumo" if args.sumo_routes else "own"
    sensing = {"sumo_mp_sensing": args.mp_sensing,
               "gridlight_mp_sensing": gridlight_sensing(args.mp_sensing)}
    for (simulator, controller), (waiting, insertion) in runs.items():
        by_type: dict[str, float] = defaultdict(float)
        for edge, seconds in waiting.items():
            by_type[junction_type.get(ends_at.get(edge), "unknown")] += seconds
        emit({"scenario": args.scenario, "routes": routes, "simulator": simulator,
              "controller": controller, **sensing, **insertion,
              **{f"waiting_at_{kind}_s": round(seconds) for kind, seconds in sorted(by_type.items())}})
    grown = sorted(set(static) | set(pressure),
                   key=lambda e: static.get(e, 0.0) - pressure.get(e, 0.0))[:10]
    for edge in grown:
        emit({"scenario": args.scenario, "routes": routes, **sensing, "edge": edge,
              "ends_at": ends_at.get(edge),
              "junction_type": junction_type.get(ends_at.get(edge)),
              "static_waiting_s": round(static.get(edge, 0.0)),
              "max_pressure_waiting_s": round(pressure.get(edge, 0.0))})


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
