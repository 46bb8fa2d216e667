"""PPO training of signal controllers (train.py's body): env, model, logging, checkpoints.

MaskablePPO (sb3-contrib) learns through `envs.rl.sb3_env.IntersectionVecEnv`, whose
sub-environments are the (copy, intersection) pairs, so SB3's ``num_timesteps`` counts
agent-steps (one intersection's decision). ``agent.policy=shared`` is SB3's MLP policy, one set
of parameters for every intersection; ``independent`` is `agents.ppo.indexed_policy`. What this
trainer shares with the TorchRL one (scenarios, resume checks, the run's books) is
`agents.ppo.run_setup`'s.

TensorBoard (``RUN/tb/``; the same scalars in ``RUN/progress.csv``), by prefix:

- ``rollout/<metric>``: the metrics hub's figures (``travel_time/mean``, ``travel_time/p95``,
  ``throughput``, ``queue/halting``, ... see `envs.evaluation.metrics`) of the training episodes that ended
  during the rollout (train-split demand, stochastic actions), mean over those episodes;
  ``rollout/ep_rew_mean`` is the episode return per intersection (unscaled reward),
  ``rollout/episodes`` how many ended.
- ``eval/<metric>``: the current policy, deterministic, on the held-out eval-split demands
  (mean over ``eval.seeds``); ``eval/reduction_vs_<baseline>``: travel-time reduction in % vs
  each baseline, paired per seed; ``eval/best_travel_time``: the best so far.
- ``baseline/<name>/<metric>``: the baselines on the same demands (run once, re-logged at
  every evaluation so that they draw as reference lines).
- ``train/*`` (PPO losses, entropy, approx_kl, clip_fraction, explained_variance, ...) and
  ``time/fps``: SB3's own. ``time/agent_steps_per_s``: agent-steps per second of training
  (rollouts + updates, evaluation and checkpointing excluded) since the run (or resume)
  started; ``time/rollout_agent_steps_per_s``: the last rollout's collection alone.

Checkpoints (``RUN/checkpoints/``, see `agents.ppo.policy`): ``last.zip`` every
``train.checkpoint_every`` agent-steps, at the end and on Ctrl-C / SIGTERM, ``best.zip`` at each
evaluation that lowers the eval mean travel time.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnvWrapper
from torch import nn
from tqdm import tqdm

from agents.ppo.indexed_policy import IndexedActorCriticPolicy
from agents.ppo.atomic_files import rng_state, set_rng_state
from agents.ppo.policy import PolicyController, load_policy, read_meta, read_rng, save_checkpoint
from agents.ppo.config import (
    check_config, demand_spec, engine_params, observation_names, perturbation_config,
)
from agents.ppo.interrupts import interrupts_deferred, saved_on_interrupt
from agents.ppo.periodic_eval import PRIMARY, Evaluator
from agents.ppo.run_messages import eval_line, say, say_baselines, say_interrupted, whole_rollouts
from agents.ppo.run_setup import SAMPLES_PER_SEED, RunRecord, check_architecture, check_layout, load_scenarios
from agents.ppo.sb3_logging import run_logger
from envs.evaluation.metrics import METRIC_NAMES
from envs.scenario import Scenario
from envs.rl.sb3_env import IntersectionVecEnv

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
PPO_KEYS = ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range",
            "ent_coef", "vf_coef", "max_grad_norm", "target_kl", "normalize_advantage")


class ScaledReward(VecEnvWrapper):
    """Multiplies rewards by ``agent.reward_scale`` for learning: queue rewards of tens of vehicles
    would make value targets of hundreds, whose gradients dominate the clipped total gradient."""

    def __init__(self, venv, scale: float) -> None:
        super().__init__(venv)
        self.scale = scale

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        return obs, rewards * self.scale, dones, infos


# ---- building blocks ------------------------------------------------------------------------------


def build_env(cfg: DictConfig, scenario: Scenario) -> IntersectionVecEnv:
    return IntersectionVecEnv(
        copies=cfg.env.copies, scenario=scenario, decision_interval_s=cfg.env.decision_interval_s,
        action_mode=cfg.env.action_mode, green_durations_s=tuple(cfg.env.green_durations_s),
        episode_s=cfg.env.episode_s, observations=observation_names(cfg),
        reward=dict(cfg.env.reward), normalise=cfg.env.normalise,
        demand=demand_spec(cfg.env.demand, "env.demand"), demand_pool=cfg.env.demand_pool, split="train",
        engine=engine_params(cfg), compile=cfg.engine.compile, perturbation=perturbation_config(cfg),
        probes=dict(cfg.env.probes),
    )


def ppo_hyperparameters(cfg: DictConfig) -> dict:
    return {key: cfg.agent[key] for key in PPO_KEYS}


def build_model(cfg: DictConfig, venv) -> MaskablePPO:
    agent = cfg.agent
    policy_kwargs = {
        "net_arch": list(agent.net_arch), "activation_fn": ACTIVATIONS[agent.activation],
        "ortho_init": agent.ortho_init,
    }
    if agent.policy == "independent":
        policy = IndexedActorCriticPolicy
        policy_kwargs["num_intersections"] = venv.get_attr("num_intersections")[0]
    else:
        policy = "MlpPolicy"
    return MaskablePPO(policy, venv, policy_kwargs=policy_kwargs, seed=cfg.seed, device=cfg.train.device,
                       verbose=0, **ppo_hyperparameters(cfg))


def resume_model(cfg: DictConfig, venv, core) -> tuple[MaskablePPO, dict]:
    """The checkpoint's model, on `venv`, with this config's PPO hyperparameters; the policy's
    architecture and observation layout must be the checkpoint's."""
    path = str(cfg.resume)
    meta = read_meta(path)
    check_architecture(path, meta["config"]["agent"], cfg.agent)
    check_layout(path, meta["env"], core.describe())
    model, _ = load_policy(path, env=venv, device=cfg.train.device, seed=cfg.seed, **ppo_hyperparameters(cfg))
    meta = {**meta, "rng": read_rng(path)}  # restored just before learning continues (train())
    # SB3's own rollout state (SB3's convention, not ours): the saved observation belongs to
    # the old env, so learn() must reset the env first
    model._last_obs = None
    return model, meta


