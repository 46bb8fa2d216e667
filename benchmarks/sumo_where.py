"""Where SUMO's max pressure waits more than SUMO's static programs, by the kind of junction.

    python benchmarks/sumo_where.py --scenario resco_ingolstadt21 --sumo-routes

Runs one SUMO scenario twice, its static programs and max pressure with gridlight's rules
(benchmarks/sumo_max_pressure.py), with SUMO's per-edge ``edgeData`` output, and sums the
vehicles' waiting time (seconds at under 0.1 m/s) on the edges that end at each kind of junction
(SUMO's junction ``type``: traffic_light, priority, right_before_left, ...). One JSON line per
junction type, then one per edge for the ten edges whose waiting grew most; first, per run, the
vehicles inserted and the delay of their insertion (queues at the origins, which no edge's
waiting time counts). ``--sumo-routes``
pins the trips to the routes SUMO chose in a first static run (benchmarks/sumo_routes.py), so
both runs drive the same paths. Needs eclipse-sumo.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from common import emit, log  # noqa: F401  (sets sys.path)

from envs.scenario.registry import sumo_folder
from envs.scenario.sumo.config import find_config, read_config
from sumo_fidelity import sumo_binary
from sumo_max_pressure import run as run_max_pressure
from sumo_routes import pin_sumo_routes


def edge_waiting(config, workdir: Path, tag: str, max_pressure: bool) -> tuple[dict, dict]:
    """Edge id -> total waiting seconds in one run of `config` (static, or max pressure), and
    the run's insertion figures (SUMO's statistic output)."""
    edges = workdir / f"{tag}_edges.xml"
    additional = workdir / f"{tag}.add.xml"
    additional.write_text(f'<additional><edgeData id="{tag}" file="{edges}" excludeEmpty="true"/>'
                          "</additional>\n")
    stats = workdir / f"{tag}_stats.xml"
    extra = ["--additional-files", str(additional), "--statistic-output", str(stats)]
    trips = workdir / f"{tag}_trips.xml"
    if max_pressure:
        run_max_pressure(sumo_binary(), config, trips, extra_args=extra)
    else:
        subprocess.run([sumo_binary(), "-c", str(config.path), "--tripinfo-output", str(trips),
                        "--no-step-log", "true", "--no-warnings", "true", *extra], check=True,
                       capture_output=True)
    root = ET.parse(stats).getroot()
    vehicles, trips = root.find("vehicles"), root.find("vehicleTripStatistics")
    insertion = {"inserted": int(vehicles.get("inserted")),
                 "not_inserted": int(vehicles.get("waiting")),  # still queued at the end
                 # seconds from scheduled to actual insertion, summed over the finished trips
                 # (SUMO reports their mean and count)
                 "insertion_delay_finished_s": round(float(trips.get("departDelay"))
                                                     * int(trips.get("count")))}
    return {edge.get("id"): float(edge.get("waitingTime", 0.0))
            for edge in ET.parse(edges).getroot().iter("edge")}, insertion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="resco_ingolstadt21")
    parser.add_argument("--sumo-routes", action="store_true")
    args = parser.parse_args()
    config = read_config(find_config(sumo_folder(args.scenario)))
    net = ET.parse(config.net_file).getroot()
    ends_at = {edge.get("id"): edge.get("to") for edge in net.iter("edge")}
    junction_type = {junction.get("id"): junction.get("type") for junction in net.iter("junction")}
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        if args.sumo_routes:
            log(f"{args.scenario}: SUMO, to pin its routes")
            config, _ = pin_sumo_routes(config, workdir, sumo_binary())
        log(f"{args.scenario}: static programs")
        static, static_insertion = edge_waiting(config, workdir, "static", False)
        log(f"{args.scenario}: max pressure")
        pressure, pressure_insertion = edge_waiting(config, workdir, "max_pressure", True)
    routes = "sumo" if args.sumo_routes else "own"
    for controller, insertion in (("static", static_insertion), ("max_pressure", pressure_insertion)):
        emit({"scenario": args.scenario, "routes": routes, "controller": controller, **insertion})
    by_type: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for edge in set(static) | set(pressure):
        totals = by_type[junction_type.get(ends_at.get(edge), "unknown")]
        totals[0] += 1
        totals[1] += static.get(edge, 0.0)
        totals[2] += pressure.get(edge, 0.0)
    for kind, (edges, waited_static, waited_pressure) in sorted(by_type.items()):
        emit({"scenario": args.scenario, "routes": routes, "junction_type": kind, "edges": edges, "static_waiting_s": round(waited_static),
              "max_pressure_waiting_s": round(waited_pressure)})
    grown = sorted(set(static) | set(pressure),
                   key=lambda e: static.get(e, 0.0) - pressure.get(e, 0.0))[:10]
    for edge in grown:
        emit({"scenario": args.scenario, "routes": routes, "edge": edge, "ends_at": ends_at.get(edge),
              "junction_type": junction_type.get(ends_at.get(edge)),
              "static_waiting_s": round(static.get(edge, 0.0)),
              "max_pressure_waiting_s": round(pressure.get(edge, 0.0))})


if __name__ == "__main__":
    main()
