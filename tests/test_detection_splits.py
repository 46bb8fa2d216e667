"""task=incident_detection end to end: calibration never sees evaluation incidents. The detectors are
calibrated on the copies of the training split (incidents, demand and probes of train seeds) and scored
on those of the eval split, drawn apart; the split label alone (`check_training`) cannot tell a training
recording whose incidents were drawn from evaluation seeds. Detector-fault noise, keyed by the split seed
too, stays apart for every seed width."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import evaluate
from envs.incidents import detection
from agents.ppo.config import demand_spec
from envs.engine.intersections import intersection_layout
from envs.incidents.perturbations import DetectorFaults, DetectorFaultSpec, Perturbation, sample_incidents
from envs.incidents.probes import ProbeSensor
from envs.scenario.splits import sample_trips, split_seed
from tests.scenarios import small_grid
from tests.test_evaluate import evaluate_config

STEPS, COPIES = 300, 3


class Calibrated(Exception):
    """Raised by the stand-in for calibration once it has seen what it was given."""


def test_detectors_are_calibrated_on_training_incidents_and_scored_on_held_out_ones(tmp_path, monkeypatch):
    cfg = evaluate_config("task=incident_detection", "scenario=grid_1x1", f"eval.steps={STEPS}", "eval.progress=false",
                          "eval.plots=false", "perturbation=incident", "perturbation.incidents.start_s=[0,200]",
                          f"detection.copies={COPIES}", f"detection.train_copies={COPIES}",
                          "detection.classifiers=[blockage_rule]", "detection.probes.p=0.2")
    seen: dict = {"demands": [], "probe_keys": []}
    record = evaluate.record_detection
    # the demand and probes each recorded copy ran: under uniform placement the incidents' draw does
    # not read the trips, so the incidents alone would not show training copies run on evaluation traffic
    draw_trips, key_probes = detection.sample_trips, ProbeSensor.start_episode

    def trips_of(scenario, spec, split, index, **kwargs):
        seen["demands"].append((split, index))
        return draw_trips(scenario, spec, split, index, **kwargs)

    def probes_of(sensor, b, split, index):
        seen["probe_keys"].append((split, index))
        return key_probes(sensor, b, split, index)

    monkeypatch.setattr(detection, "sample_trips", trips_of)
    monkeypatch.setattr(ProbeSensor, "start_episode", probes_of)

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
    expected = [(split, k) for split in ("train", "eval") for k in range(COPIES)]
    assert seen["demands"] == expected and seen["probe_keys"] == expected
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


def test_wide_seeds_never_give_an_evaluation_copy_a_training_copys_detector_noise():
    # SeedSequence runs the 32-bit words of a list's integers together: perturbation.seed 7 on train sample
    # 2**31 + 1 (split seed words [2, 1]) and perturbation.seed 2 * 2**32 + 7 (words [7, 2]) on eval sample 0
    # were one entropy list, [7, 2, 1, t, reading, 3], so the evaluation copy read the training copy's noise
    scenario = small_grid(2, 2, horizon=100)
    lanes = scenario.network.num_lanes
    seen = []
    for seed, split, index in ((7, "train", 2**31 + 1), ((2 << 32) | 7, "eval", 0), (7, "eval", 0)):
        faults = DetectorFaults(Perturbation(seed=seed, detectors=DetectorFaultSpec(noise_std=1.0)), scenario.network,
                                intersection_layout(scenario.network).in_lanes, 1)
        faults.start_episode(0, split, index)
        seen.append(faults._draws("lane_count", torch.tensor([30]), lanes)[0][0])
        if seed < 2**32 and index < 2**31:  # narrow values keep the draws every recorded result used
            state = int(np.random.SeedSequence([seed, split_seed(split, index), 30, 0, 3]).generate_state(1)[0])
            assert torch.equal(seen[-1], torch.randn(lanes, generator=torch.Generator().manual_seed(state)))
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
