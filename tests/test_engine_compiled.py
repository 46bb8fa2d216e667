"""The torch.compile path computes what the eager path computes."""

from __future__ import annotations

import torch

from agents.classical import MaxPressure
from envs.engine import Simulator
from envs.incidents.perturbations import IncidentSpec, Perturbation, sample_incidents, with_incidents
from envs.scenario.splits import DemandSpec, sample_trips
from tests.engine_checks import check_all
from tests.scenarios import small_grid
from tests.test_dawdling import dawdling_grid


def test_compiled_step_matches_eager_step():
    scenario = small_grid(2, 2, rate=600.0, horizon=300, seed=5)
    _compare(scenario, scenario.demand(2), scenario.demand(2))


def test_compiled_step_matches_eager_step_on_distinct_copies_with_incidents():
    """Each copy its own demand sample and its own closures and capacity drops: the compiled
    step (which keeps the lane-level intermediates in buffers) still computes the eager step."""
    scenario = small_grid(2, 2, rate=800.0, horizon=300, seed=2)
    closures, drops = (
        Perturbation(seed=seed, incidents=IncidentSpec(count=2, start_s=[0, 150], duration_s=120, capacity=capacity))
        for seed, capacity in ((4, 0.0), (5, 0.3))
    )
    trips = [sample_trips(scenario, DemandSpec(mode="poisson"), "eval", k) for k in range(3)]
    incidents = [
        sample_incidents(closures, scenario.network, "eval", k) + sample_incidents(drops, scenario.network, "eval", k)
        for k in range(3)
    ]
    assert all(len(copy) == 4 for copy in incidents)
    assert all(0 <= i.start < i.end <= 300 for copy in incidents for i in copy)  # all inside the run

    def demand():
        return with_incidents(scenario.demand(trips=trips), incidents)

    _compare(scenario, demand(), demand())


def test_compiled_step_matches_eager_step_with_incidents_at_a_place():
    """Closures and capacity drops mid-lane (random places, per copy) beside stop-line ones: the
    compiled step computes the eager step."""
    scenario = small_grid(2, 2, rate=800.0, horizon=300, seed=2)
    placed, drops, at_line = (
        Perturbation(seed=seed, incidents=IncidentSpec(count=2, start_s=[0, 150], duration_s=120, capacity=capacity,
                                                       position=position))
        for seed, capacity, position in ((6, 0.0, "random"), (7, 0.3, "random"), (8, 0.0, "stop_line"))
    )
    incidents = [
        sum((sample_incidents(spec, scenario.network, "eval", k) for spec in (placed, drops, at_line)), [])
        for k in range(3)
    ]
    assert sum(i.position is not None for copy in incidents for i in copy) == 12

    def demand():
        return with_incidents(scenario.demand(3), incidents)

    _compare(scenario, demand(), demand())


def test_compiled_step_matches_eager_step_on_copies_that_share_samples():
    """Three copies over two samples: copies 0 and 2 read one row of the shared tables."""
    scenario = small_grid(2, 2, rate=800.0, horizon=300, seed=2)
    a, b = (sample_trips(scenario, DemandSpec(mode="poisson"), "eval", k) for k in range(2))

    def demand():
        shared = scenario.demand(trips=[a, b, a])
        assert shared.num_samples == 2 and shared.sample_of_copy.tolist() == [0, 1, 0]
        return shared

    _compare(scenario, demand(), demand())


def test_compiled_step_matches_eager_step_with_dawdling_drivers():
    """The dawdling draw is a hash of trip and second: the compiled step draws the same."""
    scenario = dawdling_grid(0.5, seed=3)
    _compare(scenario, scenario.demand(2), scenario.demand(2))


def _compare(scenario, eager_demand, compiled_demand):
    eager = Simulator(scenario.network, eager_demand)
    compiled = Simulator(scenario.network, compiled_demand, compile=True)
    controller = MaxPressure(min_green_s=5)
    controller.reset(eager)
    for _ in range(300):
        before = compiled.snapshot()
        eager.step(controller.act(eager))
        compiled.step(controller.act(compiled))
        check_all(compiled.network, compiled.demand, compiled.params, before, compiled.state)
    assert eager.num_slots == compiled.num_slots
    for name in ("trip_enter", "trip_finish", "lane_count", "phase", "veh_lane"):
        assert torch.equal(getattr(eager.state, name), getattr(compiled.state, name)), name
    for name in ("veh_pos", "veh_speed", "trip_delay"):
        torch.testing.assert_close(getattr(eager.state, name), getattr(compiled.state, name), rtol=1e-4, atol=1e-3)
