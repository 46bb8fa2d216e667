"""Incident detection (envs/detection.py, agents/incident_detectors.py, evaluate.py
task=incident_detection): readings come from detectors only, the ground truth follows the
closures, the scores count what they say, and both detectors find closures on held-out seeds."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agents import MaxPressure
from agents.incident_detectors import BlockageRule, LearnedDetector, intersection_groups
from envs.detection import READINGS, Recording, record, score
from envs.perturbations import Incident, IncidentSpec, Perturbation
from envs.scenario import load_scenario
from tests.conftest import REPO_ROOT

PERTURBATION = Perturbation(name="incident", seed=0,
                            incidents=IncidentSpec(count=1, start_s=[100, 500], duration_s=400, capacity=0.0))


@pytest.fixture(scope="module")
def recordings():
    scenario = load_scenario("grid_4x4")
    train = record(scenario, MaxPressure(), PERTURBATION, "train", list(range(6)), steps=1200)
    held_out = record(scenario, MaxPressure(), PERTURBATION, "eval", list(range(6)), steps=1200)
    return scenario, train, held_out


def test_readings_and_truth_follow_the_closures(recordings):
    scenario, train, _ = recordings
    assert train.readings.shape == (6, 120, len(train.lanes), len(READINGS))
    col = {int(lane): n for n, lane in enumerate(train.lanes)}
    seg0, outflow = READINGS.index("seg0"), READINGS.index("outflow")
    for b, (incident,) in enumerate(train.incidents):
        n = col[incident.lane]
        active = (train.times > incident.start) & (train.times - 10 < incident.end)
        assert np.array_equal(train.truth[b, :, n], active)
        assert train.truth[b].sum() == active.sum()  # no other lane is labelled
        # nothing leaves a closed lane once the closure covers a whole interval
        inside = (train.times - 10 >= incident.start) & (train.times <= incident.end)
        assert (train.readings[b, inside, n, outflow] == 0).all()
    assert (train.readings[..., outflow] >= 0).all() and train.readings[..., outflow].sum() > 1000
    assert (train.readings[..., seg0] <= train.readings[..., READINGS.index("count")]).all()


def test_scores_count_alarms_true_alarms_and_delays():
    times = np.arange(10, 110, 10)
    truth = np.zeros((1, 10, 2), dtype=bool)
    truth[0, 3:, 0] = True  # lane 0 closed from t = 35
    rec = Recording(np.zeros((1, 10, 2, len(READINGS))), truth, np.array([0, 1]), times,
                    [[Incident(0, 35, 200, 0.0)]], 10)
    alarms = np.zeros((1, 10, 2), dtype=bool)
    alarms[0, 5:, 0] = True  # a true alarm at t = 60 (25 s after the start)
    alarms[0, 2:4, 1] = True  # one false alarm
    got = score(rec, alarms)
    assert (got.alarms, got.true_alarms, got.detected, got.incidents) == (2, 1, 1, 1)
    assert got.precision == 0.5 and got.recall == 1.0 and got.mean_time_to_detect_s == 25.0
    assert got.false_alarms_per_hour == pytest.approx(1 / (100 / 3600))


def test_both_detectors_find_closures_on_held_out_seeds(recordings):
    scenario, train, held_out = recordings
    groups = intersection_groups(scenario.network, train.lanes)
    rule = BlockageRule()
    rule.calibrate(train, precision=0.9)
    learned = LearnedDetector(history=6, hidden=32)
    learned.fit(train, groups, epochs=40, precision=0.9, log=lambda *_: None)
    base_rate = held_out.truth.mean()  # what random alarms would reach as precision
    for detector, least_precision in ((rule, 0.5), (learned, 20 * base_rate)):
        # (6 training incidents are few for the MLP: it must clearly learn, not be good)
        alarms = np.stack([detector.detect(copy, groups) for copy in held_out.readings])
        got = score(held_out, alarms)
        assert got.recall >= 0.5 and got.precision >= least_precision, (detector.name, got, base_rate)
        # online: an alarm at t never depends on later readings
        cut = held_out.readings[0, :60]
        assert np.array_equal(detector.detect(cut, groups), alarms[0, :60])


def test_evaluate_incident_detection_writes_table_csv_and_plot(tmp_path):
    done = subprocess.run(
        [sys.executable, "evaluate.py", "task=incident_detection", "scenario=grid_1x1", "eval.steps=900",
         "detection.train_copies=3", "detection.copies=3", "detection.learned.epochs=2",
         "perturbation=incident", "perturbation.incidents.start_s=[100,300]", "perturbation.incidents.duration_s=300",
         "eval.progress=false", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| blockage_rule |" in done.stdout and "mean time to detect" in done.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["detectors"]) == {"blockage_rule", "learned_mlp"}
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 1 + 2 * 3
    assert (tmp_path / "detection.png").stat().st_size > 0
