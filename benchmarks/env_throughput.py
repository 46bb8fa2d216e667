"""RL environment throughput: agent decisions per second through the adapters, random actions.

    python benchmarks/env_throughput.py --scenario hangzhou_4x4 --copies 64 --steps 200
    python benchmarks/env_throughput.py            # sweep: hangzhou_4x4, B in {1, 16, 64, 256}

For each adapter (the SB3 VecEnv over (copy, intersection) pairs, and the Gymnasium vector env)
the script builds B copies, resets, runs ``--warmup`` decisions untimed (with ``--compile`` this
includes the torch.compile of the engine step), then times ``--steps`` decisions with uniformly
random valid actions drawn in numpy, as a learner would hand them over. One JSON line per case:

- ``agent_steps_per_s`` = B * intersections * decisions / wall (one agent-step is one
  intersection's decision, sumo-rl's unit);
- ``env_steps_per_s`` = B * decisions / wall (one decision of one whole copy);
- ``sim_seconds_per_s`` = B * decisions * decision_interval_s / wall (simulated seconds).

Observation, reward and autoreset work are inside the timing; the episode is long enough
(``--episode-s``) that resets happen rarely, as in training. If the engine grows its vehicle-slot
pool during the timed decisions (a recompile), they are timed again (``retimed`` counts it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import at_least, dataset_missing, emit, log, machine_info

import envs  # noqa: F401  (registers the Gymnasium id)
from envs.errors import ConfigError
from envs.rl.gym_env import TrafficSignalVectorEnv
from envs.rl.sb3_env import IntersectionVecEnv

SWEEP_COPIES = (1, 16, 64, 256)
ADAPTERS = ("sb3_vec_env", "gym_vector_env")
SOURCE = "benchmarks/env_throughput.py"


def _random_actions(rng: np.random.Generator, num_actions: np.ndarray, copies: int) -> np.ndarray:
    """Uniform valid action per (copy, intersection) ``[B, I]``."""
    draws = rng.random((copies, num_actions.shape[0]))
    return np.floor(draws * num_actions).astype(np.int64)


def run_case(adapter: str, scenario: str, copies: int, steps: int, warmup: int, args) -> dict:
    env_kwargs = dict(
        scenario=scenario, decision_interval_s=args.decision_interval, episode_s=args.episode_s,
        observations=args.observations.split(","), reward=args.reward, compile=args.compile,
        device=args.device,
    )
    if adapter == "sb3_vec_env":
        env = IntersectionVecEnv(copies=copies, **env_kwargs)
        env.reset()
    else:
        env = TrafficSignalVectorEnv(num_envs=copies, **env_kwargs)
        env.reset(seed=0)
    core = env.core
    num_actions = core.layout.num_actions.cpu().numpy()
    rng = np.random.default_rng(0)

    def one_step():
        actions = _random_actions(rng, num_actions, copies)
        if adapter == "sb3_vec_env":
            env.step(actions.reshape(-1))
        else:
            env.step(actions)

    for _ in range(warmup):
        one_step()
    # The engine grows its vehicle-slot pool when congestion needs it (a new shape: one
    # recompile). If that happens inside the timed window, time it again.
    for attempt in range(3):
        slots = core.sim.num_slots
        if str(args.device).startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        if str(args.device).startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        if core.sim.num_slots == slots:
            break
        log(f"slot pool grew {slots} -> {core.sim.num_slots} while timing; timing again")
    inter = core.num_intersections
    return {
        "adapter": adapter, "scenario": scenario, "copies": copies, "intersections": inter,
        "decision_interval_s": args.decision_interval, "decisions": steps, "warmup": warmup,
        "device": args.device, "compiled": args.compile, "threads": torch.get_num_threads(),
        "wall_s": round(wall, 4), "retimed": attempt, "slots": core.sim.num_slots,
        "agent_steps_per_s": copies * inter * steps / wall,
        "env_steps_per_s": copies * steps / wall,
        "sim_seconds_per_s": copies * steps * args.decision_interval / wall,
        "observation_size": core.obs_size,
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default=None, help="default: sweep hangzhou_4x4")
    parser.add_argument("--copies", type=int, default=None)
    parser.add_argument("--steps", type=int, default=200, help="timed decisions")
    parser.add_argument("--warmup", type=int, default=40, help="untimed decisions first")
    parser.add_argument("--decision-interval", type=int, default=5, help="seconds per decision")
    parser.add_argument("--episode-s", type=int, default=3600)
    parser.add_argument("--observations", default="phase_onehot,time_in_phase,lane_count,lane_halting")
    parser.add_argument("--reward", default="queue")
    parser.add_argument("--adapters", default=",".join(ADAPTERS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    # before any case: --copies 0 ran the whole sweep, a misspelt adapter ended the script after the ones before
    adapters = args.adapters.split(",")
    for adapter in adapters:
        if adapter not in ADAPTERS:
            raise ConfigError(SOURCE, "--adapters", adapter, f"unknown adapter; known: {', '.join(ADAPTERS)}")
    at_least(args.steps, 1, SOURCE, "--steps")
    at_least(args.warmup, 0, SOURCE, "--warmup")
    if args.threads is not None:
        torch.set_num_threads(at_least(args.threads, 1, SOURCE, "--threads"))
    scenario = args.scenario or "hangzhou_4x4"
    if dataset_missing(scenario):
        raise SystemExit(f"dataset {scenario!r} not found; set GRIDLIGHT_DATA_DIR")
    copies_list = [at_least(args.copies, 1, SOURCE, "--copies")] if args.copies is not None else list(SWEEP_COPIES)
    for adapter in adapters:
        for copies in copies_list:
            log(f"{adapter} {scenario} B={copies}")
            emit(run_case(adapter, scenario, copies, args.steps, args.warmup, args))


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