def _compile_policy(model: MaskablePPO) -> None:
    """torch.compile the networks in place (state-dict keys, hence checkpoints, unchanged)."""
    extractor = model.policy.mlp_extractor
    for module in (extractor.policy_net, extractor.value_net, model.policy.action_net, model.policy.value_net):
        module.compile()


# ---- the callback ---------------------------------------------------------------------------------


class TrainingCallback(BaseCallback):
    """Traffic metrics of training episodes, periodic evaluation, checkpoints, throughput and the
    progress bar (see the module doc for what is logged where)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, core, evaluator: Evaluator, meta: dict | None) -> None:
        super().__init__()
        self.cfg = cfg
        self.run_dir = run_dir
        self.core = core
        self.evaluator = evaluator
        self.total = int(cfg.train.total_agent_steps)
        self.reward_scale = float(cfg.agent.reward_scale)
        self.record = RunRecord(meta)  # eval history, best travel time, wall clock (restarted at the training start)
        self.last_eval_step = -1
        self.last_checkpoint_step = -1
        self.collecting = False  # in a rollout: its agent-steps are not learnt from yet
        # SB3's update (model.train()) runs between _on_rollout_end and the next _on_rollout_start
        # or _on_training_end: interrupts wait for its end there (a checkpoint holds whole updates)
        self.update_interrupts = ExitStack()
        self.busy_s = 0.0  # evaluation + checkpoint time, left out of the throughput
        self.bar: tqdm | None = None

    # -- SB3 hooks
    def _on_training_start(self) -> None:
        self.start_steps = self.num_timesteps
        self.record.start_clock()
        self.returns = np.zeros(self.training_env.num_envs)
        self.episodes: list[dict[str, float]] = []
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="agent-step", unit_scale=True,
                        file=sys.stderr, disable=not self.cfg.train.progress, mininterval=1.0,
                        desc=f"{self.core.scenario.name} {self.cfg.agent.name}")
        if self.num_timesteps == 0:
            self.evaluate()
            self.logger.dump(self.num_timesteps)

    def _on_rollout_start(self) -> None:
        self.update_interrupts.close()  # an interrupt during the update takes effect here
        # Here the policy has just been updated on every agent-step counted so far, so evaluations
        # and checkpoints happen now (not at rollout end, before the update), labelled with
        # num_timesteps; the dump writes them (and the update's losses) at that step.
        every = self.cfg.train
        due_eval = every.eval_every and self._crossed(self.last_eval_step, every.eval_every)
        if due_eval:
            self.evaluate()
        if every.checkpoint_every and self._crossed(self.last_checkpoint_step, every.checkpoint_every):
            self.checkpoint("last.zip")
        if due_eval:
            self.logger.dump(self.num_timesteps)
        self.rollout_started = time.perf_counter()
        self.rollout_steps = self.num_timesteps
        self.collecting = True

    def _on_step(self) -> bool:
        rewards, dones, infos = self.locals["rewards"], self.locals["dones"], self.locals["infos"]
        self.returns += rewards / self.reward_scale
        if dones.any():
            per_copy = self.core.num_intersections
            for b in np.flatnonzero(dones[::per_copy]):
                rows = slice(b * per_copy, (b + 1) * per_copy)
                metrics = infos[b * per_copy].get("episode_metrics", {})
                self.episodes.append(metrics)
                decisions = metrics.get("length_s", 0.0) / self.cfg.env.decision_interval_s
                self.model.ep_info_buffer.extend([{"r": float(self.returns[rows].mean()), "l": decisions}])
                self.returns[rows] = 0.0
        self.bar.update(self.num_timesteps - self.bar.n)
        return True

    def _on_rollout_end(self) -> None:
        self.update_interrupts.enter_context(interrupts_deferred())  # first: the rollout counts from here
        self.collecting = False
        now = time.perf_counter()
        self.logger.record("time/rollout_agent_steps_per_s",
                           (self.num_timesteps - self.rollout_steps) / max(now - self.rollout_started, 1e-9))
        self.logger.record("time/agent_steps_per_s", self.agent_steps_per_s())
        if self.episodes:
            for name in METRIC_NAMES:
                values = [m[name] for m in self.episodes if name in m]
                if values:
                    self.logger.record(f"rollout/{name}", float(np.mean(values)))
            self.logger.record("rollout/episodes", len(self.episodes))
            self.episodes = []

    def _on_training_end(self) -> None:  # after the last update
        self.update_interrupts.close()
        if self.last_eval_step != self.num_timesteps:
            self.evaluate()
        self.checkpoint("last.zip")
        self.logger.record("time/agent_steps_per_s", self.agent_steps_per_s())
        self.logger.dump(self.num_timesteps)
        self.bar.close()

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: save last.zip and say how to resume. A rollout cut short is dropped
        (the policy has not learnt from it), so the checkpoint counts the steps before it."""
        if self.bar is not None:
            self.bar.close()
        if self.collecting:
            self.model.num_timesteps = self.num_timesteps = self.rollout_steps
        say_interrupted(self.num_timesteps, self.checkpoint("last.zip"))

    # -- helpers
    def _crossed(self, last: int, every: int) -> bool:
        """True once per multiple of `every` agent-steps (at the first update past it)."""
        done_before = max(last, self.start_steps)
        return self.num_timesteps // every > done_before // every

    def agent_steps_per_s(self) -> float:
        wall = self.record.elapsed() - self.busy_s
        return (self.num_timesteps - self.start_steps) / max(wall, 1e-9)

    def evaluate(self) -> dict:
        started, busy_before = time.perf_counter(), self.busy_s  # (a best.zip save counts once)
        controller = PolicyController(model=self.model, meta={"env": self.core.describe()})
        metrics = self.evaluator.evaluate(controller)
        # the step column of progress.csv (TensorBoard has the dump's step; SB3 does the same)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        entry, reductions, improved = self.record.evaluation(self.logger.record, self.evaluator, metrics,
                                                             self.num_timesteps)
        self.last_eval_step = self.num_timesteps
        if improved:
            self.checkpoint("best.zip")
        travel = entry[PRIMARY]
        say(eval_line(self.num_timesteps, travel, reductions), self.bar)
        if self.bar is not None:
            self.bar.set_postfix_str(f"eval tt {travel:.1f} s")
        self.busy_s = busy_before + time.perf_counter() - started
        return entry

    def checkpoint(self, name: str) -> Path:
        started = time.perf_counter()
        meta = self.record.meta(self.cfg, self.core, self.num_timesteps, self.evaluator)
        path = save_checkpoint(self.model, self.run_dir / "checkpoints" / name, meta, rng=rng_state())
        if name == "last.zip":
            self.last_checkpoint_step = self.num_timesteps
        self.busy_s += time.perf_counter() - started
        return path



