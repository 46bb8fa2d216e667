"""Raw engine throughput: how many vehicle-steps per second the batched simulator sustains.

For each case (scenario, copies B, demand) the script builds a `Simulator` over B copies of the
scenario, drives it with a controller (fixed_time by default), runs ``--warmup``
steps untimed (this loads the network with vehicles, and with ``--compile`` it triggers the
torch.compile of the step), then times ``--steps`` steps, controller included.

``--demand samples`` (default) gives each copy its own Poisson sample of the scenario's flows
(evaluation split), as training and evaluation run; ``--demand original`` gives every copy the
scenario's own trips, so that under a fixed-time plan all B copies are the same simulation,
step for step. The CPU runs such lockstep copies markedly faster (same code and the same
amount of work, but every copy repeats the memory and branch pattern of the one before), so
that figure flatters the engine; it is kept for comparison with earlier runs.

Reported per case (one JSON line on stdout; progress goes to stderr):

- ``vehicle_steps_per_s``: sum over the timed steps of the vehicles in the network in all
  copies (counted after each step from ``veh_lane``; the count is a running on-device sum,
  read once at the end so it adds no synchronisation), divided by the timed wall time;
- ``env_steps_per_s`` = B * steps / wall, ``slot_steps_per_s`` = B * slots * steps / wall
  (each step touches every slot, empty or not);
- ``bytes_per_slot``: bytes of the per-vehicle state (``veh_*`` fields) / (B * (slots + 1)),
  and ``state_bytes`` the whole state.

The engine grows its vehicle-slot pool when it runs low (a shape change: the compiled step
recompiles once). If that happens inside the timed window, the timed steps are run again from
the pre-timing state widened to the new pool size, and ``retimed`` says so; the warm-up should
normally be long enough for this not to happen.

With no scenario given, it sweeps B in {1, 8, 64, 256} on hangzhou_4x4 and grid_16x8, each
with both demands.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import DEMANDS, at_least, build, dataset_missing, emit, log, machine_info, make_controller, sync
from envs.engine.simulator import grow_slots

SWEEP_SCENARIOS = ("hangzhou_4x4", "grid_16x8")
SWEEP_COPIES = (1, 8, 64, 256)
SOURCE = "benchmarks/sim_throughput.py"


def _timed(sim, controller, steps: int, device: str) -> tuple[float, int]:
    vehicles = torch.zeros((), dtype=torch.int64, device=sim.device)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        sim.step(controller.act(sim))
        vehicles += (sim.state.veh_lane[:, :-1] >= 0).sum()
    sync(device)
    wall = time.perf_counter() - start
    return wall, int(vehicles)  # the only read-back of the count


def run_case(
    scenario: str, copies: int, steps: int, warmup: int, *, device: str = "cpu",
    compile: bool = True, controller: str = "fixed_time", data_dir: str | None = None,
    demand: str = "samples",
) -> dict:
    record = {
        "scenario": scenario, "copies": copies, "demand": demand, "device": device, "compiled": compile,
        "controller": controller, "threads": torch.get_num_threads(), "steps": steps,
        "warmup": warmup,
    }
    if dataset_missing(scenario, data_dir):
        return {**record, "skipped": "dataset directory missing or incomplete"}
    if device.startswith("cuda") and not torch.cuda.is_available():
        return {**record, "skipped": "CUDA not available"}
    if compile:
        torch._dynamo.reset()  # every case recompiles from scratch; no stale cache entries
    t0 = time.perf_counter()
    sc, sim = build(scenario, copies, device=device, compile=compile, data_dir=data_dir, demand=demand)
    setup_s = time.perf_counter() - t0
    ctrl = make_controller(controller)
    ctrl.reset(sim)
    log(f"{scenario} B={copies} demand={demand} {device} compile={compile}: setup {setup_s:.1f} s, "
        f"{sim.num_slots} slots, warm-up {warmup} steps")
    t0 = time.perf_counter()
    for _ in range(warmup):
        sim.step(ctrl.act(sim))
    sync(device)
    warmup_s = time.perf_counter() - t0
    slots_before = sim.num_slots
    before = sim.snapshot()
    log(f"  warm-up {warmup_s:.1f} s ({sim.num_slots} slots); timing {steps} steps")
    wall, vehicle_steps = _timed(sim, ctrl, steps, device)
    retimed = False
    if sim.num_slots != slots_before:
        log(f"  pool grew {slots_before} -> {sim.num_slots} during timing: timing again")
        sim.restore(grow_slots(before, sim.num_slots))
        wall, vehicle_steps = _timed(sim, ctrl, steps, device)
        retimed = True
    slots = sim.num_slots
    state = sim.state
    veh_bytes = sum(x.nbytes for name, x in state._asdict().items() if name.startswith("veh_"))
    record.update(
        slots=slots,
        slots_after_warmup=slots_before,
        retimed=retimed,
        setup_s=round(setup_s, 3),
        warmup_s=round(warmup_s, 3),
        wall_s=round(wall, 4),
        vehicle_steps_per_s=vehicle_steps / wall,
        env_steps_per_s=copies * steps / wall,
        slot_steps_per_s=copies * slots * steps / wall,
        ms_per_step=1000.0 * wall / steps,
        mean_active_vehicles=vehicle_steps / (steps * copies),
        bytes_per_slot=veh_bytes / (copies * (slots + 1)),
        state_bytes=sum(x.nbytes for x in state),
        pool_blocked=int(state.pool_blocked.sum()),
        machine=machine_info(),
    )
    log(f"  {wall:.2f} s: {record['vehicle_steps_per_s']:.3g} vehicle-steps/s, "
        f"{record['env_steps_per_s']:.3g} env-steps/s")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure the batched engine's throughput (vehicle-steps/s). With no "
        "--scenario, sweep B in {1, 8, 64, 256} on hangzhou_4x4 and grid_16x8.",
    )
    parser.add_argument("--scenario", help="preset or dataset name (default: the sweep)")
    parser.add_argument("--copies", type=int, nargs="+", help="batch size(s) B (default: sweep)")
    parser.add_argument("--steps", type=int, default=600, help="timed steps (default 600)")
    parser.add_argument("--warmup", type=int, default=300,
                        help="untimed steps first: loads the network, compiles (default 300)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile the step (default on)")
    parser.add_argument("--controller", default="fixed_time",
                        choices=["fixed_time", "max_pressure"], help="default fixed_time")
    parser.add_argument("--demand", nargs="+", choices=DEMANDS,
                        help="samples: a Poisson sample per copy; original: the scenario's own "
                        "trips in every copy (lockstep). Default samples; the sweep runs both")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--data-dir", help="dataset directory (default: the registry's)")
    args = parser.parse_args(argv)
    for b in args.copies or []:
        at_least(b, 1, SOURCE, "--copies")
    at_least(args.steps, 1, SOURCE, "--steps")  # 0 divided by zero; < 0 gave negative rates
    at_least(args.warmup, 0, SOURCE, "--warmup")
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, SOURCE, "--threads"))

    scenarios = [args.scenario] if args.scenario else list(SWEEP_SCENARIOS)
    copies = args.copies or list(SWEEP_COPIES)
    demands = args.demand or (list(DEMANDS) if not args.scenario else ["samples"])
    for scenario in scenarios:
        for b in copies:
            for demand in demands:
                emit(run_case(
                    scenario, b, args.steps, args.warmup, device=args.device,
                    compile=args.compile, controller=args.controller, data_dir=args.data_dir,
                    demand=demand,
                ))
    return 0


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        raise SystemExit(main())
