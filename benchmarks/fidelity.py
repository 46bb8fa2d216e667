"""Fidelity against CityFlow: mean travel time of both baselines on the CityFlow datasets.

    python benchmarks/fidelity.py                     # every dataset with a reference figure
    python benchmarks/fidelity.py --datasets hangzhou_4x4,jinan_3x4

Each baseline runs here under the timing rules CityFlow applies to it, so the comparison is of
the traffic model, not of signal rules:
- fixed_time: CityFlow replays the roadnet's lightphases with instant switches (its phase 0 is
  the only transition), so the engine runs with yellow 0, all-red 0, min green 0.
- max_pressure: the CityFlow harness showed phase 0 (right turns only) for 5 s between phases
  and held each green >= 10 s, so the engine runs with yellow 0, all-red 5, min green 0, and the
  controller's min green is 10 s; ties go to the lowest phase index, as in the harness.

The CityFlow figures (REFERENCE below) were measured with CityFlow built from source
(cityflow-project/CityFlow @ 81ee0f4, interval 1 s, 3600 steps, seed 0, thread_num 1, no lane
changing) by a harness kept outside this repository: CityFlow is never a dependency and nothing
that builds it is committed. Its max-pressure controller used the same pressure definition as
agents/classical/max_pressure.py. Prints one JSON line per (dataset, controller).
"""

from __future__ import annotations

import argparse
import time

from common import at_least, emit, log, machine_info  # noqa: F401  (sets sys.path)

from agents.classical import FixedTime, MaxPressure
from envs.engine import EngineParams, Simulator
from envs.evaluation.metrics import episode_metrics
from envs.scenario import load_scenario
from envs.errors import ConfigError
from envs.scenario.registry import available_datasets, known_datasets

# CityFlow's get_average_travel_time() at t = 3600 s (and vehicles finished), see docstring.
REFERENCE = {
    ("syn_1x1_uniform_800", "fixed_time"): (98.71, 782),
    ("syn_1x1_uniform_800", "max_pressure"): (78.18, 788),
    ("syn_1x1_uniform_1600", "fixed_time"): (102.23, 1558),
    ("syn_1x1_uniform_1600", "max_pressure"): (79.76, 1568),
    ("syn_1x1_uniform_2400", "fixed_time"): (109.35, 2330),
    ("syn_1x1_uniform_2400", "max_pressure"): (419.65, 1884),
    ("hangzhou_4x4", "fixed_time"): (525.28, 2508),
    ("hangzhou_4x4", "max_pressure"): (358.64, 2718),
    ("hangzhou_4x4_5816", "fixed_time"): (537.82, 3959),
    ("hangzhou_4x4_5816", "max_pressure"): (446.67, 4372),
    ("jinan_3x4", "fixed_time"): (444.84, 5256),
    ("jinan_3x4", "max_pressure"): (376.78, 5416),
    ("newyork_16x3", "fixed_time"): (1029.38, 1036),
    ("newyork_16x3", "max_pressure"): (1077.18, 889),
    ("syn_4x4_gaussian", "fixed_time"): (606.52, 7965),
    ("syn_4x4_gaussian", "max_pressure"): (507.57, 7929),
}

CITYFLOW_RULES = {
    "fixed_time": (EngineParams(yellow_s=0, all_red_s=0, min_green_s=0), FixedTime),
    "max_pressure": (EngineParams(yellow_s=0, all_red_s=5, min_green_s=0),
                     lambda: MaxPressure(min_green_s=10, tie_break_by_inflow=False)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=None, help="comma-separated short names (default: all with a reference)")
    parser.add_argument("--steps", type=int, default=3600)
    parser.add_argument("--compile", action="store_true", help="torch.compile the step")
    args = parser.parse_args()
    at_least(args.steps, 1, "benchmarks/fidelity.py", "--steps")  # 0 ran, its lines 'travel_time/mean': null
    names = sorted({d for d, _ in REFERENCE}) if args.datasets is None else args.datasets.split(",")
    for name in names:  # a name that is no dataset was "skipped: not found in the data directory", exit 0
        if name not in known_datasets():
            raise ConfigError("benchmarks/fidelity.py", "--datasets", name,
                              f"not a CityFlow dataset; known: {', '.join(known_datasets())}")
    present = set(available_datasets())
    for name in names:
        if name not in present:
            emit({"dataset": name, "skipped": "dataset not found in the data directory"})
            continue
        scenario = load_scenario(name)
        for controller_name, (params, make) in CITYFLOW_RULES.items():
            log(f"{name} / {controller_name}")
            started = time.perf_counter()
            sim = Simulator(scenario.network, scenario.demand(1), params, compile=args.compile)
            sim.run(args.steps, make())
            metrics = episode_metrics(sim.demand, sim.state)
            ours = float(metrics["travel_time/mean"][0])
            # the reference is CityFlow's at 3600 s: another horizon has none to compare with
            ref_time, ref_finished = REFERENCE.get((name, controller_name), (None, None)) if args.steps == 3600 \
                else (None, None)
            emit({
                "dataset": name, "controller": controller_name, "steps": args.steps,
                "travel_time/mean": round(ours, 2),
                "throughput": int(metrics["throughput"][0]),
                "cityflow_travel_time": ref_time, "cityflow_finished": ref_finished,
                "diff_percent": None if ref_time is None else round(100 * (ours - ref_time) / ref_time, 1),
                "wall_s": round(time.perf_counter() - started, 2),
            })


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
