"""The SB3 trainer's callback (`agents.ppo.sb3_trainer`): what happens around MaskablePPO's
rollouts and updates. It logs the traffic metrics of training episodes and the throughput,
evaluates the policy and saves checkpoints at the agent-steps ``train.eval_every`` and
``train.checkpoint_every`` ask for, drives the progress bar, defers an interrupt that arrives
during an update to its end, and saves ``last.zip`` on Ctrl-C / SIGTERM. The tags it logs are
listed in the module doc of `agents.ppo.sb3_trainer`.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm

from agents.ppo.atomic_files import STEP_COLUMN, rng_state
from agents.ppo.interrupts import interrupts_deferred
from agents.ppo.periodic_eval import PRIMARY, Evaluator
from agents.ppo.policy import PolicyController, save_checkpoint
from agents.ppo.run_messages import eval_line, say, say_interrupted
from agents.ppo.run_setup import RunRecord
from envs.evaluation.metrics import METRIC_NAMES


class TrainingCallback(BaseCallback):
    """Traffic metrics of training episodes, periodic evaluation, checkpoints, throughput and the
    progress bar (see the module doc of `agents.ppo.sb3_trainer` for what is logged where)."""

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
        self.dumped_step: int | None = None  # the step of the last row written (None before training starts)
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
        # a new run's start; a run resumed from a checkpoint saved at 0 agent-steps (an interrupt in the
        # first rollout) carries that evaluation on: another one doubled it in eval_history and progress.csv
        # a resume owes the evaluation due at its checkpoint's step when an interrupt during that update
        # saved the checkpoint before it: the uninterrupted run evaluated there
        if (self.num_timesteps == 0 and not self.record.history) or self.record.evaluation_due(
                self.num_timesteps, self.cfg.train.eval_every):
            self.evaluate()
            self.logger.dump(self.num_timesteps)
        self.dumped_step = self.num_timesteps

    def _on_rollout_start(self) -> None:
        self.update_interrupts.close()  # an interrupt during the update takes effect here
        # SB3 keeps a 100-episode window for rollout/ep_rew_mean; this rollout's episodes alone are
        # what the other rollout/* tags (and the TorchRL trainer's ep_rew_mean) average
        self.model.ep_info_buffer.clear()
        if self.num_timesteps > self.start_steps:
            self._after_update()
        self.rollout_started = time.perf_counter()
        self.rollout_steps = self.num_timesteps
        self.collecting = True

    def _on_step(self) -> bool:
        rewards, dones, infos = self.locals["rewards"], self.locals["dones"], self.locals["infos"]
        self.returns += rewards / self.reward_scale
        if dones.any():
            per_copy = self.training_env.num_envs // int(self.cfg.env.copies)  # the deciding intersections' rows
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
        if self.episodes:
            for name, value in episode_means(self.episodes).items():
                self.logger.record(f"rollout/{name}", value)
            self.logger.record("rollout/episodes", len(self.episodes))
            self.episodes = []

    def _on_training_end(self) -> None:  # after the last update
        self.update_interrupts.close()
        self._after_update(final=True)
        self.bar.close()

    def _after_update(self, final: bool = False) -> None:
        """The policy has just been updated on every agent-step counted so far: evaluations and
        checkpoints happen now (not at rollout end, before the update), and one dump writes them with
        the update's train/* and the throughput at num_timesteps, the step of the rollout the update
        learnt from (SB3 dumps only before its update, so train/* came out a rollout late)."""
        every = self.cfg.train
        if (every.eval_every and self._crossed(self.last_eval_step, every.eval_every)) or (
                final and self.last_eval_step != self.num_timesteps):
            self.evaluate()
        if final or (every.checkpoint_every and self._crossed(self.last_checkpoint_step, every.checkpoint_every)):
            self.checkpoint("last.zip")
        self._dump()

    def _dump(self) -> None:
        self.logger.record("time/agent_steps_per_s", self.agent_steps_per_s())
        self.logger.dump(self.num_timesteps)
        self.dumped_step = self.num_timesteps

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: save last.zip and say how to resume. A rollout cut short is dropped
        (the policy has not learnt from it), so the checkpoint counts the steps before it; an update
        that ran to its end before the interrupt took effect is saved, and its train/* row written
        (the evaluation due after it is the resumed run's first: `RunRecord.evaluation_due`)."""
        if self.bar is not None:
            self.bar.close()
        if self.collecting:
            self.model.num_timesteps = self.num_timesteps = self.rollout_steps
        elif self.dumped_step is not None and self.num_timesteps > self.dumped_step:
            self._dump()
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
        self.logger.record(STEP_COLUMN, self.num_timesteps, exclude="tensorboard")
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


def episode_means(episodes: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the episodes where it is defined: an episode with no finished trip has
    no ``travel_time/finished_mean`` (NaN), which made the whole rollout's NaN; defined in none, it
    is left out (the TorchRL trainer's `EpisodeStats` does the same)."""
    means = {}
    for name in METRIC_NAMES:
        values = [m[name] for m in episodes if name in m and not np.isnan(m[name])]
        if values:
            means[name] = float(np.mean(values))
    return means


__all__ = ["TrainingCallback", "episode_means"]
