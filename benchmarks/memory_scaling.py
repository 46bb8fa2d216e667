"""Memory against the batch: demand tables shared by copies, and the per-copy simulation state.

    python benchmarks/memory_scaling.py [--scenarios grid_16x8] [--copies 1 64 4096] [--samples 1 4 64]
        [--steps 5] [--device cpu] [--compile] [--project 32768]

For every (scenario, B copies, K distinct samples) one JSON line: the bytes of the demand tables
(`Demand.table_bytes`: K samples' tables plus the per-copy sample index), what the same demand
held before sharing (one int64 table row per copy, `legacy_demand_bytes`, computed from the
shapes), the bytes of the simulation state (`SimState`, per copy, with its vehicle slots), and
the bytes per copy and per vehicle slot. Copy b runs Poisson sample ``b % K`` of the evaluation
split. With ``--steps N`` each configuration runs in a fresh process that steps N seconds (every
phase kept) after one uncounted step (it compiles the step under ``--compile``) and reports the
peak memory of those N steps: on the CPU the peak RSS (its high-water mark reset just before them
through /proc/self/clear_refs), on a GPU ``torch.cuda.max_memory_allocated``; so the step's
temporaries are counted. ``--project B`` adds a line that scales the per-copy figures of the last
measured B to B copies (its peak over the loaded process, per copy, plus the K tables). A pair with
K > B is left out; a configuration whose process fails is logged and the sweep goes on, and the
script then exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from common import ROOT, at_least, dataset_missing, emit, log, machine_info

from envs.engine import Simulator
from envs.engine.state import INDEX, SLOT_FIELDS
from envs.errors import ConfigError
from envs.scenario import load_scenario
from envs.scenario.splits import DemandSpec, sample_trips


def nbytes(tensors) -> int:
    return sum(x.numel() * x.element_size() for x in tensors)


def legacy_demand_bytes(demand) -> int:
    """What the demand held with one int64 row per copy (the layout before sharing)."""
    batch, trips, legs = demand.batch_size, demand.max_trips + 1, demand.route_legs
    roads, steps = demand.origin_start.shape[1], demand.horizon + 1
    fields = demand.vehicle.shape[2]
    per_copy = (8 + trips * 8 * 3 + trips * legs * 8 + trips * fields * 4 + 2 * roads * 8 + steps * 8
                + trips * 4)
    return batch * per_copy


def slot_bytes() -> int:
    """State bytes per vehicle slot: every per-vehicle field and the free-slot stack."""
    return sum(torch.empty(0, dtype=dtype).element_size() for dtype, _ in SLOT_FIELDS.values()) + INDEX.itemsize


def proc_status_bytes(key: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"/proc/self/status has no {key}: peak memory needs Linux")


def reset_peak_rss() -> int:
    """Reset the peak RSS to the current RSS (Linux: '5' to /proc/self/clear_refs); returns it."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return proc_status_bytes("VmRSS")


def memory_now(cuda: bool) -> int:
    """Bytes this process holds now: allocated on the GPU, or its resident set on the CPU."""
    return torch.cuda.memory_allocated() if cuda else proc_status_bytes("VmRSS")


def measure(scenario: str, copies: int, samples: int, steps: int, device: str, data_dir,
            compile: bool = False) -> dict:
    cuda = device.startswith("cuda")
    sc = load_scenario(scenario, data_dir=data_dir, device=device)
    pool = [sample_trips(sc, DemandSpec(mode="poisson"), "eval", k) for k in range(samples)]
    if cuda:
        torch.cuda.synchronize()
    baseline = memory_now(cuda)  # the process with the scenario loaded, before any batch
    demand = sc.demand(trips=[pool[b % samples] for b in range(copies)])
    sim = Simulator(sc.network, demand, validate_commands=False, compile=compile)
    state_bytes = nbytes(sim.state)
    table_bytes = demand.table_bytes()
    record = {
        "scenario": scenario, "copies": copies, "samples": samples, "device": device, "compiled": compile,
        "trips": demand.max_trips, "vehicle_slots": sim.num_slots,
        "demand_table_bytes": table_bytes, "legacy_demand_bytes": legacy_demand_bytes(demand),
        "state_bytes": state_bytes,
        "bytes_per_copy": (table_bytes + state_bytes) / copies,
        "state_bytes_per_copy": state_bytes / copies,
        "state_bytes_per_vehicle_slot": slot_bytes(),
        "legacy_bytes_per_copy": (legacy_demand_bytes(demand) + state_bytes) / copies,
    }
    if steps:
        with torch.inference_mode():
            sim.step()  # the first step compiles (with --compile): not part of the peak
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss()
        with torch.inference_mode():
            for _ in range(steps):
                sim.step()
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = proc_status_bytes("VmHWM")
        # everything the batch needs while stepping: tables, state, the step's temporaries (and,
        # on the CPU, what the allocator keeps of them)
        record["baseline_bytes"] = baseline
        record["peak_bytes"] = peak
        record["peak_over_baseline_bytes_per_copy"] = (peak - baseline) / copies
        record["steps"] = steps
        record["vehicle_slots_after"] = sim.num_slots
    return record


