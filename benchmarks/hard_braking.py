"""How often vehicles brake harder than comfortable, and why (envs/engine/braking.py's causes):

    GRIDLIGHT_DATA_DIR=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/hard_braking.py \\
        --scenarios hangzhou_4x4 grid_4x4 --seconds 1500

Prints one JSON line per scenario: per cause, the decelerations beyond the vehicle's
comfortable one (count, largest in m/s per step, and the stops to rest from above 5 m/s), after
`--seconds` of `--controller` on `--copies` Poisson demand samples (evaluation split).
"""

from __future__ import annotations

import argparse

import torch

from common import at_least, build, check_controller, dataset_missing, emit, log, make_controller
from envs.engine.braking import CAUSES, step_braking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].rstrip(":") + ".")
    parser.add_argument("--scenarios", nargs="+", default=["hangzhou_4x4", "grid_4x4"],
                        help="scenario names (default: hangzhou_4x4 grid_4x4)")
    parser.add_argument("--controller", default="max_pressure", help="the controller run (default: max_pressure)")
    parser.add_argument("--seconds", type=int, default=1500, help="seconds simulated (default: 1500)")
    parser.add_argument("--copies", type=int, default=1, help="demand samples run side by side (default: 1)")
    parser.add_argument("--data-dir", default=None, help="the datasets' folder (default: GRIDLIGHT_DATA_DIR)")
    args = parser.parse_args()
    source = "benchmarks/hard_braking.py"
    check_controller(args.controller, source, "--controller")
    at_least(args.copies, 1, source, "--copies")
    at_least(args.seconds, 1, source, "--seconds")
    for name in args.scenarios:
        if dataset_missing(name, args.data_dir):
            log(f"{name}: dataset not found, skipped")
            continue
        _, sim = build(name, args.copies, data_dir=args.data_dir, demand="samples")
        controller = make_controller(args.controller)
        sim.reset()
        controller.reset(sim)
        record = {cause: {"count": 0, "largest": 0.0, "to_rest_from_5": 0} for cause in CAUSES}
        braking = None
        for _ in range(args.seconds):
            braking = step_braking(sim, controller.act(sim), braking)
            # braking.speed: each slot's speed before the step, in the pool after it (grown if it grew)
            to_rest = braking.hard & (braking.speed > 5.0) & (sim.state.veh_speed == 0.0)
            for index, cause in enumerate(CAUSES):
                mine = braking.cause == index
                if bool(mine.any()):
                    record[cause]["count"] += int(mine.sum())
                    record[cause]["largest"] = max(record[cause]["largest"], round(float(braking.decel[mine].max()), 2))
                    record[cause]["to_rest_from_5"] += int((mine & to_rest).sum())
        emit({"benchmark": "hard_braking", "scenario": name, "controller": args.controller,
              "seconds": args.seconds, "copies": args.copies, "threads": torch.get_num_threads(), "causes": record})


if __name__ == "__main__":
    main()
