"""The evaluation batch's bookkeeping on grid_1x1: which copy is which controller, seed and
condition, which demands and incidents each copy gets, how long it runs, and the controller mix's
refusals of an owner table that does not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.classical import FixedTime
from envs.engine.state import EngineParams
from envs.evaluation.metrics import METRIC_NAMES
from envs.evaluation.mixture import ControllerMix
from envs.evaluation.runner import EvaluationBatch, eval_demands
from envs.incidents.demand_perturbations import Incident, sample_incidents, surge_trips
from envs.incidents.perturbation_specs import IncidentSpec, Perturbation, SurgeSpec
from envs.scenario import load_scenario
from envs.scenario.splits import DemandSpec, sample_trips


@pytest.fixture(scope="module")
def grid():
    return load_scenario("grid_1x1", horizon=300)


def test_eval_demands_are_the_eval_splits_samples_clean_first_and_the_clean_copies_have_no_incident(grid):
    spec = DemandSpec(mode="poisson")
    perturbation = Perturbation(name="both", incidents=IncidentSpec(start_s=60.0, duration_s=100.0),
                                surge=SurgeSpec(scale=2.5, start_s=0.0, end_s=200.0))
    demands = eval_demands(grid, spec, 2, perturbation)
    assert demands.conditions == ["clean", "both"]
    for s in range(2):  # held-out samples 0 and 1 of the eval split, never the training split's
        expected = sample_trips(grid, spec, "eval", s)
        assert np.array_equal(demands.trips[0][s].depart, expected.depart)
        assert not np.array_equal(demands.trips[0][s].depart, sample_trips(grid, spec, "train", s).depart)
        # the perturbed seed s: seed s surged and closed with the draws of (eval, s), as every tool draws them
        # (a 2.5x surge copies each trip 2 or 3 times: the draw decides which)
        surged = surge_trips(expected, perturbation, "eval", s)
        assert np.array_equal(demands.trips[1][s].depart, surged.depart)
        assert demands.trips[1][s].num_trips > expected.num_trips  # a 2.5x surge over most of the episode
        assert demands.incidents[1][s] == sample_incidents(perturbation, grid.network, "eval", s, trips=surged)
        assert len(demands.incidents[1][s]) == 1
    assert demands.incidents[0] == [[], []]
    clean = eval_demands(grid, spec, 2, Perturbation())
    assert clean.conditions == ["clean"] and clean.incidents is None


def test_copies_are_ordered_condition_then_controller_then_seed_and_incidents_follow_them(grid):
    trips = [sample_trips(grid, DemandSpec(mode="poisson"), "eval", s) for s in range(2)]
    a, b = Incident(lane=0, start=10, end=50, factor=0.0), Incident(lane=1, start=20, end=60, factor=0.0)
    batch = EvaluationBatch(grid, 3, [trips, trips], EngineParams(), incidents=[[[], []], [[a], [b]]])
    # copy (k * C + c) * S + s with C = 3 controllers, S = 2 seeds, K = 2 conditions
    assert batch.owner.tolist() == [0, 0, 1, 1, 2, 2] * 2
    assert batch.seed.tolist() == [0, 1] * 6
    assert batch.condition.tolist() == [0] * 6 + [1] * 6
    assert np.flatnonzero(batch.mine(1, 1)).tolist() == [8, 9] and np.flatnonzero(batch.mine(2)).tolist() == [4, 5]
    # the clean copies have no closure; under the perturbation every controller's seed 0 has a, seed 1 b
    assert batch.sim.demand.incident_lane[:, 0].tolist() == [-1] * 6 + [0, 1] * 3
    rows = batch.rows({name: np.arange(12.0) for name in METRIC_NAMES}, ["x", "y", "z"], ["clean", "closed"], "g")
    assert [(r["controller"], r["seed"], r["condition"]) for r in rows[7:9]] == [("x", 1, "closed"), ("y", 0, "closed")]
    assert rows[9]["travel_time/mean"] == 9.0


def test_a_run_of_n_steps_measures_at_n_seconds(grid):
    trips = [sample_trips(grid, DemandSpec(mode="poisson"), "eval", 0)]
    batch = EvaluationBatch(grid, 1, [trips], EngineParams())
    metrics = batch.run([FixedTime()], 40)
    assert int(batch.sim.state.t[0]) == 40
    # departed by t = 40: the trips whose departure step is < 40 (docs/evaluation.md, Metrics)
    assert metrics["vehicles/departed"].tolist() == [float((trips[0].depart < 40).sum())]
    with pytest.raises(ValueError, match="the batch has 1 controller slots, got 2"):
        batch.run([FixedTime(), FixedTime()], 5)


def test_the_controller_mix_refuses_an_owner_table_that_does_not_fit(grid):
    with pytest.raises(ValueError, match=r"owner must map each copy to a controller in \[0, 2\)"):
        ControllerMix([FixedTime(), FixedTime()], torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"owner must map each copy"):
        ControllerMix([FixedTime()], torch.tensor([0, -1]))
    trips = [sample_trips(grid, DemandSpec(mode="poisson"), "eval", 0)]
    batch = EvaluationBatch(grid, 2, [trips], EngineParams())  # two copies
    mix = ControllerMix([FixedTime(), FixedTime()], torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="owner has 3 copies, the simulator 2"):
        mix.reset(batch.sim)


def test_a_controller_with_own_copies_is_told_its_own_and_only_its_own(grid):
    class Recorder(FixedTime):
        def own_copies(self, mask):
            self.mask = mask.tolist()

    trips = [sample_trips(grid, DemandSpec(mode="poisson"), "eval", s) for s in range(2)]
    batch = EvaluationBatch(grid, 2, [trips], EngineParams())
    first, second = Recorder(), Recorder()
    ControllerMix([first, second], batch.owner).reset(batch.sim)
    # a deployment controller decides for these copies only: the others' signals follow another controller
    assert first.mask == [True, True, False, False] and second.mask == [False, False, True, True]


def test_each_perturbed_copy_reads_detectors_faulted_by_its_own_seeds_draw(grid):
    # evaluate.py's batch: condition, then controller, then seed; copies of one seed share their faults
    # (drawn from (eval, seed), as every tool draws them), and clean copies read true detectors
    from types import SimpleNamespace

    import evaluate
    from agents.classical import MaxPressure
    from envs.engine.intersections import intersection_layout
    from envs.incidents.perturbation_specs import DetectorFaultSpec
    from envs.incidents.perturbations import DetectorFaults

    perturbation = Perturbation(name="faults", detectors=DetectorFaultSpec(stuck_p=0.5))
    seeds, controllers = 3, ["max_pressure", "fixed_time"]
    batch = SimpleNamespace(copies=2 * len(controllers) * seeds, conditions=2, seeds=seeds)
    reader = MaxPressure()
    evaluate._attach_detector_faults(perturbation, grid, batch, controllers, [reader, FixedTime()])
    reference = DetectorFaults(perturbation, grid.network, intersection_layout(grid.network).in_lanes, seeds)
    for seed in range(seeds):
        reference.start_episode(seed, "eval", seed)
    assert len({tuple(row) for row in reference.stuck.tolist()}) == seeds  # the seeds' draws differ
    clean = batch.copies // 2
    assert not reader.detectors.enabled[:clean].any() and bool(reader.detectors.enabled[clean:].all())
    for copy in range(clean, batch.copies):
        seed = copy % seeds
        assert reader.detectors.episode[copy] == ("eval", seed)
        assert torch.equal(reader.detectors.stuck[copy], reference.stuck[seed]), copy
