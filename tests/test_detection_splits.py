"""task=incident_detection end to end: calibration never sees evaluation incidents. The detectors are
calibrated on the copies of the training split (incidents, demand and probes of train seeds) and scored
on those of the eval split, drawn apart; the split label alone (`check_training`) cannot tell a training
recording whose incidents were drawn from evaluation seeds."""

from __future__ import annotations

import pytest

import evaluate
from agents.ppo.config import demand_spec
from envs.incidents.perturbations import sample_incidents
from envs.scenario.splits import sample_trips
from tests.test_evaluate import evaluate_config

STEPS, COPIES = 300, 3


class Calibrated(Exception):
    """Raised by the stand-in for calibration once it has seen what it was given."""


def test_detectors_are_calibrated_on_training_incidents_and_scored_on_held_out_ones(tmp_path, monkeypatch):
    cfg = evaluate_config("task=incident_detection", "scenario=grid_1x1", f"eval.steps={STEPS}", "eval.progress=false",
                          "eval.plots=false", "perturbation=incident", "perturbation.incidents.start_s=[0,200]",
                          f"detection.copies={COPIES}", f"detection.train_copies={COPIES}",
                          "detection.classifiers=[blockage_rule]")
    seen: dict = {}
    record = evaluate.record_detection

    def recorded(*args, **kwargs):
        seen["recordings"] = record(*args, **kwargs)
        return seen["recordings"]

    def calibrate(cfg, train, layout):
        seen["calibrated_on"] = train
        raise Calibrated

    monkeypatch.setattr(evaluate, "record_detection", recorded)
    monkeypatch.setattr(evaluate, "_classifiers", calibrate)
    with pytest.raises(Calibrated):
        evaluate.evaluate_detection(cfg, tmp_path)
    train, held_out = seen["recordings"]["train"][0], seen["recordings"]["eval"][0]
    assert seen["calibrated_on"] is train and train.split == "train" and held_out.split == "eval"
    scenario, perturbation = evaluate.detection_scenario(cfg)
    spec = demand_spec(cfg.eval.demand, "eval.demand")

    def drawn(split: str, k: int) -> list:
        trips = sample_trips(scenario, spec, split, k, horizon=STEPS)
        return sample_incidents(perturbation, scenario.network, split, k, trips=trips)

    # each copy holds its own split's draw: the training copies' incidents are train seeds', never eval ones'
    assert train.incidents == [drawn("train", k) for k in range(COPIES)]
    assert held_out.incidents == [drawn("eval", k) for k in range(COPIES)]
    assert all(i for i in train.incidents) and all(i for i in held_out.incidents)
    assert not {tuple(i) for i in train.incidents} & {tuple(i) for i in held_out.incidents}
