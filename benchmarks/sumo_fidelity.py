"""Fidelity against SUMO: each SUMO scenario's own static programs, run by SUMO itself and by
gridlight (the fixed-time controller replaying the imported programs).

    pip install -e '.[sumo]'      # eclipse-sumo: only this benchmark needs it
    python benchmarks/sumo_fidelity.py --scenarios resco_cologne1,resco_ingolstadt7,resco_grid4x4

Both sides count travel time the same way: for every vehicle scheduled in the sumocfg's window
(departure step ``ceil(depart - begin) < end - begin``, as the importer keeps them), arrival
minus scheduled departure, and for vehicles unfinished at the end, end minus scheduled
departure. SUMO runs with its defaults (1 s steps, teleport after 300 s of standing; its
teleports are reported). gridlight runs the imported programs with an intergreen equal to SUMO's
yellow (``yellow_s`` = the most common duration of the programs' yellow phases, all-red 0,
min green 0), so each green starts when SUMO's does. Prints one JSON line per scenario.

``--max-pressure`` also runs max pressure on both sides with gridlight's rules (min green 10 s,
yellow 3 s, all-red 2 s; SUMO's over TraCI, benchmarks/sumo_max_pressure.py) and says whether
the two rank static programs and max pressure the same way. ``--mp-sensing road`` lets SUMO's
max pressure count a stub lane over gridlight's lengthened road, as gridlight's does; ``lane``
(the default) counts SUMO's lanes as they are; ``approach`` has both simulators count each lane
over its approach through pass-through junctions (sumo_max_pressure.py's doc).

``--sumo-routes`` first pins every origin/destination trip to the route SUMO chose for it in its
own static run (benchmarks/sumo_routes.py), then runs both simulators on that copy: the routes
are then the same on both sides and fixed in both (SUMO no longer reroutes at insertion), so
what differs is the simulation alone.

``--junction-yielding`` runs gridlight with SUMO's right of way (``junction_yielding``: a
permissive green or an unsignalised junction's minor movement waits for the movements it
yields to; envs/engine/right_of_way.py), ``--yield-gap-s`` setting its gap; SUMO's side is the
same either way.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from common import emit, log  # noqa: F401  (sets sys.path)

from agents.classical import FixedTime, MaxPressure
from envs.engine import EngineParams, Simulator
from envs.errors import ConfigError
from envs.evaluation.metrics import episode_metrics
from envs.scenario import load_scenario, scenario_from_sumo
from envs.scenario.registry import SUMO_DATASETS, known_sumo_datasets, sumo_folder
from envs.scenario.sumo.config import find_config, read_config
from envs.scenario.sumo.route_reader import read_routes
from sumo_max_pressure import SENSING, gridlight_sensing, sumo_command
from sumo_routes import pin_sumo_routes

SOURCE = "benchmarks/sumo_fidelity.py"


def sumo_binary() -> str:
    found = shutil.which("sumo") or str(Path(sys.executable).parent / "sumo")
    if not Path(found).exists():
        sys.exit("SUMO not found: pip install eclipse-sumo==1.28.0 (the [sumo] extra)")
    return found


def scheduled_departures(config) -> dict[str, float]:
    """Vehicle id -> scheduled SUMO departure, for the vehicles the window keeps."""
    merged = None
    for route_file in config.route_files:  # one namespace, as the import reads them
        merged = read_routes(route_file, Counter(), (config.begin, config.end), merged)
    out = {}
    for vehicle in merged.vehicles:
        step = math.ceil(vehicle.depart - config.begin)
        if vehicle.depart >= config.begin and step < config.end - config.begin:
            out[vehicle.id] = vehicle.depart
    return out


def run_sumo(config, workdir: Path, extra_args: tuple[str, ...] = ()) -> dict:
    """SUMO's static programs; `extra_args` go to SUMO's command line (a ``--seed``)."""
    trips, stats = workdir / "tripinfo.xml", workdir / "stats.xml"
    started = time.perf_counter()
    subprocess.run(sumo_command(sumo_binary(), config, "--tripinfo-output", str(trips),
                                "--statistic-output", str(stats), *extra_args), check=True, capture_output=True)
    wall = time.perf_counter() - started
    return {**sumo_travel(config, trips, "sumo"), "sumo_teleports": teleports(stats),
            "sumo_wall_s": round(wall, 2)}


def teleports(stats: Path) -> int:
    """Vehicles SUMO teleported (stood 300 s, or collided), from its --statistic-output."""
    return int(ET.parse(stats).getroot().find("teleports").get("total"))


def sumo_travel(config, trips: Path, prefix: str) -> dict:
    """Mean travel time over the scheduled vehicles (unfinished: to the end), from tripinfo."""
    scheduled = scheduled_departures(config)
    arrived = {}
    for info in ET.parse(trips).getroot().iter("tripinfo"):
        if info.get("id") in scheduled:
            arrived[info.get("id")] = float(info.get("arrival"))
    travel = [(arrived[v] if v in arrived else config.end) - depart
              for v, depart in scheduled.items()]
    out = {f"{prefix}_travel_time": round(statistics.fmean(travel), 2),
           f"{prefix}_finished": len(arrived)}
    if prefix == "sumo":
        out["sumo_vehicles"] = len(scheduled)
    return out


def run_sumo_max_pressure(config, workdir: Path, sensing: str, network, extra_args: tuple[str, ...] = ()) -> dict:
    """`network`: gridlight's import of `config` (approach sensing reads its approaches);
    `extra_args` go to SUMO's command line."""
    from sumo_max_pressure import run

    trips, stats = workdir / "tripinfo_mp.xml", workdir / "stats_mp.xml"
    run(sumo_binary(), config, trips, sensing=sensing, network=network,
        extra_args=("--statistic-output", str(stats), *extra_args))
    return {**sumo_travel(config, trips, "sumo_mp"), "sumo_mp_teleports": teleports(stats),
            "sumo_mp_sensing": sensing}


