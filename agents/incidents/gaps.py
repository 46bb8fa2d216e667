"""Empty road ahead of a halted vehicle that no signal explains: the evidence of a mid-lane
blockage, from the lane detectors alone (`lane_gap`) and from a halted probe (`unexplained_gap`).

A queue a signal holds starts at the stop line and is contiguous; behind a blockage mid-lane the
vehicles that were past it drive off, and the halted queue stands with empty road ahead. Both
gaps use the lane detectors' segment counts ``seg0..2`` (vehicles in the 50 m segments before the
stop line, nearest first), each vehicle taking `VEHICLE_SPACING_M` (7.5 m) of a standing queue,
and both count only while nothing crossed the stop line in the interval (``outflow`` = 0): a
discharging queue spreads out ahead of its halted tail, which is no incident.

- `lane_gap` (no probes): if ``halting`` > seg0 + ... + seg_k, at least one halted vehicle stands
  beyond the first 50 (k + 1) m, which hold only seg0 + ... + seg_k vehicles, so the road ahead of
  it holds at least ``50 (k + 1) - 7.5 (seg0 + ... + seg_k)`` metres nobody fills. The gap is
  the largest of these bounds over k where the condition holds (0 elsewhere; never negative).
  ``halting`` >= 1 with ``seg0`` = 0 is the k = 0 case (50 m). All quantities are snapshots at
  the same instant, so the bound is exact for the readings, not an estimate.
- `unexplained_gap` (a probe): for the halted probe nearest the stop line (``halted_nearest_m``
  = d), the length of the first ``min(d, 150)`` metres not taken by the vehicles the segments
  count there (a segment only partly before d counts in proportion)::

      gap = min(d, 150) - 7.5 * sum_k seg_k * clip((d - 50 k) / 50, 0, 1)
"""

from __future__ import annotations

import numpy as np

from envs.engine.readings import NUM_SEGMENTS, SEGMENT_M
from envs.incidents.detection import COLUMN, PROBE_COLUMN
from envs.rl.features import VEHICLE_SPACING_M


def _quiet(readings: np.ndarray) -> np.ndarray:
    return readings[..., COLUMN["outflow"]] == 0


def lane_gap(readings: np.ndarray, quiet_only: bool = True) -> np.ndarray:
    """``[..., T, N]`` metres of empty road ahead of a halted vehicle that the segment counts
    prove (module doc); 0 where none is proven or (`quiet_only`) the lane discharged."""
    halting = readings[..., COLUMN["halting"]]
    gap = np.zeros(halting.shape)
    ahead = np.zeros(halting.shape)  # vehicles in the first 50 (k + 1) m
    for k in range(NUM_SEGMENTS):
        ahead = ahead + readings[..., COLUMN[f"seg{k}"]]
        bound = SEGMENT_M * (k + 1) - VEHICLE_SPACING_M * ahead
        gap = np.maximum(gap, np.where(halting > ahead, bound, 0.0))
    return np.where(_quiet(readings), gap, 0.0) if quiet_only else gap


def unexplained_gap(readings: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """``[..., T, N]`` metres (module doc); 0 where no probe is halted or the lane discharged."""
    d = probes[..., PROBE_COLUMN["halted_nearest_m"]].clip(min=0.0)
    near = np.zeros_like(d)
    for k in range(NUM_SEGMENTS):
        share = ((d - SEGMENT_M * k) / SEGMENT_M).clip(0.0, 1.0)
        near = near + readings[..., COLUMN[f"seg{k}"]] * share
    gap = np.minimum(d, NUM_SEGMENTS * SEGMENT_M) - VEHICLE_SPACING_M * near
    counted = (probes[..., PROBE_COLUMN["halted"]] >= 1) & _quiet(readings)
    return np.where(counted, gap, 0.0)


def fused_gap(readings: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """``[..., T, N]``: the larger of the lane gap and the probe gap (either proves empty road)."""
    return np.maximum(lane_gap(readings), unexplained_gap(readings, probes))


__all__ = ["fused_gap", "lane_gap", "unexplained_gap"]
