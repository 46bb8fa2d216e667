"""The same run on the CPU and on CUDA: are the episode metrics equal?

    python benchmarks/device_equality.py                     # cpu vs cuda, the two cases below
    python benchmarks/device_equality.py --devices cpu --seconds 300   # no GPU: the CPU side only

For each case (default: ``hangzhou_4x4`` under max pressure, ``grid_16x8`` under fixed time) the
engine runs ``--copies`` copies, each with its own Poisson demand sample (evaluation split), for
``--seconds`` simulated seconds, eager, on every device in ``--devices``, and the episode metrics
(envs/evaluation/metrics.py, one value per copy) are compared with the first device's. Raw state
hashes are not compared (float rounding in intermediate sums may differ between devices). The
metrics are what evaluation reports: counts and times must be identical, and a float metric
summed over vehicles (delay) may differ by float32 rounding of the sum's order, up to a relative
``--rtol`` (1e-6). One JSON line per case, with ``equal`` and, per differing metric, the largest
absolute difference (``rounding`` lists those within the tolerance); exit status 1 when any case
differs beyond it.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from common import at_least, build, check_controller, dataset_missing, emit, log, make_controller, sync

from envs.errors import ConfigError
from envs.evaluation.metrics import episode_metrics

CASES = ("hangzhou_4x4:max_pressure", "grid_16x8:fixed_time")
SOURCE = "benchmarks/device_equality.py"


def parse_case(case: str) -> tuple[str, str]:
    """``SCENARIO:CONTROLLER`` as (scenario, controller), checked before any run: a case without its
    controller raised a ValueError traceback, a misspelt controller ended the script after the cases before."""
    scenario, colon, controller = case.rpartition(":")
    if not colon or not scenario:
        raise ConfigError(SOURCE, "--cases", case, "expected SCENARIO:CONTROLLER, e.g. hangzhou_4x4:max_pressure")
    return scenario, check_controller(controller, SOURCE, "--cases")


def run(scenario: str, controller_name: str, device: str, args) -> tuple[dict[str, torch.Tensor], float]:
    start = time.perf_counter()
    _, sim = build(scenario, args.copies, device=device, demand="samples", compile=False)
    controller = make_controller(controller_name)
    sim.reset()
    controller.reset(sim)
    state = sim.run(args.seconds, controller)
    metrics = {k: v.detach().cpu() for k, v in episode_metrics(sim.demand, state).items()}
    sync(device)
    return metrics, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), help="SCENARIO:CONTROLLER")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=1800)
    parser.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance for float metrics")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    cases = [parse_case(case) for case in args.cases]
    at_least(args.copies, 1, SOURCE, "--copies")
    at_least(args.seconds, 0, SOURCE, "--seconds")
    if len(set(args.devices)) != len(args.devices):  # `cpu cpu` reported "equal": true, comparing nothing
        raise ConfigError(SOURCE, "--devices", args.devices, "name each device once: a device against itself "
                          "compares nothing")
    if args.threads is not None:  # 0 was ignored silently
        torch.set_num_threads(at_least(args.threads, 1, SOURCE, "--threads"))
    devices = [d for d in args.devices if not d.startswith("cuda") or torch.cuda.is_available()]
    if devices != args.devices:
        log("CUDA is not available: comparing nothing, running the CPU side only")
    all_equal = True
    for scenario, controller in cases:
        if dataset_missing(scenario):
            log(f"{scenario}: dataset not found, skipped")
            continue
        results = {}
        for device in devices:
            log(f"{scenario} {controller} on {device}: {args.copies} copies x {args.seconds} s")
            results[device] = run(scenario, controller, device, args)
        reference, _ = results[devices[0]]
        differs, rounding = {}, {}
        for device in devices[1:]:
            metrics, _ = results[device]
            for name, ref in reference.items():
                other = metrics[name]
                same = torch.equal(ref.isnan(), other.isnan()) and torch.equal(
                    torch.nan_to_num(ref, nan=0.0), torch.nan_to_num(other, nan=0.0))
                if not same:
                    gap = float((ref - other).abs().nan_to_num(float("inf")).max())
                    close = torch.allclose(ref.double(), other.double(), rtol=args.rtol, atol=0.0, equal_nan=True)
                    (rounding if close else differs)[f"{device}:{name}"] = gap
        equal = not differs if len(devices) > 1 else None
        all_equal = all_equal and equal is not False
        emit({
            "benchmark": "device_equality", "scenario": scenario, "controller": controller,
            "copies": args.copies, "seconds": args.seconds, "devices": devices, "equal": equal,
            "differences": differs, "rounding": rounding,
            "travel_time_mean": {d: [round(float(x), 3) for x in r[0]["travel_time/mean"]] for d, r in results.items()},
            "throughput": {d: [int(x) for x in r[0]["throughput"]] for d, r in results.items()},
            "wall_s": {d: round(r[1], 2) for d, r in results.items()},
        })
    return 0 if all_equal else 1


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        with torch.inference_mode():
            sys.exit(main())
