"""End-to-end PPO training throughput, and where the time goes, for either trainer.

    python benchmarks/train_throughput.py --trainer torchrl --scenario hangzhou_4x4
    python benchmarks/train_throughput.py --trainer sb3 --scenario hangzhou_4x4 --copies 16 64
    python benchmarks/train_throughput.py --trainer torchrl --device cuda --compile --copies 4096 \
        --iterations 3 --override agent.batch_size=262144 --override agent.n_epochs=4
    python benchmarks/train_throughput.py          # sb3: grid_4x4 and hangzhou_4x4, both agents

The trainer and its environment are built exactly as train.py builds them, from the composed
Hydra config (``trainer=``, ``scenario=``, ``agent=``, ``env.copies``, ``env.decision_interval_s``,
``engine.device`` / ``train.device``; ``--override`` adds any train.py override). ``--compile`` and
``--threads`` set ``engine.compile=true`` and ``train.threads``; without them the config's values
hold, a preset's such as ``--override train=fast`` included. Decisions are 5 s apart by default
(``--decision-interval``), as in train.py. ``--warmup`` iterations (one rollout and its
update each; with ``--compile`` they include the torch.compile of the engine step) run untimed,
then ``--iterations`` iterations, or as many as it takes to learn ``--agent-steps``, or as many as
fit in ``--seconds`` (default 30), are timed. Periodic evaluation, baselines, logging and
checkpoints (train.py's extras) are not run.

Where the time goes (timers synchronise the device only at the boundaries of the phases they time):

- ``simulation_s``: the environment's step (engine, observations, rewards, autoreset): TorchRL's
  ``env.step_and_maybe_reset`` / the SB3 VecEnv's ``step_wait``;
- ``inference_s``: the rest of rollout collection: policy forward passes, masks, sampling, the
  rollout buffer (torchrl: the trainer's ``collect`` less the env steps; sb3: the wall time less
  simulation and update, as this script has always reported it);
- ``update_s``: advantages (GAE) and the PPO epochs (torchrl: ``advantages`` + ``update``, also
  reported apart as ``advantages_s``; sb3: ``model.train``, SB3 computes GAE inside the rollout);
- ``*_fraction``: each over ``wall_s``.

One JSON line per case, with ``agent_steps_per_s`` (agent-steps, one decision of an intersection with
two or more signal phases, as train.py counts them: `agents.ppo.deciding`, learned per wall second), the
device, copies, decision interval and ``machine`` (benchmarks/common.py).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time

import torch
from hydra import compose, initialize_config_dir

from common import ROOT, at_least, dataset_missing, emit, log, machine_info, sync

import agents.ppo.config  # noqa: F401  (registers the structured config)
from agents.ppo.config import check_config
from agents.ppo.sb3_logging import silent_logger
from envs.errors import ConfigError, exit_on_error

TRAINERS = ("sb3", "torchrl")
AGENTS = ("ppo_shared", "ppo_independent", "mappo")


class Timer:
    """Accumulates the wall time of the calls it wraps; on CUDA it synchronises before and after
    each call, so the time is the phase's and not whatever was queued before it."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(self.device)
                self.seconds += time.perf_counter() - start

        return timed


def compose_config(args, trainer: str, scenario: str, agent: str, copies: int | None):
    overrides = [
        f"trainer={trainer}", f"scenario={scenario}", f"agent={agent}",
        f"engine.device={args.device}", f"train.device={args.device}",
        f"env.decision_interval_s={args.decision_interval}", f"env.episode_s={args.episode_s}",
        "train.progress=false", "eval.seeds=1",
    ]
    if copies is not None:
        overrides.append(f"env.copies={copies}")
    if args.compile:  # otherwise the config's (false, or a preset's such as train=fast)
        overrides.append("engine.compile=true")
    if args.threads:
        overrides.append(f"train.threads={args.threads}")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, *args.override])
    check_config(cfg)
    return cfg


