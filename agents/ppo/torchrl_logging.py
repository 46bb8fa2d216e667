"""The TorchRL trainer's bookkeeping: training-episode statistics summed on the device, and the
run's TensorBoard + ``progress.csv`` writer (the SB3 path's tag names and CSV layout)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from agents.ppo.atomic_files import (
    STEP_COLUMN, defined_scalars, earlier_progress, last_row_step, purge_step, write_csv_atomic,
)
from envs.evaluation.metrics import METRIC_NAMES


class EpisodeStats:
    """Finished training episodes' metrics and returns (raw reward), summed on the device from
    each step's reward and the env's ``last_info["episode"]`` (a [B] mask of the copies that ended)."""

    def __init__(self, core, interval_s: int, deciding: torch.Tensor | None = None) -> None:
        self.returns = torch.zeros(core.copies, core.num_intersections, device=core.device)
        # ep_rew_mean: the return per intersection that decides (agents.ppo.deciding), as SB3's rows give it
        self.deciding = None if deciding is None or bool(deciding.all()) else torch.nonzero(deciding).squeeze(1).to(
            core.device)
        self.sums = torch.zeros(len(METRIC_NAMES) + 2, device=core.device)  # metrics, return, length
        self.defined = torch.zeros(len(METRIC_NAMES) + 2, device=core.device)  # episodes with each figure
        self.count = torch.zeros((), device=core.device)
        self.interval_s = interval_s

    def observe(self, reward: torch.Tensor, info: dict) -> None:
        """One step: ``reward [B, I]`` and the core's info (no host read: the core already
        decided on the host whether any copy ended, and said so by the "episode" key)."""
        self.returns += reward
        if "episode" in info:
            episode, done = info["episode"], info["_episode"]
            per_copy = [episode[name] for name in METRIC_NAMES]
            returns = self.returns if self.deciding is None else self.returns.index_select(1, self.deciding)
            per_copy += [returns.mean(1), episode["length_s"] / self.interval_s]
            # where, not a product: a copy still running (a fresh episode with no trip finished) holds NaN
            # metrics; an ended episode's NaN (no trip finished) is undefined there, left out of that mean
            values = torch.stack(per_copy).to(torch.float32)
            counted = done & ~values.isnan()
            self.sums += torch.where(counted, values, 0.0).sum(1)
            self.defined += counted.sum(1)
            self.count += done.sum()
            self.returns *= (~done).unsqueeze(1)

    def read(self) -> dict[str, float]:
        """The means since the last read, keyed by their SB3 tags (one host copy); resets. A figure
        defined in none of the episodes is left out."""
        values = torch.cat([self.sums / self.defined.clamp(min=1), self.defined, self.count.view(1)]).tolist()
        self.sums.zero_()
        self.defined.zero_()
        self.count.zero_()
        if not values[-1]:
            return {}
        names = [f"rollout/{n}" for n in METRIC_NAMES] + ["rollout/ep_rew_mean", "rollout/ep_len_mean"]
        means, defined = values[:len(names)], values[len(names):-1]
        return {**{name: mean for name, mean, n in zip(names, means, defined) if n},
                "rollout/episodes": int(values[-1])}


# what SB3 records with exclude="tensorboard": in progress.csv only (TensorBoard has the step)
CSV_ONLY = frozenset({STEP_COLUMN, "time/iterations", "time/time_elapsed", "train/n_updates"})


class RunLog:
    """TensorBoard + progress.csv (rewritten with a wider header when new columns appear, as SB3's)."""

    def __init__(self, run_dir: Path, resumed_at: int | None = None) -> None:
        """`resumed_at`: a resumed run's starting agent-steps; its folder's progress.csv continues."""
        (run_dir / "tb").mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge_step(resumed_at))
        self.csv = run_dir / "progress.csv"
        self.keys: list[str] = []
        self.rows: list[dict] = []
        if resumed_at is not None:
            self.keys, self.rows = earlier_progress(self.csv, resumed_at)
        self.pending: dict[str, float] = {}

    def record(self, key: str, value: float) -> None:
        self.pending[key] = value

    def dump(self, step: int) -> None:
        for key, value in defined_scalars(self.pending).items():  # NaN: an empty cell, no point
            if key not in CSV_ONLY:
                self.writer.add_scalar(key, value, step)
        self.writer.flush()
        row = {STEP_COLUMN: step, **self.pending}
        new = sorted(set(row) - set(self.keys))
        self.keys += new
        # an evaluation's dump and the rollout's: one row (also a resumed run's at its checkpoint's step)
        if self.rows and last_row_step(self.rows) == step:
            self.rows[-1].update(row)
        else:
            self.rows.append(row)
        write_csv_atomic(self.csv, self.keys, self.rows)  # whole file, atomically: a kill never tears it
        self.pending = {}


__all__ = ["EpisodeStats", "RunLog"]
