"""Learned incident classifiers that read probe-vehicle reports (`Recording.probes`,
envs/incidents/probes.py) — the learned counterparts of `ProbeFusionRule`:

- `LearnedFusion` (``learned_fusion``): the learned MLP (`LearnedClassifier`) with each lane's
  probe summary added to its inputs: per reading the probe reports, halted probes, the nearest
  and furthest halted probe's distance from the stop line, the probe rule's unexplained gap
  (`unexplained_gap`: empty road ahead of the nearest halted probe that the segment counts do
  not fill) and how many readings in a row a halted probe has been reported. It scores the
  readings the lane-only model scores (`lane_trace`: a vehicle stands at the stop line with
  nothing crossing, or the lane gap is positive) *or* where a halted probe is reported, holds its
  alarms until the lane discharges and measures its delays from the first evidence to both
  sensor sets (``"fused"``).
- `ProbeOnly` (``probe_only``): the same model over the probe summary alone — no lane detector
  is read (count, halting, segments, speed, outflow); besides the probes it knows only what the
  traffic system knows of its own lanes (the green it commanded, the lane class). It scores the
  readings with a halted probe, and holds an alarm until probes report the lane moving (a report
  and no halted probe), since it has no stop-line loop to see the lane discharge.

Both are trained and calibrated as the learned MLP (fold models, out-of-fold thresholds per lane
class) on *training* recordings with probes only: `fit` refuses a recording whose split is not
``train`` or that has no probe readings (`ConfigError`).
"""

from __future__ import annotations

import numpy as np

from agents.incidents.classifiers import (
    LaneLayout, LearnedClassifier, _run_length, lane_trace, stack_windows, window_features,
)
from agents.incidents.gaps import unexplained_gap
from agents.incidents.probe_fusion import check_probes, check_training_with_probes
from envs.incidents.detection import COLUMN, PROBE_COLUMN, Recording
RUN_CAP = 30  # readings: a halted probe's run length is capped (and scaled) at this


def probe_halted(probes: np.ndarray) -> np.ndarray:
    """``[..., T, N]``: a halted probe is reported on the lane."""
    return probes[..., PROBE_COLUMN["halted"]] >= 1


def _halted_run(probes: np.ndarray) -> np.ndarray:
    return np.minimum(_run_length(probe_halted(probes)), RUN_CAP) / RUN_CAP


def probe_frame(probes: np.ndarray) -> np.ndarray:
    """``[T, N, 5]`` per reading and lane, roughly unit-scaled: reports, halted probes, nearest
    and furthest halted probe's distance from the stop line (per 100 m), halted-run length."""
    p = probes
    return np.stack([p[..., PROBE_COLUMN["reports"]] / 3, p[..., PROBE_COLUMN["halted"]] / 3,
                     p[..., PROBE_COLUMN["halted_nearest_m"]] / 100, p[..., PROBE_COLUMN["halted_furthest_m"]] / 100,
                     _halted_run(p)], -1)


class _ProbeLearned(LearnedClassifier):
    def fit(self, recording: Recording, layout: LaneLayout, *args, **kwargs) -> dict:
        """`LearnedClassifier.fit` on a training recording with probes only (module doc)."""
        check_training_with_probes(recording)
        return super().fit(recording, layout, *args, **kwargs)


class LearnedFusion(_ProbeLearned):
    """The learned MLP over lane readings and probe summaries (module doc)."""

    name = "learned_fusion"
    sensors = "fused"

    def inputs(self, readings: np.ndarray, layout: LaneLayout, probes: np.ndarray | None = None):
        probes = check_probes(readings, probes)
        gap = unexplained_gap(readings, probes) / 50
        extra = stack_windows(np.concatenate([probe_frame(probes), gap[..., None]], -1), self.history)
        features = np.concatenate([window_features(readings, layout, self.history), extra], -1)
        return features, lane_trace(readings) | probe_halted(probes)


def hold_until_probes_move(alarms: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """``[..., T, N]`` alarms kept on from their onset until probes report the lane with no
    halted probe (the probe-only view of a lane that flows again)."""
    out = np.array(alarms, dtype=bool, copy=True)
    halted = probe_halted(probes)
    moving = (probes[..., PROBE_COLUMN["reports"]] >= 1) & ~halted
    for t in range(1, out.shape[-2]):
        out[..., t, :] |= out[..., t - 1, :] & ~moving[..., t, :]
    return out


class ProbeOnly(_ProbeLearned):
    """The learned MLP over probe summaries, the commanded green and the lane class only."""

    name = "probe_only"
    sensors = "probe"

    def inputs(self, readings: np.ndarray, layout: LaneLayout, probes: np.ndarray | None = None):
        probes = check_probes(readings, probes)
        green = readings[..., COLUMN["green"]] / 10  # the signal indication: no lane detector
        permissive = np.broadcast_to(layout.permissive, green.shape).astype(float)
        frame = np.concatenate([probe_frame(probes), green[..., None], permissive[..., None]], -1)
        return stack_windows(frame, self.history), probe_halted(probes)

    def hold(self, alarms: np.ndarray, readings: np.ndarray, probes: np.ndarray | None = None) -> np.ndarray:
        return hold_until_probes_move(alarms, check_probes(readings, probes))


__all__ = ["LearnedFusion", "ProbeOnly", "hold_until_probes_move", "probe_frame", "probe_halted"]