def _timed_loop(step, args, learned) -> tuple[int, float]:
    """Runs `step()` (one iteration) --iterations times, until --agent-steps have been learned
    (`learned()` counts them), or until --seconds have passed."""
    done, start = 0, time.perf_counter()
    while True:
        step()
        done += 1
        if args.iterations is not None:
            if done >= args.iterations:
                break
        elif args.agent_steps is not None:
            if learned() >= args.agent_steps:
                break
        elif time.perf_counter() - start >= args.seconds:
            break
    return done, time.perf_counter() - start


def run_torchrl(cfg, args) -> dict:
    from agents.ppo.torchrl_trainer import TorchRLTrainer

    device = cfg.engine.device
    with tempfile.TemporaryDirectory(prefix="gridlight-bench-") as run_dir:
        setup_start = time.perf_counter()
        trainer = TorchRLTrainer(cfg, run_dir)
        for _ in range(args.warmup):
            trainer.iteration()
        sync(device)
        setup = time.perf_counter() - setup_start

        rollout, simulation, advantages, update = (Timer(device) for _ in range(4))
        env = trainer.env
        env.step_and_maybe_reset = simulation.wrap(env.step_and_maybe_reset)  # instance attribute
        trainer.collect = rollout.wrap(trainer.collect)
        learner = trainer.ppo_update
        learner.advantages = advantages.wrap(learner.advantages)
        learner.update = update.wrap(learner.update)
        before = trainer.num_timesteps
        sync(device)
        iterations, wall = _timed_loop(trainer.iteration, args, lambda: trainer.num_timesteps - before)
        sync(device)
        learned = trainer.num_timesteps - before
        parts = {
            "simulation_s": simulation.seconds, "inference_s": rollout.seconds - simulation.seconds,
            "update_s": advantages.seconds + update.seconds,
        }
        extra = {"advantages_s": round(advantages.seconds, 4), "rollout_s": round(rollout.seconds, 4),
                 "loss": trainer.opts.loss}
        return _record(cfg, args, trainer.core, iterations, learned, wall, setup, parts, extra)


def run_sb3(cfg, args) -> dict:
    from agents.ppo.run_setup import check_minibatches, load_scenarios
    from agents.ppo.sb3_trainer import _compile_policy, build_env, build_model, learning_env

    device = cfg.engine.device
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    setup_start = time.perf_counter()
    train_scenario, _ = load_scenarios(cfg)
    core_env = build_env(cfg, train_scenario)
    # as train.py: the agent-steps are the decisions of the intersections that decide (agents.ppo.deciding)
    venv, deciding = learning_env(cfg, core_env)
    check_minibatches(cfg.agent, cfg.env.copies, deciding, "sb3", core_env.core.num_intersections)
    model = build_model(cfg, venv)
    model.set_logger(silent_logger())
    if cfg.train.compile:
        _compile_policy(model)
    rollout = cfg.agent.n_steps * venv.num_envs
    if args.warmup:  # one rollout and one update per warm-up iteration, untimed
        model.learn(total_timesteps=rollout * args.warmup)
    sync(device)
    setup = time.perf_counter() - setup_start

    simulation, update = Timer(device), Timer(device)
    core_env.step_wait = simulation.wrap(core_env.step_wait)
    model.train = update.wrap(model.train)
    before = model.num_timesteps

    def one_iteration():  # learn() in rollout-sized chunks, so --seconds can stop between them
        model.learn(total_timesteps=rollout, reset_num_timesteps=False)

    sync(device)
    iterations, wall = _timed_loop(one_iteration, args, lambda: model.num_timesteps - before)
    sync(device)
    learned = model.num_timesteps - before
    parts = {"simulation_s": simulation.seconds, "update_s": update.seconds,
             "inference_s": wall - simulation.seconds - update.seconds}
    return _record(cfg, args, core_env.core, iterations, learned, wall, setup, parts, {})


