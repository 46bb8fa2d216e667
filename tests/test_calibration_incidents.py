"""A detector calibrated on training copies that drew no incident: every threshold would be
arbitrary (the first candidate reaching no precision, or the best F1 of nothing), and the city
day only logged "calibrated on 0 training incidents". Each calibration refuses it, naming
``recording.incidents`` and what to change."""

from __future__ import annotations

import numpy as np
import pytest

from agents.incidents.classifiers import BlockageRule, LaneLayout, LearnedClassifier
from agents.incidents.gap_rule import GapRule
from agents.incidents.learned_fusion import LearnedFusion, ProbeOnly
from agents.incidents.probe_fusion import ProbeFusionRule
from envs.errors import ConfigError
from envs.incidents.detection import PROBE_READINGS, READINGS, Recording
from tests.minimal_scenario import assert_names_everything

LAYOUT = LaneLayout(groups=np.array([0, 0]), permissive=np.array([False, False]), entry=np.array([False, True]))


def quiet_training_recording() -> Recording:
    copies, readings, lanes = 2, 30, 2
    return Recording(readings=np.zeros((copies, readings, lanes, len(READINGS))),
                     truth=np.zeros((copies, readings, lanes), dtype=bool), lanes=np.arange(lanes),
                     times=np.arange(readings) * 10.0, incidents=[[] for _ in range(copies)], interval_s=10,
                     probes=np.zeros((copies, readings, lanes, len(PROBE_READINGS))), split="train")


@pytest.mark.parametrize("calibrate", [
    lambda recording: BlockageRule().calibrate(recording, LAYOUT),
    lambda recording: GapRule().calibrate(recording, LAYOUT),
    lambda recording: ProbeFusionRule().calibrate(recording, LAYOUT),
    lambda recording: LearnedClassifier(folds=2).fit(recording, LAYOUT, epochs=1, log=lambda *_: None),
    lambda recording: LearnedFusion(folds=2).fit(recording, LAYOUT, epochs=1, log=lambda *_: None),
    lambda recording: ProbeOnly(folds=2).fit(recording, LAYOUT, epochs=1, log=lambda *_: None),
], ids=["blockage_rule", "gap_rule", "probe_fusion", "learned_mlp", "learned_fusion", "probe_only"])
def test_a_calibration_without_training_incidents_is_refused(calibrate):
    with pytest.raises(ConfigError) as refused:
        calibrate(quiet_training_recording())
    assert_names_everything(refused.value, "<incident classifier>", "recording.incidents", 0)
    assert "nothing to calibrate on" in refused.value.reason and "incident rate" in refused.value.reason
