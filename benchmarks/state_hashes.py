"""Final-state hashes after a run under one controller: a fingerprint of the engine's behaviour.

    python benchmarks/state_hashes.py [--scenarios hangzhou_4x4 jinan_3x4 grid_16x8] [--seconds 3600] [--compile]

Prints one JSON line per scenario: the SHA-256 over every SimState field (name, kind, shape and
values, in field-name order) after `--seconds` of `--controller` on `--copies` distinct Poisson
demand samples (evaluation split). Two commits whose engine behaves identically print the same
hashes; restructuring the code must not change them. Values are hashed widened (integers as
int64, floats as float64), so storing a field in a narrower type that holds the same values
keeps the hash: the fingerprint is of behaviour, not of storage.
"""

from __future__ import annotations

import argparse
import hashlib

import torch

from common import at_least, build, check_controller, dataset_missing, emit, log, make_controller


def state_hash(state) -> str:
    digest = hashlib.sha256()
    for name in sorted(state._fields):
        value = getattr(state, name).detach().cpu()
        if value.dtype == torch.bool:
            kind = "bool"
        elif value.dtype.is_floating_point:
            kind, value = "float", value.to(torch.float64)
        else:
            kind, value = "int", value.to(torch.int64)
        digest.update(f"{name}:{kind}:{tuple(value.shape)}".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["hangzhou_4x4", "jinan_3x4", "grid_16x8"])
    parser.add_argument("--controller", default="max_pressure")
    parser.add_argument("--seconds", type=int, default=3600)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--compile", action="store_true", help="the torch.compile'd step")
    args = parser.parse_args()
    source = "benchmarks/state_hashes.py"  # before any run: a bad name or count ended it after the first scenario
    check_controller(args.controller, source, "--controller")
    at_least(args.copies, 1, source, "--copies")
    at_least(args.seconds, 0, source, "--seconds")
    for name in args.scenarios:
        if dataset_missing(name, args.data_dir):
            log(f"{name}: dataset not found, skipped")
            continue
        _, sim = build(name, args.copies, device=args.device, data_dir=args.data_dir, demand="samples",
                       compile=args.compile)
        controller = make_controller(args.controller)
        sim.reset()
        controller.reset(sim)
        state = sim.run(args.seconds, controller)
        finished = int((state.trip_finish >= 0).sum())
        emit({"scenario": name, "controller": args.controller, "seconds": args.seconds,
              "copies": args.copies, "device": str(args.device), "compiled": args.compile, "finished_trips": finished,
              "state_sha256": state_hash(state)})


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        with torch.inference_mode():
            main()
