"""End-to-end PPO training throughput, and where the time goes.

    python benchmarks/train_throughput.py                       # grid_4x4 and hangzhou_4x4, both agents
    python benchmarks/train_throughput.py --scenario hangzhou_4x4 --agent ppo_shared \
        --agent-steps 200000 --override env.copies=32

The model and environment are built exactly as train.py builds them (the same composed Hydra
config, `agents.ppo.sb3_trainer.build_env` / `build_model`; ``--override`` takes train.py overrides),
then MaskablePPO learns for ``--agent-steps`` after one untimed warm-up rollout. Timers wrap
the VecEnv's ``step_wait`` (simulation: the engine, observations, rewards, autoreset) and the
PPO update (``model.train``); policy inference is the rest of rollout collection (forward
passes, action masks, the rollout buffer). One JSON line per case:

- ``agent_steps_per_s``: agent-steps (one intersection's decision) learned per wall second;
- ``simulation_s``, ``inference_s``, ``update_s`` and their ``*_fraction`` of the wall time.

Periodic evaluation and checkpoints (train.py's extras) are not included.
"""

from __future__ import annotations

import argparse
import time

import torch
from hydra import compose, initialize_config_dir

from common import ROOT, dataset_missing, emit, log, machine_info

import agents.ppo.config  # noqa: F401  (registers the structured config)
from agents.ppo.config import check_config
from agents.ppo.sb3_trainer import ScaledReward, build_env, build_model, load_scenarios

SWEEP = (("grid_4x4", "ppo_shared"), ("grid_4x4", "ppo_independent"),
         ("hangzhou_4x4", "ppo_shared"), ("hangzhou_4x4", "ppo_independent"))


class Timer:
    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def run_case(scenario: str, agent: str, agent_steps: int, overrides: list[str], threads: int) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            f"scenario={scenario}", f"agent={agent}", "train.device=cpu", *overrides,
        ])
    check_config(cfg)
    torch.set_num_threads(threads)
    train_scenario, _ = load_scenarios(cfg)
    core_env = build_env(cfg, train_scenario)
    venv = ScaledReward(core_env, cfg.agent.reward_scale)
    model = build_model(cfg, venv)
    rollout = cfg.agent.n_steps * venv.num_envs
    model.learn(total_timesteps=rollout)  # warm-up: one rollout and one update, untimed

    simulation, update = Timer(), Timer()
    core_env.step_wait = simulation.wrap(core_env.step_wait)
    model.train = update.wrap(model.train)
    start_steps = model.num_timesteps
    start = time.perf_counter()
    model.learn(total_timesteps=agent_steps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    learned = model.num_timesteps - start_steps
    inference = wall - simulation.seconds - update.seconds
    return {
        "scenario": scenario, "agent": agent, "copies": cfg.env.copies,
        "intersections": core_env.num_intersections,
        "decision_interval_s": cfg.env.decision_interval_s, "n_steps": cfg.agent.n_steps,
        "batch_size": cfg.agent.batch_size, "n_epochs": cfg.agent.n_epochs,
        "engine_compiled": cfg.engine.compile, "threads": threads, "agent_steps": learned,
        "wall_s": round(wall, 3), "agent_steps_per_s": learned / wall,
        "simulation_s": round(simulation.seconds, 3), "inference_s": round(inference, 3),
        "update_s": round(update.seconds, 3),
        "simulation_fraction": simulation.seconds / wall, "inference_fraction": inference / wall,
        "update_fraction": update.seconds / wall,
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default=None)
    parser.add_argument("--agent", default=None, help="ppo_shared | ppo_independent")
    parser.add_argument("--agent-steps", type=int, default=100_000, help="timed agent-steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest here)")
    parser.add_argument("--override", action="append", default=[], help="a train.py override")
    args = parser.parse_args()
    cases = [(args.scenario or s, args.agent or a) for s, a in SWEEP
             if (args.scenario in (None, s)) and (args.agent in (None, a))]
    if not cases:
        cases = [(args.scenario or "grid_4x4", args.agent or "ppo_shared")]
    for scenario, agent in dict.fromkeys(cases):
        if dataset_missing(scenario):
            log(f"skip {scenario}: dataset not found (set GRIDLIGHT_DATA_DIR)")
            continue
        log(f"{scenario} {agent}: {args.agent_steps} agent-steps")
        emit(run_case(scenario, agent, args.agent_steps, args.override, args.threads))


if __name__ == "__main__":
    main()