# ---- the run --------------------------------------------------------------------------------------


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train per `cfg` (the composed train.yaml), writing into `run_dir`. Returns a summary."""
    check_config(cfg)
    run_dir = Path(run_dir)
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    train_scenario, eval_scenario = load_scenarios(cfg)
    venv = build_env(cfg, train_scenario)
    core = venv.core
    env = ScaledReward(venv, cfg.agent.reward_scale)
    if cfg.resume is not None:
        model, meta = resume_model(cfg, env, core)
        first_sample = meta["train_next_sample"]
        say(f"resumed from {cfg.resume} at {model.num_timesteps:,} agent-steps")
    else:
        model, meta = build_model(cfg, env), None
        first_sample = cfg.seed * SAMPLES_PER_SEED
    start_steps = int(model.num_timesteps)
    remaining = int(cfg.train.total_agent_steps) - start_steps
    end = whole_rollouts(int(cfg.train.total_agent_steps), start_steps, model.n_steps * env.num_envs)
    env.seed(first_sample)  # the next reset draws training demand samples from here on
    if cfg.train.compile:
        _compile_policy(model)
    model.set_logger(run_logger(run_dir))

    evaluator = Evaluator(eval_scenario, demand_spec(cfg.eval.demand, "eval.demand"), cfg.eval.seeds,
                          cfg.eval.steps, engine_params(cfg), compile=cfg.engine.compile)
    evaluator.run_baselines(list(cfg.eval.baselines), OmegaConf.to_container(cfg.baseline_params, resolve=True))
    say_baselines(evaluator.baselines, PRIMARY, cfg.eval.seeds)

    callback = TrainingCallback(cfg, run_dir, core, evaluator, meta)
    callback.total = end  # the progress bar's
    if meta is not None and meta.get("rng") is not None:
        set_rng_state(meta["rng"])  # the random state at the save: the run goes on as it would have
    # leaving update_interrupts also ends a deferral that learn() raised out of (no save then)
    with callback.update_interrupts, saved_on_interrupt(callback.interrupted):
        model.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=False)
    return {
        "model": model,
        "start_timesteps": start_steps,
        "num_timesteps": int(model.num_timesteps),
        "best_eval_travel_time": callback.record.best,
        "eval_history": callback.record.history,
        "baselines": {name: float(values[PRIMARY].mean()) for name, values in evaluator.baselines.items()},
        "agent_steps_per_s": callback.agent_steps_per_s(),
        "checkpoints": run_dir / "checkpoints",
    }


__all__ = ["ScaledReward", "TrainingCallback", "build_env", "build_model", "train"]
