"""Classical baselines: traffic metrics of fixed-time and max-pressure control on a scenario.

For each controller the script builds a `Simulator` over ``--copies`` copies of the scenario's
demand (generated presets take ``--seed``), runs ``--steps`` one-second steps under that
controller from an empty network, and reports every metric of `envs.evaluation.metrics.episode_metrics`
at the end (mean over the copies; the copies are identical, so B > 1 only checks batching),
plus ``pool_blocked`` (seconds trips waited only for a free vehicle slot; should be 0) and the
wall time. ``--trace-every S`` adds ``trace``: [t, vehicles in network, waiting to enter] every
S simulated seconds, to see whether the network loads, saturates or drains.

One JSON line per (scenario, controller) on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import at_least, build, check_controller, dataset_missing, emit, log, make_controller
from envs.errors import ConfigError
from envs.evaluation.metrics import METRIC_NAMES, episode_metrics
from envs.scenario import unread_seed

SOURCE = "benchmarks/baselines.py"


def run_baseline(
    scenario: str, controller: str, steps: int, *, copies: int = 1, seed: int = 0,
    compile: bool = False, trace_every: int = 0, data_dir: str | None = None,
) -> dict:
    record = {"scenario": scenario, "controller": controller, "steps": steps, "copies": copies,
              "seed": seed}
    if dataset_missing(scenario, data_dir):
        return {**record, "skipped": "dataset directory missing or incomplete"}
    sc, sim = build(scenario, copies, seed=seed, compile=compile, data_dir=data_dir)
    ctrl = make_controller(controller, SOURCE, "--controllers")
    trace, done = [], [0]

    def on_step(s) -> None:
        done[0] += 1
        t = done[0]  # steps since the start (no read-back of the state's clock)
        if t % trace_every == 0:
            m = episode_metrics(s.demand, s.state)
            trace.append([t, float(m["vehicles/in_network"].mean()),
                          float(m["vehicles/waiting"].mean())])

    log(f"{scenario} seed={seed} {controller}: {steps} steps, B={copies}, "
        f"{sc.trips.num_trips} trips, compile={compile}")
    start = time.perf_counter()
    sim.run(steps, ctrl, on_step=on_step if trace_every else None)
    wall = time.perf_counter() - start
    metrics = episode_metrics(sim.demand, sim.state)
    record.update(
        trips=sc.trips.num_trips,
        wall_s=round(wall, 3),
        **{name: float(metrics[name].mean()) for name in METRIC_NAMES},
        pool_blocked=int(sim.state.pool_blocked.sum()),
        slots=sim.num_slots,
    )
    if trace_every:
        record["trace"] = trace
    log(f"  {wall:.1f} s: travel_time/mean {record['travel_time/mean']:.1f}, "
        f"throughput {record['throughput']:.0f}, in network {record['vehicles/in_network']:.0f}")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run classical controllers on a scenario and print their metrics as JSON.",
    )
    parser.add_argument("--scenario", default="grid_4x4",
                        help="preset or dataset name (default grid_4x4)")
    parser.add_argument("--controllers", default="fixed_time,max_pressure",
                        help="comma-separated controller names (default fixed_time,max_pressure)")
    parser.add_argument("--steps", type=int, default=3600, help="simulated seconds (default 3600)")
    parser.add_argument("--copies", type=int, default=1, help="batch copies B (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="demand seed of generated presets")
    parser.add_argument("--compile", action="store_true", help="torch.compile the step")
    parser.add_argument("--trace-every", type=int, default=0, metavar="S",
                        help="also report vehicles in network / waiting every S seconds")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--data-dir", help="dataset directory (default: the registry's)")
    args = parser.parse_args(argv)
    # before any run: a bad name or count ended the script after the controllers before it had run
    names = [check_controller(name.strip(), SOURCE, "--controllers") for name in args.controllers.split(",")]
    at_least(args.copies, 1, SOURCE, "--copies")
    at_least(args.steps, 0, SOURCE, "--steps")
    at_least(args.trace_every, 0, SOURCE, "--trace-every")
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, SOURCE, "--threads"))
    unread = unread_seed(args.scenario, args.seed)
    if unread:  # it was ignored, and its JSON line said seed 3
        raise ConfigError(SOURCE, "--seed", args.seed, unread)
    for name in names:
        emit(run_baseline(
            args.scenario, name, args.steps, copies=args.copies, seed=args.seed,
            compile=args.compile, trace_every=args.trace_every, data_dir=args.data_dir,
        ))
    return 0


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        raise SystemExit(main())
