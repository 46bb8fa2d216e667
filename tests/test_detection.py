"""Incident detection (envs/incidents/detection.py, agents/incidents/classifiers.py, evaluate.py
task=incident_detection): readings come from lane detectors only, the ground truth follows the
closures, the scores count what they say (evidence and the oracle floor included), and both
incident classifiers find closures on held-out seeds."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from agents.classical import MaxPressure
from agents.incidents.classifiers import (
    BlockageRule, LaneLayout, LearnedClassifier, hold_until_discharge, lane_layout, waiting_green,
)
from envs.incidents.detection import (
    COLUMN, READINGS, Recording, combine, incident_times, oracle_alarms, record, score, subset, tally,
)
from envs.errors import CommandError, ConfigError
from envs.evaluation.report import EVALUATION_OUTPUTS
from envs.incidents.perturbations import Incident, IncidentSpec, Perturbation
from envs.scenario import load_scenario
from tests.conftest import REPO_ROOT
from tests.minimal_scenario import assert_names_everything

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


def test_permissive_lanes_are_the_ones_the_plan_never_stops(recordings):
    scenario, train, _ = recordings
    layout = lane_layout(scenario.network, train.lanes)
    always_green = (train.readings[..., COLUMN["green"]] == train.interval_s).all(axis=(0, 1))
    assert layout.permissive.any() and not layout.permissive.all()
    assert np.array_equal(layout.permissive, always_green)


def _recording(lane0: list[tuple], start: int = 35) -> Recording:
    """Two lanes, ten readings every 10 s, lane 0 closed from `start`; `lane0`: per reading of
    lane 0, (seg0, halting, outflow, green)."""
    readings = np.zeros((1, 10, 2, len(READINGS)))
    for t, (seg0, halting, outflow, green) in enumerate(lane0):
        readings[0, t, 0, [COLUMN["seg0"], COLUMN["halting"], COLUMN["outflow"], COLUMN["green"]]] = (
            seg0, halting, outflow, green)
    times = np.arange(10, 110, 10)
    truth = np.zeros((1, 10, 2), dtype=bool)
    truth[0, :, 0] = (times > start) & (times - 10 < 200)
    return Recording(readings, truth, np.array([0, 1]), times, [[Incident(0, start, 200, 0.0)]], 10)


def test_scores_count_alarms_delays_evidence_and_the_oracle_floor():
    # lane 0 closed from t = 35; a vehicle stands at its line from the reading at t = 50, which
    # is red; green comes at t = 60: the first evidence reading (25 s after the start)
    quiet, red_queue, green_queue = (0, 0, 0, 0), (1, 1, 0, 0), (1, 1, 0, 10)
    rec = _recording([quiet] * 4 + [red_queue] + [green_queue] * 5)
    alarms = np.zeros((1, 10, 2), dtype=bool)
    alarms[0, 6:, 0] = True  # a true alarm at t = 70 (35 s after the start, 10 s after evidence)
    alarms[0, 2:4, 1] = True  # one false alarm
    got = score(rec, alarms)
    assert (got.alarms, got.true_alarms, got.detected, got.incidents, got.with_evidence) == (2, 1, 1, 1, 1)
    assert got.precision == 0.5 and got.recall == 1.0 and got.mean_time_to_detect_s == 35.0
    assert got.mean_time_from_evidence_s == 10.0 and got.oracle_floor_s == 25.0
    assert got.false_alarms_per_hour == pytest.approx(1 / (100 / 3600))
    oracle = score(rec, oracle_alarms(rec))  # the ideal classifier alarms at the evidence reading
    assert (oracle.precision, oracle.recall, oracle.mean_time_to_detect_s) == (1.0, 1.0, 25.0)
    # a closure whose lane never sees a vehicle leaves no evidence: the floor has nothing to average
    empty = score(_recording([quiet] * 10), np.zeros((1, 10, 2), dtype=bool))
    assert empty.with_evidence == 0 and np.isnan(empty.oracle_floor_s) and empty.recall == 0.0


def test_one_report_detects_one_closure_and_the_gap_to_the_floor_is_paired():
    quiet, red_queue, green_queue = (0, 0, 0, 0), (1, 1, 0, 0), (1, 1, 0, 10)
    rec = _recording([quiet] * 4 + [red_queue] + [green_queue] * 5)
    twice = Recording(rec.readings, rec.truth, rec.lanes, rec.times,
                      [[Incident(0, 35, 200, 0.0), Incident(0, 45, 200, 0.0)]], 10)  # overlapping, one lane
    alarms = np.zeros((1, 10, 2), dtype=bool)
    alarms[0, 6:, 0] = True  # one report, at t = 70
    got = score(twice, alarms)
    assert (got.detected, got.incidents, got.recall) == (1, 2, 0.5)  # it counted for both: recall 1.0
    assert got.mean_time_to_detect_s == 35.0  # the earlier closure takes it
    # the floor (25 s and 15 s after each start: evidence at t = 60) and the detector's mean are over
    # different closures; the paired gap is over the closure both have: 70 - 60
    assert got.oracle_floor_s == 20.0 and got.mean_gap_to_floor_s == 10.0


QUIET, RED_QUEUE, GREEN_QUEUE = (0, 0, 0, 0), (1, 1, 0, 0), (1, 1, 0, 10)  # (seg0, halting, outflow, green)
TWO_LANES = LaneLayout(groups=np.array([0, 0]), permissive=np.array([False, False]), entry=np.array([False, False]))


def test_an_alarm_detects_the_closure_active_at_its_onset_not_an_earlier_one_on_the_lane():
    rec = _recording([QUIET] * 10)
    rec.incidents = [[Incident(0, 15, 35, 0.0), Incident(0, 65, 200, 0.0)]]  # one after the other on lane 0
    rec.truth[0, :, 0] = ((rec.times > 15) & (rec.times - 10 < 35)) | ((rec.times > 65) & (rec.times - 10 < 200))
    alarms = np.zeros((1, 10, 2), dtype=bool)
    alarms[0, 7:, 0] = True  # one alarm, at t = 80: the second closure's, 15 s after it began
    assert [i.detected_at for i in incident_times(rec, alarms[0], 0)] == [None, 80.0]
    got = score(rec, alarms)
    assert (got.detected, got.mean_time_to_detect_s) == (1, 15.0)


def test_an_alarm_on_an_open_lane_while_another_is_closed_is_a_false_alarm():
    rec = _recording([QUIET] * 4 + [RED_QUEUE] + [GREEN_QUEUE] * 5)  # lane 0 closed from t = 35 s
    alarms = np.zeros((1, 10, 2), dtype=bool)
    alarms[0, 6:, :] = True  # both lanes alarm at t = 70: lane 1's is a report at the wrong place
    got = score(rec, alarms)
    assert (got.alarms, got.true_alarms, got.detected, got.precision) == (2, 1, 1, 0.5)


def test_an_alarm_before_the_evidence_counts_in_the_time_to_detect_but_not_from_evidence():
    rec = _recording([QUIET] * 4 + [RED_QUEUE] + [GREEN_QUEUE] * 5)  # first evidence at t = 60
    alarms = np.zeros((1, 10, 2), dtype=bool)
    alarms[0, 3:, 0] = True  # t = 40, 5 s after the onset: a lucky guess before any evidence
    got = score(rec, alarms)
    assert (got.detected, got.mean_time_to_detect_s) == (1, 5.0)
    # time from evidence is over closures detected at or after their evidence: none here
    assert np.isnan(got.mean_time_from_evidence_s)
    assert got.mean_gap_to_floor_s == -20.0  # the paired gap to the floor keeps it: 40 - 60


def test_the_ideal_detector_raises_one_alarm_from_the_first_evidence_to_the_closures_end():
    # evidence at t = 60 (green finds the vehicle standing), none at t = 70 and 80 (red), then again
    rec = _recording([QUIET] * 4 + [RED_QUEUE, GREEN_QUEUE, RED_QUEUE, RED_QUEUE, GREEN_QUEUE, GREEN_QUEUE])
    ideal = oracle_alarms(rec)
    assert ideal[0, :, 0].tolist() == [False] * 5 + [True] * 5 and not ideal[0, :, 1].any()
    assert score(rec, ideal).alarms == 1  # its table row counts one report per closure


def test_only_closures_are_incidents_to_detect_a_capacity_drop_is_none():
    rec = _recording([GREEN_QUEUE] * 10)
    rec.incidents = [[Incident(0, 35, 200, 0.0), Incident(1, 35, 200, 0.4)]]  # lane 1 slowed, not closed
    got = score(rec, np.zeros((1, 10, 2), dtype=bool))
    assert got.incidents == 1 and got.recall == 0.0


def test_a_subset_of_held_out_copies_stays_held_out_and_calibration_refuses_it():
    # bootstrap resamples (subset) of evaluation copies must never pass as training data
    rec = _recording([QUIET] * 4 + [RED_QUEUE] + [GREEN_QUEUE] * 5)
    rec.split = "eval"
    resample = subset(rec, np.array([0, 0]))
    assert resample.split == "eval"
    with pytest.raises(ConfigError, match="calibrate on training incidents only"):
        BlockageRule().calibrate(resample, TWO_LANES)


def test_the_blockage_rule_alarms_once_the_green_that_found_a_vehicle_waiting_reaches_green_s():
    # as above: a vehicle stops during a green, stands through a red, then 6 s of green find it
    lane0 = [(0, 0, 0, 10), (1, 1, 0, 10), (1, 1, 0, 0), (1, 1, 0, 6), (0, 0, 1, 10)] + [(0, 0, 0, 0)] * 5
    readings = _recording(lane0).readings[0]
    assert BlockageRule(green_s=6.0).detect(readings, TWO_LANES)[:, 0].tolist() == [0, 0, 0, 1] + [0] * 6
    assert not BlockageRule(green_s=7.0).detect(readings, TWO_LANES).any()


def test_blockage_calibration_gives_a_lane_class_without_training_incidents_its_longest_persistence():
    rec = _recording([QUIET] * 4 + [RED_QUEUE] + [GREEN_QUEUE] * 5)  # lane 0 (signalised) closed
    rec.split = "train"
    # lane 1, permissive and never closed: a vehicle waits 30 s of its (permanent) green, then leaves
    lane1 = [QUIET] * 2 + [(1, 1, 0, 10)] * 4 + [(0, 0, 1, 10)] + [QUIET] * 3
    for t, row in enumerate(lane1):
        rec.readings[0, t, 1, [COLUMN["seg0"], COLUMN["halting"], COLUMN["outflow"], COLUMN["green"]]] = row
    layout = LaneLayout(groups=np.array([0, 0]), permissive=np.array([False, True]), entry=np.array([False, False]))
    rule = BlockageRule()
    rule.calibrate(rec, layout)
    # any alarm on a class without training incidents would be false: the most conservative candidate
    assert rule.permissive_green_s == 120.0
    assert not rule.detect(rec.readings[0], layout)[:, 1].any()


def test_scores_of_resampled_copies_add_up_from_per_copy_tallies(recordings):
    scenario, train, _ = recordings
    layout = lane_layout(scenario.network, train.lanes)
    rule = BlockageRule(green_s=2, permissive_green_s=10)
    alarms = np.stack([rule.detect(copy, layout) for copy in train.readings])
    tallies = [tally(train, alarms[b], b) for b in range(len(alarms))]
    picks = np.array([0, 0, 3, 5, 5, 5])  # a bootstrap resample: copies repeat
    got = combine([tallies[b] for b in picks])
    # the same figures summed by hand from each copy scored alone, a repeated copy counting again
    alone = [score(subset(train, np.array([b])), alarms[[b]]) for b in picks]
    total = {k: sum(getattr(a, k) for a in alone) for k in ("alarms", "true_alarms", "incidents", "detected")}
    assert (got.alarms, got.true_alarms, got.incidents, got.detected) == tuple(total.values())
    assert total["alarms"] > 0 and total["detected"] > 0  # the check has something to count
    assert got.precision == total["true_alarms"] / total["alarms"]
    assert got.recall == total["detected"] / total["incidents"]
    hours = len(picks) * float(train.times[-1]) / 3600.0
    assert got.false_alarms_per_hour == pytest.approx((total["alarms"] - total["true_alarms"]) / hours)
    detect_sum = sum(a.mean_time_to_detect_s * a.detected for a in alone if a.detected)
    assert got.mean_time_to_detect_s == pytest.approx(detect_sum / total["detected"])


def test_waiting_green_counts_only_green_that_found_a_vehicle_standing():
    # a vehicle arrives and stops during a green (reading 1), is still there through a red
    # (reading 2) and a green (reading 3), then leaves (reading 4)
    lane0 = [(0, 0, 0, 10), (1, 1, 0, 10), (1, 1, 0, 0), (1, 1, 0, 6), (0, 0, 1, 10)] + [(0, 0, 0, 0)] * 5
    rec = _recording(lane0)
    assert waiting_green(rec.readings[0])[:5, 0].tolist() == [0, 0, 0, 6, 0]
    raised = np.zeros((10, 2), dtype=bool)
    raised[3, 0] = True
    held = hold_until_discharge(raised, rec.readings[0])
    assert held[:, 0].tolist() == [False] * 3 + [True] + [False] * 6  # released by the discharge
    quiet_lane = np.zeros_like(rec.readings[0])
    assert hold_until_discharge(raised, quiet_lane)[3:, 0].all()  # no discharge: the alarm stays


def test_both_classifiers_find_closures_on_held_out_seeds(recordings):
    scenario, train, held_out = recordings
    layout = lane_layout(scenario.network, train.lanes)
    rule = BlockageRule()
    rule.calibrate(train, layout, precision=0.9)
    learned = LearnedClassifier(history=4, hidden=32, folds=3)
    with pytest.raises(CommandError, match=r"call fit\(\) before scoring or detecting") as refused:
        learned.detect(held_out.readings[0], layout)
    assert_names_everything(refused.value, "<incident classifier>", "models", [])
    learned.fit(train, layout, epochs=20, precision=0.9, log=lambda *_: None)
    base_rate = held_out.truth.mean()  # what random alarms would reach as precision
    for classifier, least_precision in ((rule, 0.5), (learned, 20 * base_rate)):
        # (6 training incidents are few for the MLP: it must clearly learn, not be good)
        alarms = np.stack([classifier.detect(copy, layout) for copy in held_out.readings])
        got = score(held_out, alarms)
        assert got.recall >= 0.5 and got.precision >= least_precision, (classifier.name, got, base_rate)
        # online: an alarm at t never depends on later readings
        cut = held_out.readings[0, :60]
        assert np.array_equal(classifier.detect(cut, layout), alarms[0, :60])
    narrow = held_out.readings[0][:, :5]  # 5 lanes' readings for a layout of all of them
    with pytest.raises(ConfigError, match=f"readings cover 5 lanes, the layout {len(train.lanes)}") as refused:
        rule.detect(narrow, layout)
    assert_names_everything(refused.value, "<incident classifier>", "readings.shape", narrow.shape)


def _evaluate(tmp_path, *overrides):
    return subprocess.run(
        [sys.executable, "evaluate.py", "task=incident_detection", "scenario=grid_1x1", "eval.steps=900",
         "detection.train_copies=3", "detection.copies=3", "detection.learned.epochs=2", "detection.learned.folds=3",
         "perturbation=incident", "perturbation.incidents.start_s=[100,300]", "perturbation.incidents.duration_s=300",
         "eval.progress=false", f"hydra.run.dir={tmp_path}", *overrides],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


def test_evaluate_incident_detection_writes_table_csv_and_plot(tmp_path):
    done = _evaluate(tmp_path, "detection.placement=traffic")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| blockage_rule |" in done.stdout and "mean time to detect" in done.stdout
    assert "| oracle_first_evidence |" in done.stdout and "`traffic` placement" in done.stdout
    log = (tmp_path / "evaluate.log").read_text()  # the table reaches the run's log too
    assert "| blockage_rule |" in log and f"results in {tmp_path}" in log
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["classifiers"]) == {"blockage_rule", "learned_mlp"} and summary["placement"] == "traffic"
    assert summary["perturbation"]["incidents"]["placement"] == "traffic"
    assert (summary["controller"], summary["steps"]) == ("max_pressure", 900)  # what ran, beside what it found
    assert summary["oracle"]["precision"] == 1.0
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 1 + 3 * 3  # oracle + 2 classifiers, 3 copies
    incidents = list(csv.DictReader(open(tmp_path / "incidents.csv")))
    assert len(incidents) == 3
    assert {"oracle_floor_s", "blockage_rule_detect_s", "learned_mlp_detect_s"} <= set(incidents[0])
    assert (tmp_path / "detection.png").stat().st_size > 0
    # beside Hydra's .hydra/ and the log, only files that a later run into this folder would tidy away
    written = {path.name for path in tmp_path.iterdir() if path.is_file()} - {"evaluate.log"}
    assert written == {"table.md", "metrics.csv", "incidents.csv", "summary.json", "detection.png"}
    assert written <= set(EVALUATION_OUTPUTS)


def test_evaluate_incident_detection_names_a_bad_placement(tmp_path):
    done = _evaluate(tmp_path, "detection.placement=everywhere")
    assert done.returncode != 0 and "detection.placement" in done.stderr and "everywhere" in done.stderr


def test_evaluate_incident_detection_names_a_bad_fold_count(tmp_path):
    done = _evaluate(tmp_path, "detection.learned.folds=1")
    assert done.returncode != 0 and "detection.learned.folds" in done.stderr and "= 1" in done.stderr


def test_evaluate_incident_detection_names_an_unknown_classifier(tmp_path):
    done = _evaluate(tmp_path, "detection.classifiers=[blockage_rule,nope]")
    assert done.returncode != 0 and "detection.classifiers" in done.stderr and "nope" in done.stderr


def test_evaluate_incident_detection_names_probes_missing_for_the_probe_only_detector(tmp_path):
    done = _evaluate(tmp_path, "detection.classifiers=[blockage_rule,probe_only]")  # detection.probes.p = 0
    assert done.returncode != 0 and "detection.probes.p" in done.stderr and "probe_only" in done.stderr


def test_evaluate_incident_detection_names_an_unknown_controller_under_its_own_key_before_recording(tmp_path):
    # it was reported as 'controllers' (a key of task=signals) once the first recording had started
    done = _evaluate(tmp_path, "detection.controller=best")
    assert done.returncode == 2 and "record " not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: <config>: field 'detection.controller' = 'best': unknown controller; known: ['advanced_mp', "
        "'efficient_mp', 'fixed_time', 'fixed_time_webster', 'max_pressure', 'sotl'] (the tuned ones also as "
        "<name>_tuned)"]


@pytest.mark.parametrize("key", ["checkpoint", "deployed"])
def test_evaluate_incident_detection_refuses_a_policy_it_would_ignore(tmp_path, key):
    # the task runs detection.controller; a trained or exported policy given here was silently not run
    path = tmp_path / "policy.file"
    path.write_text("")
    done = _evaluate(tmp_path, f"{key}={path}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: <config>: field {key!r} = {str(path)!r}: task=incident_detection runs detection.controller, "
        "a classical controller; a trained or exported policy is evaluated with task=signals"]


def test_an_empty_list_of_detectors_is_refused_before_any_recording():
    from agents.incidents.detection_task import check_detectors

    # the run recorded detection.train_copies training copies that nothing calibrated on: the oracle rows alone
    with pytest.raises(ConfigError, match="no detector to calibrate") as refused:
        check_detectors([], 0.0, 8, 4)
    assert_names_everything(refused.value, "<config>", "detection.classifiers", [])


def test_the_recording_keeps_the_scenarios_horizon(monkeypatch):
    import envs.incidents.detection as detection

    # scenario.horizon=100 under task=incident_detection drew trips over all of eval.steps: ignored
    scenario, cuts = load_scenario("grid_1x1", horizon=100), []
    sample = detection.sample_trips

    def spy(*args, horizon=None):
        cuts.append(horizon)
        return sample(*args, horizon=horizon)

    monkeypatch.setattr(detection, "sample_trips", spy)
    perturbation = Perturbation(name="incident", incidents=IncidentSpec(start_s=[10, 50], duration_s=100))
    record(scenario, MaxPressure(), perturbation, "train", [0], steps=200)
    record(load_scenario("grid_1x1"), MaxPressure(), perturbation, "train", [0], steps=200)
    assert cuts == [100, 200]  # the flow file cut where the scenario says, else at the recorded end


def test_training_copies_that_drew_no_incident_are_refused_before_the_held_out_ones_are_recorded(monkeypatch):
    import envs.incidents.detection as detection
    import evaluate
    from tests.test_evaluate import evaluate_config

    # a rate whose Poisson draws were 0 on both training copies: the rules were calibrated on nothing
    # ("precision undefined") and run on the held-out copies with arbitrary thresholds
    cfg = evaluate_config("task=incident_detection", "scenario=grid_1x1", "eval.steps=300", "eval.progress=false",
                          "eval.plots=false", "perturbation=incident", "perturbation.incidents.rate_per_hour=0.5",
                          "perturbation.incidents.start_s=[0,200]", "detection.copies=2", "detection.train_copies=2",
                          "detection.classifiers=[blockage_rule]")
    record, splits = detection.record_sweep, []

    def recorded(scenario, controller, perturbation, split, *args, **kwargs):
        splits.append(split)
        return record(scenario, controller, perturbation, split, *args, **kwargs)

    monkeypatch.setattr(detection, "record_sweep", recorded)
    scenario, perturbation = evaluate.detection_scenario(cfg)
    with pytest.raises(ConfigError, match="training copies drew no incident") as refused:
        evaluate.record_detection(cfg, scenario, perturbation, [])
    assert_names_everything(refused.value, "<config>", "detection.train_copies", 2)
    assert splits == ["train"]
