"""Incident detectors over lane-detector data (envs/detection.py): a classical rule and a
learned classifier. Both read a copy's readings ``[T, N, F]`` (`envs.detection.READINGS`) and
return alarms ``[T, N]``, using at each reading only that reading and earlier ones.

- `BlockageRule` (classical, in the spirit of the California algorithms' persistence tests: a
  condition must persist before an alarm): a lane is blocked when vehicles stand at its stop
  line (``seg0`` and ``halting`` at least ``min_queue``) and nothing crosses it
  (``outflow == 0``) through ``green_s`` seconds of *green* since it last discharged — a red
  light explains a standing queue, a green one does not. `calibrate` picks the smallest
  ``green_s`` that reaches a precision on training data.
- `LearnedDetector`: an MLP over the lane's last ``history`` readings and its intersection's
  discharge, trained with torch on recordings of generated incidents (training split), its
  alarm threshold calibrated on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from envs.detection import READINGS, Recording, score

COLUMN = {name: k for k, name in enumerate(READINGS)}


def intersection_groups(network, lanes: np.ndarray) -> np.ndarray:
    """The signalised intersection each monitored lane runs into ``[N]``."""
    return network.road_end[network.lane_road].cpu().numpy()[lanes]


def _others_outflow(readings: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per lane and reading, the outflow of the *other* lanes into the same intersection."""
    outflow = readings[..., COLUMN["outflow"]]  # [..., N]
    per_group = np.zeros(outflow.shape[:-1] + (int(groups.max()) + 1,))
    for g in np.unique(groups):
        per_group[..., g] = outflow[..., groups == g].sum(-1)
    return per_group[..., groups] - outflow


def _run_length(condition: np.ndarray) -> np.ndarray:
    """For ``[T, N]`` booleans, how many consecutive readings up to t the condition held."""
    out = np.zeros(condition.shape, dtype=np.int64)
    running = np.zeros(condition.shape[1:], dtype=np.int64)
    for t in range(condition.shape[0]):
        running = np.where(condition[t], running + 1, 0)
        out[t] = running
    return out


