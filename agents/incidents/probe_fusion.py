"""`ProbeFusionRule`: an incident rule that fuses probe-vehicle reports with the lane detectors,
beside the detector-only `BlockageRule` it includes (agents/incidents/classifiers.py).

The evidence a probe adds: a probe standing with *empty road ahead of it*. At a red light, a
queue starts at the stop line, so a halted probe ``d`` metres from the stop line has about
``d / 7.5`` vehicles in front of it; behind a blockage mid-lane, the vehicles that were past the
blockage have left and the stretch ahead of the queue is empty. The lane detectors count the
vehicles in the three 50 m segments before the stop line (``seg0..2``), so for the halted probe
nearest the stop line (``halted_nearest_m`` = d, `envs.incidents.probes`) the rule measures the
**unexplained gap**: of the first ``min(d, 150)`` metres before the stop line, the length not
taken by the vehicles the segments count there (each taking `VEHICLE_SPACING_M`, 7.5 m; a segment only
partly before d counts in proportion)::

    gap = min(d, 150) - 7.5 * sum_k seg_k * clip((d - 50 k) / 50, 0, 1)

counted only while nothing crossed the stop line in the interval (``outflow`` = 0: a
discharging queue spreads out ahead of its halted tail, which is no incident). A lane alarms
when the gap reaches ``gap_m`` for ``persist`` readings in a row, or when the blockage rule
alarms (unless calibration turned it off); the alarm is held until the lane discharges
(`hold_until_discharge`), as the other classifiers'.

`calibrate` takes a *training* recording only (``Recording.split == "train"``; anything else is
a `ConfigError`): it calibrates the blockage rule as that rule does, then picks ``(persist,
gap_m)`` from a grid: among the pairs whose fused alarms reach the target precision on the
training copies, the one with the highest recall, then the smallest mean time to detect (a mean
over fewer, easier incidents is no gain); if none does, the best F1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agents.incidents.classifiers import (
    SOURCE, BlockageRule, LaneLayout, _check, _run_length, hold_until_discharge, waiting_green,
)
from envs.engine.readings import NUM_SEGMENTS, SEGMENT_M
from envs.errors import ConfigError
from envs.incidents.detection import COLUMN, PROBE_COLUMN, Recording, score
from envs.rl.features import VEHICLE_SPACING_M

GAP_CANDIDATES_M = tuple(float(g) for g in range(10, 151, 5))
PERSIST_CANDIDATES = (1, 2, 3)


def unexplained_gap(readings: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """``[..., T, N]`` metres (module doc); 0 where no probe is halted or the lane discharged."""
    d = probes[..., PROBE_COLUMN["halted_nearest_m"]].clip(min=0.0)
    near = np.zeros_like(d)
    for k in range(NUM_SEGMENTS):
        share = ((d - SEGMENT_M * k) / SEGMENT_M).clip(0.0, 1.0)
        near = near + readings[..., COLUMN[f"seg{k}"]] * share
    gap = np.minimum(d, NUM_SEGMENTS * SEGMENT_M) - VEHICLE_SPACING_M * near
    counted = (probes[..., PROBE_COLUMN["halted"]] >= 1) & (readings[..., COLUMN["outflow"]] == 0)
    return np.where(counted, gap, 0.0)


def check_training_with_probes(recording: Recording) -> None:
    """ConfigError unless `recording` holds training incidents recorded with probes: what every
    probe detector calibrates on (never an evaluation incident)."""
    if recording.split != "train":
        raise ConfigError(SOURCE, "recording.split", recording.split,
                          "calibrate on training incidents only (record(..., split='train'))")
    if recording.probes is None:
        raise ConfigError(SOURCE, "recording.probes", None, "record with probes (record(..., probes=ProbeSpec))")


@dataclass
class ProbeFusionRule:
    """See the module doc."""

    gap_m: float = 40.0
    persist: int = 2
    blockage: BlockageRule = field(default_factory=BlockageRule)
    use_blockage: bool = True  # calibrate turns it off where the blockage rule alone misses the precision
    name: str = "probe_fusion"
    sensors = "fused"  # (class attribute) its delays count from the first evidence to lanes or probes

    def _probe_raw(self, gap: np.ndarray, persist: int, gap_m: float) -> np.ndarray:
        """Raw probe alarms ``[..., T, N]`` (before holding)."""
        over = gap >= gap_m
        runs = np.stack([_run_length(copy) for copy in over]) if over.ndim == 3 else _run_length(over)
        return runs >= persist

    def _blockage_raw(self, readings: np.ndarray, layout: LaneLayout) -> np.ndarray:
        if not self.use_blockage:
            return np.zeros(readings.shape[:-1], dtype=bool)
        persistence = np.where(layout.permissive, self.blockage.permissive_green_s, self.blockage.green_s)
        if readings.ndim == 4:
            waited = np.stack([waiting_green(copy, self.blockage.min_queue) for copy in readings])
        else:
            waited = waiting_green(readings, self.blockage.min_queue)
        return waited >= persistence

    def detect(self, readings: np.ndarray, layout: LaneLayout, probes: np.ndarray) -> np.ndarray:
        """Alarms ``[T, N]`` of one copy from its lane readings ``[T, N, F]`` and probe readings
        ``[T, N, len(PROBE_READINGS)]``."""
        _check(readings, layout)
        if probes.shape[:-1] != readings.shape[:-1]:
            raise ConfigError(SOURCE, "probes.shape", tuple(probes.shape),
                              f"probe readings must cover the lane readings' {tuple(readings.shape[:-1])}")
        raw = self._blockage_raw(readings, layout) | self._probe_raw(
            unexplained_gap(readings, probes), self.persist, self.gap_m)
        return hold_until_discharge(raw, readings)

    def calibrate(self, recording: Recording, layout: LaneLayout, precision: float = 0.95) -> dict:
        """Calibrate on a training recording with probes (module doc); returns the chosen
        parameters and their training scores."""
        check_training_with_probes(recording)
        alone = self.blockage.calibrate(recording, layout, precision)
        self.use_blockage = bool(alone["alarms"]) and alone["precision"] >= precision
        blockage = self._blockage_raw(recording.readings, layout)
        gap = unexplained_gap(recording.readings, recording.probes)
        best, best_key, fallback, fallback_f1 = None, None, None, -1.0
        for persist in PERSIST_CANDIDATES:
            for gap_m in GAP_CANDIDATES_M:
                alarms = hold_until_discharge(blockage | self._probe_raw(gap, persist, gap_m), recording.readings)
                scores = score(recording, alarms, self.sensors)
                if scores.alarms and scores.precision >= precision:
                    key = (-scores.recall, scores.mean_time_to_detect_s)  # recall first: a mean over fewer is no gain
                    if best_key is None or key < best_key:
                        best, best_key = (persist, gap_m, scores), key
                p = scores.precision if scores.alarms else 0.0
                f1 = 2 * p * scores.recall / (p + scores.recall) if p + scores.recall > 0 else 0.0
                if f1 > fallback_f1:
                    fallback, fallback_f1 = (persist, gap_m, scores), f1
        self.persist, self.gap_m, scores = best if best is not None else fallback
        return {"persist": self.persist, "gap_m": self.gap_m, "use_blockage": self.use_blockage,
                "green_s": self.blockage.green_s,
                "permissive_green_s": self.blockage.permissive_green_s, **scores.as_dict()}


__all__ = ["ProbeFusionRule", "check_training_with_probes", "unexplained_gap"]