def _record(cfg, args, core, iterations, learned, wall, setup, parts, extra) -> dict:
    record = {
        "benchmark": "train_throughput", "trainer": cfg.trainer, "scenario": cfg.scenario.name,
        "agent": cfg.agent.name, "device": str(cfg.engine.device), "copies": cfg.env.copies,
        "intersections": core.num_intersections, "decision_interval_s": cfg.env.decision_interval_s,
        "n_steps": cfg.agent.n_steps, "batch_size": cfg.agent.batch_size, "n_epochs": cfg.agent.n_epochs,
        "engine_compiled": bool(cfg.engine.compile), "policy_compiled": bool(cfg.train.compile),
        "threads": torch.get_num_threads(), "warmup_iterations": args.warmup, "setup_s": round(setup, 3),
        "iterations": iterations, "agent_steps": learned, "wall_s": round(wall, 4),
        "agent_steps_per_s": learned / wall,
    }
    for key, seconds in parts.items():
        record[key] = round(seconds, 4)
    for key, seconds in parts.items():
        record[key[:-2] + "_fraction"] = seconds / wall
    record.update(extra)
    record["overrides"] = list(args.override)
    record["machine"] = machine_info()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trainer", choices=TRAINERS, default="sb3")
    parser.add_argument("--scenario", default=None, help="default: grid_4x4 and hangzhou_4x4")
    parser.add_argument("--agent", default=None, choices=AGENTS, help="default: ppo_shared and ppo_independent")
    parser.add_argument("--copies", type=int, nargs="+", default=None, help="B (default: the config's, 16)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (engine and policy)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine step")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, default=30.0, help="time iterations until this many seconds")
    budget.add_argument("--iterations", type=int, default=None, help="time exactly this many iterations")
    budget.add_argument("--agent-steps", type=int, default=None,
                        help="time whole iterations until this many agent-steps are learned")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    parser.add_argument("--decision-interval", type=int, default=5, help="seconds per decision (default 5)")
    parser.add_argument("--episode-s", type=int, default=3600)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--override", action="append", default=[], help="a train.py override KEY=VALUE")
    args = parser.parse_args()
    source = "benchmarks/train_throughput.py"  # a zero budget timed one iteration, negative copies a traceback
    for flag, value, minimum in (("--iterations", args.iterations, 1), ("--agent-steps", args.agent_steps, 1),
                                 ("--warmup", args.warmup, 0), ("--threads", args.threads, 1)):
        if value is not None:
            at_least(value, minimum, source, flag)
    for b in args.copies or []:
        at_least(b, 1, source, "--copies")
    if not args.seconds > 0:
        raise ConfigError(source, "--seconds", args.seconds, "must be a number of seconds > 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    if args.trainer == "sb3" and args.agent == "mappo":
        raise SystemExit("agent mappo (a centralised critic) trains with --trainer torchrl only")
    scenarios = [args.scenario] if args.scenario else ["grid_4x4", "hangzhou_4x4"]
    agents = [args.agent] if args.agent else ["ppo_shared", "ppo_independent"]
    cases = [(scenario, agent) for scenario in scenarios for agent in agents]
    for scenario, agent in dict.fromkeys(cases):
        if dataset_missing(scenario):
            log(f"skip {scenario}: dataset not found (set GRIDLIGHT_DATA_DIR)")
            continue
        for copies in args.copies or [None]:
            cfg = compose_config(args, args.trainer, scenario, agent, copies)
            log(f"{args.trainer} {scenario} {agent} B={cfg.env.copies} on {args.device}")
            # a config train.py refuses (e.g. agent.batch_size beyond a few copies' rollout: lower it with
            # --override agent.batch_size=N): one "error: ..." line, exit status 2
            with exit_on_error():
                with contextlib.redirect_stdout(sys.stderr):  # the trainers' status lines: stdout is JSON lines
                    record = (run_torchrl if args.trainer == "torchrl" else run_sb3)(cfg, args)
                emit(record)


if __name__ == "__main__":
    with exit_on_error():  # a config refused while it is composed (e.g. env.copies) was a traceback
        main()