def yellow_seconds(config) -> int:
    root = ET.parse(config.net_file).getroot()
    durations = Counter(round(float(p.get("duration"))) for p in root.iter("phase")
                        if any(c in "yYu" for c in p.get("state")))
    return durations.most_common(1)[0][0] if durations else 0


def run_gridlight_controller(scenario, config, max_pressure: bool, on_step=None,
                             sensing: str = "lane", right_of_way: dict | None = None
                             ) -> Simulator:
    """One copy of `scenario` for the sumocfg's window: the imported programs (with an intergreen
    equal to SUMO's yellow, so each green starts when SUMO's does) or max pressure with
    gridlight's default timing, counting lanes as SUMO's `sensing` asks (`gridlight_sensing`);
    `right_of_way`: the engine's right-of-way settings (``junction_yielding``, ``yield_gap_s``).
    `on_step(sim)` runs after every step."""
    timing = {} if max_pressure else dict(yellow_s=yellow_seconds(config), all_red_s=0,
                                          min_green_s=0)
    params = EngineParams(**timing, **(right_of_way or {}))
    sim = Simulator(scenario.network, scenario.demand(1), params)
    controller = MaxPressure(sensing=gridlight_sensing(sensing)) if max_pressure else FixedTime()
    sim.run(int(config.end - config.begin), controller,
            on_step=on_step)
    return sim


def run_gridlight_max_pressure(scenario, config, sensing: str, right_of_way: dict | None = None
                               ) -> dict:
    sim = run_gridlight_controller(scenario, config, max_pressure=True, sensing=sensing,
                                   right_of_way=right_of_way)
    metrics = episode_metrics(sim.demand, sim.state)
    return {"gridlight_mp_travel_time": round(float(metrics["travel_time/mean"][0]), 2),
            "gridlight_mp_finished": int(metrics["throughput"][0]),
            "gridlight_mp_sensing": gridlight_sensing(sensing)}