@dataclass
class BlockageRule:
    """See the module doc. ``green_s``: seconds of green with a vehicle standing at the stop line
    and nothing crossing it, accumulated since the lane last discharged, that raise an alarm."""

    green_s: float = 10.0
    min_queue: float = 1.0
    name: str = "blockage_rule"

    def silent_green(self, readings: np.ndarray) -> np.ndarray:
        """``[T, N]`` green seconds accumulated with a standing queue and no discharge."""
        r = readings
        # (the lane's mean speed is no help: vehicles still arriving behind the queue move)
        stuck = ((r[..., COLUMN["seg0"]] >= self.min_queue) & (r[..., COLUMN["halting"]] >= self.min_queue)
                 & (r[..., COLUMN["outflow"]] == 0))
        out = np.zeros(stuck.shape)
        running = np.zeros(stuck.shape[1:])
        for t in range(stuck.shape[0]):
            running = np.where(stuck[t], running + r[t, :, COLUMN["green"]], 0.0)
            out[t] = running
        return out

    def detect(self, readings: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        return self.silent_green(readings) >= self.green_s

    def calibrate(self, recording: Recording, precision: float = 0.95, candidates=range(2, 121, 2)) -> dict:
        """Set `green_s` to the smallest candidate that reaches `precision` on the recording
        (training split); returns the figures it was chosen on."""
        silent = np.stack([self.silent_green(copy) for copy in recording.readings])
        best = _calibrate(recording, lambda green_s: silent >= green_s, [float(c) for c in candidates], precision)
        self.green_s = best[0]
        return {"green_s": best[0], **best[1].as_dict()}


def _calibrate(recording: Recording, alarms_at, candidates, precision: float):
    """(candidate, scores): the first candidate (in order: most sensitive first) whose alarms
    reach `precision` on the recording; if none does, the one with the best F1."""
    best, best_f1 = None, -1.0
    for candidate in candidates:
        scores = score(recording, alarms_at(candidate))
        if scores.alarms and scores.precision >= precision:
            return candidate, scores
        p, r = (scores.precision if scores.alarms else 0.0), scores.recall
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
        if f1 > best_f1:
            best, best_f1 = (candidate, scores), f1
    return best


def window_features(readings: np.ndarray, groups: np.ndarray, history: int) -> np.ndarray:
    """``[T, N, history * (F + 2)]``: each lane's last `history` readings, the other lanes' outflow
    into its intersection and the run length of its zero outflow (oldest first; zero-padded)."""
    steps, lanes, _ = readings.shape
    others = _others_outflow(readings, groups)[..., None]
    silent = _run_length((readings[..., COLUMN["outflow"]] == 0) & (readings[..., COLUMN["seg0"]] >= 1))
    frame = np.concatenate([readings, others, np.minimum(silent, 60)[..., None]], -1)
    frame = frame / np.array([10, 10, 5, 5, 5, 10, 3, 10, 10, 30.0])  # rough unit scales
    padded = np.concatenate([np.zeros((history - 1, lanes, frame.shape[-1])), frame], 0)
    windows = np.stack([padded[k : k + steps] for k in range(history)], 2)  # [T, N, H, F']
    return windows.reshape(steps, lanes, -1).astype(np.float32)


class LearnedDetector:
    """A small MLP classifier of (lane, reading) windows; see the module doc."""

    name = "learned_mlp"

    def __init__(self, history: int = 12, hidden: int = 64, seed: int = 0) -> None:
        self.history, self.hidden, self.seed = history, hidden, seed
        self.model: nn.Module | None = None
        self.threshold = 0.5

    def _build(self, width: int) -> nn.Module:
        torch.manual_seed(self.seed)
        return nn.Sequential(nn.Linear(width, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden),
                             nn.ReLU(), nn.Linear(self.hidden, 1))

    def fit(self, recording: Recording, groups: np.ndarray, epochs: int = 30, negatives_per_positive: int = 20,
            precision: float = 0.95, log=print) -> dict:
        x = np.concatenate([window_features(copy, groups, self.history) for copy in recording.readings])
        y = recording.truth.reshape(-1, recording.truth.shape[-1])
        x, y = x.reshape(-1, x.shape[-1]), y.reshape(-1)
        rng = np.random.default_rng(self.seed)
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        if pos.size == 0:
            raise ValueError("the training recording holds no incident reading")
        keep = np.concatenate([pos, rng.choice(neg, size=min(neg.size, pos.size * negatives_per_positive),
                                                replace=False)])
        xs, ys = torch.as_tensor(x[keep]), torch.as_tensor(y[keep], dtype=torch.float32)
        self.model = self._build(xs.shape[1])
        optimiser = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        loss_fn = nn.BCEWithLogitsLoss()
        for epoch in range(epochs):
            order = torch.randperm(len(xs), generator=torch.Generator().manual_seed(self.seed + epoch))
            total = 0.0
            for start in range(0, len(xs), 1024):
                batch = order[start : start + 1024]
                loss = loss_fn(self.model(xs[batch]).squeeze(1), ys[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(batch)
            if epoch % 10 == 9 or epoch == epochs - 1:
                log(f"  learned detector epoch {epoch + 1}/{epochs}: loss {total / len(xs):.4f}")
        # the alarm threshold: the lowest that reaches `precision` on the training recording
        probs = np.stack([self.probabilities(copy, groups) for copy in recording.readings])
        chosen = _calibrate(recording, lambda threshold: probs >= threshold, np.linspace(0.05, 0.995, 190), precision)
        self.threshold = chosen[0]
        return {"threshold": chosen[0], **chosen[1].as_dict()}

    def probabilities(self, readings: np.ndarray, groups: np.ndarray) -> np.ndarray:
        features = torch.as_tensor(window_features(readings, groups, self.history))
        with torch.no_grad():
            return torch.sigmoid(self.model(features.reshape(-1, features.shape[-1]))).reshape(
                features.shape[:2]).numpy()

    def detect(self, readings: np.ndarray, groups: np.ndarray) -> np.ndarray:
        return self.probabilities(readings, groups) >= self.threshold


__all__ = ["BlockageRule", "LearnedDetector", "intersection_groups", "window_features"]
