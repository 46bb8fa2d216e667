"""`ProbeFusionRule`: an incident rule that fuses probe-vehicle reports with the lane detectors:
the lane-detector `GapRule` (agents/incidents/gap_rule.py, with the stop-line `BlockageRule`)
with the gap a halted probe shows added.

The evidence a probe adds: a probe standing with *empty road ahead of it*
(`agents.incidents.gaps.unexplained_gap`: of the first metres before the halted probe nearest
the stop line, the length the segment counts do not fill). The lane detectors alone prove such
a gap whenever halted vehicles stand beyond what the segments hold (`lane_gap`); the rule reads
the larger of the two (`fused_gap`: either proves empty road ahead of a halted vehicle), and
otherwise alarms, holds and calibrates as `GapRule` does — on a *training* recording with
probes only (``Recording.split == "train"`` and ``Recording.probes``; anything else is a
`ConfigError`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.incidents.classifiers import SOURCE, check_training
from agents.incidents.gap_rule import GapRule
from agents.incidents.gaps import fused_gap, unexplained_gap
from envs.errors import ConfigError
from envs.incidents.detection import Recording


def check_training_with_probes(recording: Recording) -> None:
    """ConfigError unless `recording` holds training incidents recorded with probes: what every
    probe detector calibrates on (never an evaluation incident)."""
    check_training(recording)
    if recording.probes is None:
        raise ConfigError(SOURCE, "recording.probes", None, "record with probes (record(..., probes=ProbeSpec))")


def check_probes(readings: np.ndarray, probes: np.ndarray | None) -> np.ndarray:
    """`probes`, once checked to be there and to cover the lane readings (else a ConfigError)."""
    if probes is None:
        raise ConfigError(SOURCE, "probes", None, "this detector reads probe reports: pass the recording's probes")
    if probes.shape[:-1] != readings.shape[:-1]:
        raise ConfigError(SOURCE, "probes.shape", tuple(probes.shape),
                          f"probe readings must cover the lane readings' {tuple(readings.shape[:-1])}")
    return probes


@dataclass
class ProbeFusionRule(GapRule):
    """See the module doc."""

    persist: int = 2
    name: str = "probe_fusion"
    sensors = "fused"  # (class attribute) its delays count from the first evidence to lanes or probes

    def gap(self, readings: np.ndarray, probes: np.ndarray | None = None) -> np.ndarray:
        return fused_gap(readings, check_probes(readings, probes))

    def check_training(self, recording: Recording) -> None:
        check_training_with_probes(recording)


__all__ = ["ProbeFusionRule", "check_probes", "check_training_with_probes", "unexplained_gap"]
