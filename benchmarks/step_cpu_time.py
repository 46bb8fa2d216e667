"""CPU time per engine step, for A/B comparisons of two checkouts on a loaded machine.

    python benchmarks/step_cpu_time.py --scenario hangzhou_4x4 --copies 64 [--steps 100]
        [--warmup 50] [--compile]

One JSON line: the process CPU time (`time.process_time`, one torch thread) and the wall time
per step of ``--steps`` fixed-time steps after ``--warmup`` untimed ones, on a Poisson demand
sample per copy (`common.build(..., demand="samples")`). On a shared machine the wall time of
consecutive runs can differ several-fold while the CPU time per step stays within ~25%, so two
checkouts are compared by running this script alternately in each (docs/benchmarks.md, "Memory
against the batch"). The script imports nothing newer than `common.build`, so it can be copied
into an older checkout.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import build, emit, machine_info, make_controller
from envs.errors import ConfigError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="hangzhou_4x4")
    parser.add_argument("--copies", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    for flag, value, minimum in (("--copies", args.copies, 1), ("--steps", args.steps, 1),
                                 ("--warmup", args.warmup, 0)):
        if value < minimum:  # --steps 0 divided by zero, a negative count gave negative times
            raise ConfigError("benchmarks/step_cpu_time.py", flag, value, f"must be an integer >= {minimum}")
    torch.set_num_threads(1)
    _, sim = build(args.scenario, args.copies, demand="samples", compile=args.compile, data_dir=args.data_dir)
    controller = make_controller("fixed_time")
    controller.reset(sim)
    with torch.inference_mode():
        for _ in range(args.warmup):
            sim.step(controller.act(sim))
        slots = sim.num_slots
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.steps):
            sim.step(controller.act(sim))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    emit({"scenario": args.scenario, "copies": args.copies, "compiled": args.compile, "steps": args.steps,
          "cpu_ms_per_step": 1000 * cpu / args.steps, "wall_ms_per_step": 1000 * wall / args.steps,
          "slots": slots, "slots_after": sim.num_slots, "machine": machine_info()})


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
