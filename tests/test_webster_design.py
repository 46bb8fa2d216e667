"""Webster in an evaluation designs its plan from train-split samples drawn like the evaluated
demand (`envs.scenario.splits.design_samples`), never from the evaluated samples themselves:
a seed's row does not depend on which other seeds are evaluated."""

from __future__ import annotations

import csv

import torch

import evaluate
from agents.classical import FixedTimeWebster
from envs.engine import Simulator
from envs.scenario import load_scenario
from envs.scenario.splits import DESIGN_SAMPLES, DemandSpec, design_samples, sample_trips
from tests.test_evaluate import evaluate_config


def _seed_rows(tmp_path, seeds: int) -> dict:
    out = tmp_path / str(seeds)
    out.mkdir()
    evaluate.evaluate(evaluate_config("scenario=grid_4x4", "eval.steps=600", f"eval.seeds={seeds}",
                                      "eval.progress=false", "eval.plots=false",
                                      "controllers=[fixed_time_webster]"), out)
    return {r["seed"]: r["travel_time/mean"] for r in csv.DictReader(open(out / "metrics.csv"))}


def test_a_seeds_webster_row_does_not_depend_on_the_other_seeds_evaluated(tmp_path):
    one, three = _seed_rows(tmp_path, 1), _seed_rows(tmp_path, 3)
    assert one["0"] == three["0"]  # the plan was the mean over the evaluated seeds: 252.2 s vs 246.5 s


def test_the_design_demand_is_train_split_samples_like_the_evaluated_ones():
    scenario = load_scenario("grid_4x4", horizon=600)
    spec = DemandSpec("poisson")
    design = design_samples(scenario, spec)
    assert len(design) == DESIGN_SAMPLES
    for s, trips in enumerate(design):
        expected = sample_trips(scenario, spec, "train", s)
        assert torch.equal(torch.as_tensor(trips.depart), torch.as_tensor(expected.depart))
        evaluated = sample_trips(scenario, spec, "eval", s)
        assert not torch.equal(torch.as_tensor(trips.depart), torch.as_tensor(evaluated.depart))
    assert len(design_samples(scenario, DemandSpec("original"))) == 1  # the flow file is the one demand there is
    # the plan reads the design demand, not the simulator's
    sim = Simulator(scenario.network, scenario.demand(trips=[sample_trips(scenario, spec, "eval", 0)]))
    own, designed = FixedTimeWebster(), FixedTimeWebster(design_demand=scenario.demand(trips=design))
    own.reset(sim)
    designed.reset(sim)
    mean_flow = FixedTimeWebster().demand_flows_vph(scenario.network, scenario.demand(trips=design))
    assert torch.allclose(designed.flow_vph.double().flatten(), mean_flow.double(), rtol=1e-6)
    assert not torch.allclose(own.flow_vph.double(), designed.flow_vph.double())


def test_webster_as_the_detection_tasks_controller_designs_from_train_samples_too():
    """task=incident_detection records with `record_sweep`; its Webster plan was the mean of the
    recorded copies' own demand (held-out samples, and one that moved with detection.copies)."""
    from envs.incidents.detection import record_sweep
    from envs.incidents.perturbations import perturbation_from_config

    scenario = load_scenario("grid_1x1", horizon=300)
    spec = DemandSpec("poisson")
    perturbation = perturbation_from_config({"name": "incident", "incidents": {"count": 1, "start_s": 50,
                                                                               "duration_s": 100}})
    plans = []
    for seeds in ([0], [0, 1, 2]):
        webster = FixedTimeWebster()
        record_sweep(scenario, webster, perturbation, "eval", seeds, steps=120, demand=spec)
        plans.append(webster.flow_vph)
    expected = FixedTimeWebster().demand_flows_vph(scenario.network, scenario.demand(trips=design_samples(scenario,
                                                                                                          spec)))
    assert torch.equal(plans[0], plans[1])
    assert torch.allclose(plans[0].double().flatten(), expected.double(), rtol=1e-6)
