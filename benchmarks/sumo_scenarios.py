"""The SUMO scenarios in gridlight: what each import approximated, and one episode of the
scenario's own static programs (fixed time, plan=roadnet) and of max pressure, on the CPU.

    python benchmarks/sumo_scenarios.py                          # every SUMO scenario
    python benchmarks/sumo_scenarios.py --scenarios manhattan_28x7 --controllers max_pressure
    python benchmarks/sumo_scenarios.py --controllers ""             # the import reports only

Prints one JSON line per scenario (the import: load time, sizes, `ImportReport` counts) and one
per (scenario, controller): mean travel time from scheduled departure to arrival, unfinished
trips counted to the horizon (``travel_time/mean``), vehicles finished, wall time and
vehicle-steps per second (seconds vehicles spent in the network / wall time). Engine timing:
the default EngineParams (yellow 3 s, all-red 2 s, min green 5 s).
"""

from __future__ import annotations

import argparse
import time

from common import at_least, emit, log  # noqa: F401  (sets sys.path)

from agents.classical import FixedTime, MaxPressure
from envs.engine import EngineParams, Simulator
from envs.errors import ConfigError
from envs.evaluation.metrics import episode_metrics
from envs.scenario import given_by_path, load_scenario
from envs.scenario.own_files import own_scenario_files
from envs.scenario.registry import known_sumo_datasets

CONTROLLERS = {"fixed_time": FixedTime, "max_pressure": MaxPressure}
SOURCE = "benchmarks/sumo_scenarios.py"


def vehicle_steps(sim: Simulator) -> int:
    """Seconds all vehicles spent inside the network so far (copy 0)."""
    state, trips = sim.state, sim.demand.max_trips
    enter = state.trip_enter[0, :trips]
    finish = state.trip_finish[0, :trips]
    t = int(state.t[0])
    entered = enter >= 0
    end = finish.where(finish >= 0, finish.new_full(finish.shape, t))
    return int((end - enter)[entered].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(known_sumo_datasets()))
    parser.add_argument("--controllers", default="fixed_time,max_pressure")
    parser.add_argument("--steps", type=int, default=3600)
    args = parser.parse_args()
    # checked before any run: a misspelt controller was a KeyError after the load, a CityFlow scenario
    # (no import report) a KeyError, --steps 0 a run whose lines read 'travel_time/mean': null
    for controller in filter(None, args.controllers.split(",")):
        if controller not in CONTROLLERS:
            raise ConfigError(SOURCE, "--controllers", controller,
                              f"unknown controller; known: {', '.join(CONTROLLERS)}")
    for name in args.scenarios.split(","):
        if name not in known_sumo_datasets() and not (given_by_path(name) and own_scenario_files(name)[0] == "sumo"):
            raise ConfigError(SOURCE, "--scenarios", name, f"not a SUMO scenario (a .sumocfg or its folder by path); "
                              f"known: {', '.join(known_sumo_datasets())}")
    at_least(args.steps, 1, SOURCE, "--steps")
    for name in args.scenarios.split(","):
        started = time.perf_counter()
        scenario = load_scenario(name)
        network = scenario.network
        emit({"scenario": name, "load_s": round(time.perf_counter() - started, 2),
              "intersections": network.num_intersections, "roads": network.num_roads,
              "lanes": network.num_lanes, "trips": scenario.trips.num_trips,
              "report": scenario.info["sumo_report"]})
        for controller in filter(None, args.controllers.split(",")):
            log(f"{name} / {controller}")
            started = time.perf_counter()
            sim = Simulator(network, scenario.demand(1), EngineParams())
            sim.run(args.steps, CONTROLLERS[controller]())
            wall = time.perf_counter() - started
            metrics = episode_metrics(sim.demand, sim.state)
            steps = vehicle_steps(sim)
            emit({"scenario": name, "controller": controller, "steps": args.steps,
                  "travel_time/mean": round(float(metrics["travel_time/mean"][0]), 2),
                  "finished": int(metrics["throughput"][0]),
                  "departed": int(metrics["vehicles/departed"][0]),
                  "wall_s": round(wall, 2), "vehicle_steps": steps,
                  "vehicle_steps_per_s": round(steps / wall)})


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