def run_gridlight(scenario, config, right_of_way: dict | None = None) -> dict:
    started = time.perf_counter()
    sim = run_gridlight_controller(scenario, config, max_pressure=False,
                                   right_of_way=right_of_way)
    metrics = episode_metrics(sim.demand, sim.state)
    return {"gridlight_travel_time": round(float(metrics["travel_time/mean"][0]), 2),
            "gridlight_finished": int(metrics["throughput"][0]),
            "gridlight_vehicles": scenario.trips.num_trips, "gridlight_yellow_s": sim.params.yellow_s,
            "gridlight_wall_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(known_sumo_datasets()))
    parser.add_argument("--max-pressure", action="store_true",
                        help="also max pressure on both sides (SUMO's over TraCI: slow)")
    parser.add_argument("--sumo-routes", action="store_true",
                        help="both sides drive the routes SUMO chose for the trips (sumo_routes.py)")
    parser.add_argument("--mp-sensing", choices=SENSING,
                        help="what max pressure counts: SUMO's lanes (default), gridlight's road "
                             "length in SUMO (stub edges read as far as gridlight's lengthened road), "
                             "or each lane's approach in both simulators")
    parser.add_argument("--junction-yielding", action="store_true",
                        help="gridlight gives SUMO's right of way (engine.junction_yielding)")
    parser.add_argument("--yield-gap-s", type=float,
                        help=f"with --junction-yielding: engine.yield_gap_s (default {EngineParams().yield_gap_s})")
    args = parser.parse_args()
    # checked before any run: a misspelt scenario ended the script after the runs before it (exit 1), and
    # --yield-gap-s without --junction-yielding or --mp-sensing without --max-pressure were ignored
    for name in args.scenarios.split(","):
        if name not in SUMO_DATASETS:
            raise ConfigError(SOURCE, "--scenarios", name,
                              f"not a SUMO scenario; known: {', '.join(known_sumo_datasets())}")
    if args.yield_gap_s is not None and not args.junction_yielding:
        raise ConfigError(SOURCE, "--yield-gap-s", args.yield_gap_s, "only with --junction-yielding (its rule's gap)")
    if args.yield_gap_s is not None and not 0 < args.yield_gap_s < math.inf:
        raise ConfigError(SOURCE, "--yield-gap-s", args.yield_gap_s, "must be a finite number > 0 (seconds)")
    if args.mp_sensing is not None and not args.max_pressure:
        raise ConfigError(SOURCE, "--mp-sensing", args.mp_sensing, "only with --max-pressure (what its runs count)")
    args.mp_sensing = args.mp_sensing or "lane"
    right_of_way = {"junction_yielding": args.junction_yielding}
    if args.junction_yielding:
        right_of_way["yield_gap_s"] = args.yield_gap_s or EngineParams().yield_gap_s
    for name in args.scenarios.split(","):
        config = read_config(find_config(sumo_folder(name)))
        with tempfile.TemporaryDirectory() as workdir:
            row = {"scenario": name, **{f"gridlight_{k}": v for k, v in right_of_way.items()}}
            if args.sumo_routes:
                log(f"{name}: SUMO, to pin its routes")
                config, pinned = pin_sumo_routes(config, Path(workdir), sumo_binary())
                row.update(routes="sumo", **pinned)
            scenario = scenario_from_sumo(config.path) if args.sumo_routes else load_scenario(name)
            log(f"{name}: SUMO")
            row.update(run_sumo(config, Path(workdir)))
            if args.max_pressure:
                log(f"{name}: SUMO max pressure")
                row.update(run_sumo_max_pressure(config, Path(workdir), args.mp_sensing,
                                                 scenario.network))
            log(f"{name}: gridlight")
            row.update(run_gridlight(scenario, config, right_of_way))
            if args.max_pressure:
                row.update(run_gridlight_max_pressure(scenario, config, args.mp_sensing,
                                                      right_of_way))
        ours, theirs = row["gridlight_travel_time"], row["sumo_travel_time"]
        row["diff_percent"] = round(100 * (ours - theirs) / theirs, 1)
        if args.max_pressure:
            row["same_ranking"] = ((row["sumo_mp_travel_time"] < row["sumo_travel_time"])
                                   == (row["gridlight_mp_travel_time"] < ours))
        emit(row)


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
