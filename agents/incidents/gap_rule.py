"""`GapRule` (``gap_rule``): the lane-detector rule for closures mid-lane, beside the stop-line
`BlockageRule` it includes (agents/incidents/classifiers.py).

Behind a blockage mid-lane the halted queue stands with empty road ahead of it, which no signal
explains; the lane detectors show it without probes (`agents.incidents.gaps.lane_gap`: halted
vehicles beyond what the segment counts put before them). A lane alarms when its gap reaches
``gap_m`` for ``persist`` readings in a row, or when the blockage rule alarms (unless calibration
turned it off); the alarm is held until the lane discharges (`hold_until_discharge`), as the
other classifiers'. A vehicle that enters a lane at standstill reads as a halted vehicle with
empty road ahead for a reading or more: on training copies nearly every positive lane gap away
from a closure is on a lane whose road comes from outside the network (`LaneLayout.entry`, where
the engine inserts vehicles at standstill), so entry lanes get their own ``entry_persist`` and
``entry_gap_m``. An alarm that switches on while a lane it feeds already has one on is attached to
that alarm, not reported (``localised``, `agents.incidents.localise`): a closure's spillback
holds the vehicles bound for its road at the stop lines upstream, which the blockage rule
alarms on, but it is one incident, reported at its place.

`calibrate` takes a *training* recording only (``Recording.split == "train"``; anything else is
a `ConfigError`): it calibrates the blockage rule as that rule does (kept only if its alarms
alone reach the target precision), then, per lane class (other lanes, entry lanes; alarms kept
to the class's lanes, so that both classes reaching the precision make the whole reach it),
picks ``(persist, gap_m)`` from a grid: among the pairs whose alarms together with the blockage
rule's, localised as `detect` localises them (among all lanes, the classes not yet chosen at the
same pair), reach the target precision on the training copies, the one with the highest recall, then
the smallest mean time to detect (a mean over fewer, easier incidents is no gain); if none does,
the best F1. A class without training incidents gets the strictest pair (any alarm there would
be false).

`ProbeFusionRule` (agents/incidents/probe_fusion.py) is this rule with the probe gap added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agents.incidents.classifiers import (
    BlockageRule, LaneLayout, _check, _incident_lanes, _run_length, check_training, f1_score, hold_until_discharge,
    waiting_green,
)
from agents.incidents.gaps import lane_gap
from agents.incidents.localise import localise
from envs.incidents.detection import Recording, score

GAP_CANDIDATES_M = tuple(float(g) for g in range(10, 151, 5))
PERSIST_CANDIDATES = (1, 2, 3, 4)


def gap_alarms(gap: np.ndarray, persist, gap_m) -> np.ndarray:
    """Raw alarms ``[..., T, N]`` (before holding): the gap at `gap_m` or more for `persist`
    readings (each a number, or one per lane ``[N]``)."""
    over = gap >= gap_m
    runs = np.stack([_run_length(copy) for copy in over]) if over.ndim == 3 else _run_length(over)
    return runs >= persist


@dataclass
class GapRule:
    """See the module doc."""

    gap_m: float = 40.0
    persist: int = 3
    entry_gap_m: float = 40.0  # on entry lanes (module doc)
    entry_persist: int = 3
    blockage: BlockageRule = field(default_factory=BlockageRule)
    use_blockage: bool = True  # calibrate turns it off where the blockage rule alone misses the precision
    localised: bool = True  # attach alarms explained by an alarm downstream (agents/incidents/localise.py)
    name: str = "gap_rule"
    sensors = "lane"  # (class attribute) the sensor set its delays count from

    def gap(self, readings: np.ndarray, probes: np.ndarray | None = None) -> np.ndarray:
        """``[..., T, N]`` the metres of unexplained empty road it alarms on."""
        return lane_gap(readings)

    def check_training(self, recording: Recording) -> None:
        check_training(recording)

    def _blockage_raw(self, readings: np.ndarray, layout: LaneLayout) -> np.ndarray:
        if not self.use_blockage:
            return np.zeros(readings.shape[:-1], dtype=bool)
        if readings.ndim == 4:
            waited = np.stack([waiting_green(copy, self.blockage.min_queue) for copy in readings])
        else:
            waited = waiting_green(readings, self.blockage.min_queue)
        return self.blockage.raw_alarms(waited, layout)

    def detect(self, readings: np.ndarray, layout: LaneLayout, probes: np.ndarray | None = None) -> np.ndarray:
        """Alarms ``[T, N]`` of one copy from its lane readings ``[T, N, F]`` (and, for rules that
        read them, probe readings ``[T, N, len(PROBE_READINGS)]``)."""
        _check(readings, layout)
        raw = self._blockage_raw(readings, layout) | self._gap_raw(self.gap(readings, probes), layout)
        return self._report(raw, readings, layout)

    def _report(self, raw: np.ndarray, readings: np.ndarray, layout: LaneLayout) -> np.ndarray:
        """Raw alarms held until the lane discharges, then (``localised``) attached to an alarm
        downstream where one explains them (`agents.incidents.localise`)."""
        held = hold_until_discharge(raw, readings)
        return localise(held, layout.downstream) if self.localised else held

    def _gap_raw(self, gap: np.ndarray, layout: LaneLayout) -> np.ndarray:
        return gap_alarms(gap, np.where(layout.entry, self.entry_persist, self.persist),
                          np.where(layout.entry, self.entry_gap_m, self.gap_m))

    def calibrate(self, recording: Recording, layout: LaneLayout, precision: float = 0.95) -> dict:
        """Calibrate on a training recording (module doc); returns the chosen parameters and
        their training scores."""
        self.check_training(recording)
        alone = self.blockage.calibrate(recording, layout, precision)
        self.use_blockage = bool(alone["alarms"]) and alone["precision"] >= precision
        blockage = self._blockage_raw(recording.readings, layout)
        gap = self.gap(recording.readings, recording.probes)
        with_incidents = _incident_lanes(recording)
        persist, gap_m = np.zeros(len(layout.entry), dtype=np.int64), np.zeros(len(layout.entry))
        for members in (~layout.entry, layout.entry):
            def class_alarms(p, g, members=members):
                # the class's candidate (and, on the classes still to come, the same pair): the
                # alarms localised among all lanes, then kept to the class's lanes
                todo = members | (persist == 0)
                raw = blockage | gap_alarms(gap, np.where(todo, p, persist), np.where(todo, g, gap_m))
                return self._report(raw, recording.readings, layout) & members

            if not (with_incidents & members).any():  # no training incident: only false alarms to raise
                pair = (PERSIST_CANDIDATES[-1], GAP_CANDIDATES_M[-1])
            else:
                pair = _best_pair(recording, class_alarms, precision, self.sensors)
            persist[members], gap_m[members] = pair
        self.persist, self.gap_m = _class_pair(persist, gap_m, ~layout.entry, (self.persist, self.gap_m))
        self.entry_persist, self.entry_gap_m = _class_pair(persist, gap_m, layout.entry,
                                                          (self.entry_persist, self.entry_gap_m))
        scores = score(recording, self._report(blockage | self._gap_raw(gap, layout), recording.readings, layout),
                       self.sensors)
        return {"persist": self.persist, "gap_m": self.gap_m, "entry_persist": self.entry_persist,
                "entry_gap_m": self.entry_gap_m, "use_blockage": self.use_blockage, "localised": self.localised,
                "green_s": self.blockage.green_s, "permissive_green_s": self.blockage.permissive_green_s,
                **scores.as_dict()}


def _class_pair(persist: np.ndarray, gap_m: np.ndarray, members: np.ndarray, default) -> tuple[int, float]:
    """The pair chosen for a lane class (`default` for a class without lanes)."""
    if not members.any():
        return default
    return int(persist[members][0]), float(gap_m[members][0])


def _best_pair(recording: Recording, alarms_at, precision: float, sensors: str) -> tuple[int, float]:
    """The ``(persist, gap_m)`` of the grid whose alarms ``alarms_at(persist, gap_m)`` reach
    `precision` with the highest recall, then the smallest mean time to detect; else the best F1."""
    best, best_key, fallback, fallback_f1 = None, None, None, -1.0
    for persist in PERSIST_CANDIDATES:
        for gap_m in GAP_CANDIDATES_M:
            scores = score(recording, alarms_at(persist, gap_m), sensors)
            if scores.alarms and scores.precision >= precision:
                key = (-scores.recall, scores.mean_time_to_detect_s)  # recall first: a mean over fewer is no gain
                if best_key is None or key < best_key:
                    best, best_key = (persist, gap_m), key
            f1 = f1_score(scores)
            if f1 > fallback_f1:
                fallback, fallback_f1 = (persist, gap_m), f1
    return best if best is not None else fallback


__all__ = ["GAP_CANDIDATES_M", "GapRule", "PERSIST_CANDIDATES", "check_training", "gap_alarms"]