def check_args(args) -> None:
    """Counts, before any process starts: --samples 0 failed in every child and --copies 0 or K > B for
    every B left every pair out, each with exit status 0 and no line."""
    source = "benchmarks/memory_scaling.py"
    for flag, values, minimum in (("--copies", args.copies, 1), ("--samples", args.samples, 1),
                                  ("--steps", [args.steps], 0), ("--project", [args.project], 0)):
        for value in values:
            at_least(value, minimum, source, flag)
    if min(args.samples) > max(args.copies):
        raise ConfigError(source, "--samples", args.samples, f"every K exceeds every B {args.copies}: nothing to "
                          "measure (copy b runs sample b % K)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["grid_16x8"])
    parser.add_argument("--copies", nargs="+", type=int, default=[1, 64, 1024])
    parser.add_argument("--samples", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--steps", type=int, default=0, help="step this many seconds (peak memory)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="the torch.compile'd step")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--project", type=int, default=0, help="extrapolate to this many copies")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.one:
        emit(measure(args.scenarios[0], args.copies[0], args.samples[0], args.steps, args.device, args.data_dir,
                     args.compile))
        return 0
    check_args(args)
    failed = 0
    for name in args.scenarios:
        if dataset_missing(name, args.data_dir):
            log(f"{name}: dataset not found, skipped")
            continue
        last = None
        for copies in args.copies:
            for samples in args.samples:
                if samples > copies:
                    continue
                log(f"{name}: B={copies} K={samples}")
                # a fresh process each: peak memory is per process
                command = [sys.executable, __file__, "--one", "--scenarios", name, "--copies", str(copies),
                           "--samples", str(samples), "--steps", str(args.steps), "--device", args.device]
                command += ["--data-dir", args.data_dir] if args.data_dir else []
                command += ["--compile"] if args.compile else []
                out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
                if out.returncode:
                    error = (out.stderr.strip() or "?").splitlines()[-1]
                    log(f"B={copies} K={samples} failed ({out.returncode}): {error}")
                    failed += 1
                    continue
                record = json.loads(out.stdout.strip().splitlines()[-1])
                emit({**record, "machine": machine_info()})
                last = record
        if args.project and last is not None:
            emit(projection(last, args.project))
    if failed:
        log(f"{failed} configuration(s) failed")
    return 1 if failed else 0


def projection(measured: dict, copies: int) -> dict:
    """The measured per-copy peak scaled to `copies` copies (same K: the tables stay)."""
    tables = measured["demand_table_bytes"] + 16 * (copies - measured["copies"])
    state = measured["state_bytes_per_copy"] * copies
    record = {
        "scenario": measured["scenario"], "copies": copies, "samples": measured["samples"],
        "projected_from_copies": measured["copies"], "device": measured["device"],
        "compiled": measured["compiled"], "demand_table_bytes": tables, "state_bytes": state,
        "legacy_demand_bytes": measured["legacy_demand_bytes"] / measured["copies"] * copies,
    }
    if "peak_bytes" in measured:
        per_copy = (measured["peak_over_baseline_bytes_per_copy"] * measured["copies"]
                    - measured["demand_table_bytes"]) / measured["copies"]
        record["peak_bytes"] = measured["baseline_bytes"] + tables + per_copy * copies
    return record


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        sys.exit(main())
