"""Issue 18, point 1: the bad inputs a new user tried, each refused at the point of the mistake
with the project's error (source, field, value, reason) — scenario files, the engine's
network/demand/snapshot/command checks. (Configs, checkpoints and export:
tests/test_reliability_cli.py; the service: tests/test_reliability_service.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.engine import Simulator
from envs.errors import CommandError, ConfigError, ScenarioError
from envs.scenario import load_scenario, scenario_from_dicts
from envs.scenario.demand import stack_demand
from envs.scenario.departures import MAX_VEHICLES
from envs.scenario.roadnet_parser import MAX_LANES_PER_ROAD
from envs.scenario.splits import DemandSpec, sample_trips
from tests.minimal_scenario import assert_names_everything, minimal_flow, minimal_roadnet


def _scenario(roadnet=None, flow=None):
    return scenario_from_dicts(roadnet or minimal_roadnet(), flow or minimal_flow())


def test_a_flow_of_billions_of_vehicles_is_refused_before_anything_is_allocated():
    flow = minimal_flow()
    flow[0]["interval"], flow[0]["endTime"] = 1e-6, 10_000  # 0..10,000 s every microsecond
    with pytest.raises(ScenarioError) as caught:
        _scenario(flow=flow)  # under ulimit the old code died after ~7 GB; this answers at once
    assert caught.value.field == "[0].interval" and caught.value.value == 1e-6
    assert "10,000,000,001 vehicles" in str(caught.value) and f"{MAX_VEHICLES:,}" in str(caught.value)


def test_many_flows_together_over_the_limit_are_refused_naming_the_flow_that_crosses_it():
    flow = minimal_flow()[:1]
    flow[0]["interval"], flow[0]["endTime"] = 0.25, 1_000_000  # steps 0..1e6, 4 a step: 4,000,001 each
    with pytest.raises(ScenarioError) as caught:
        _scenario(flow=flow * 3)
    assert caught.value.field == "[2].interval" and "12,000,003 vehicles" in str(caught.value)


def test_a_misspelled_flow_key_is_reported_under_its_own_name():
    flow = minimal_flow()
    flow[1]["intervall"] = flow[1].pop("interval")
    flow[0]["vehicle"]["lenght"] = flow[0]["vehicle"].pop("length")
    with pytest.raises(ScenarioError) as caught:
        _scenario(flow=flow)
    assert caught.value.field == "[0].vehicle.lenght" and "did you mean 'length'" in str(caught.value)
    del flow[0]["vehicle"]["lenght"]  # missing with nothing like it: still reported as missing
    with pytest.raises(ScenarioError, match="missing required field") as caught:
        _scenario(flow=flow)
    assert caught.value.field == "[0].vehicle.length"
    flow = minimal_flow()
    flow[1]["intervall"] = flow[1].pop("interval")
    with pytest.raises(ScenarioError, match="did you mean 'interval'") as caught:
        _scenario(flow=flow)
    assert caught.value.field == "[1].intervall"


@pytest.mark.parametrize("where", ["road", "intersection"])
def test_empty_ids_are_refused(where):
    roadnet = minimal_roadnet()
    target = roadnet["roads"][0] if where == "road" else roadnet["intersections"][0]
    target["id"] = " "
    with pytest.raises(ScenarioError, match="non-empty string") as caught:
        _scenario(roadnet=roadnet)
    assert caught.value.field == ("roads[0].id" if where == "road" else "intersections[0].id")


def test_a_road_with_thousands_of_lanes_is_refused_with_the_limit():
    roadnet = minimal_roadnet()
    roadnet["roads"][3]["lanes"] = [{"width": 3.0, "maxSpeed": 11.0}] * 5000
    with pytest.raises(ScenarioError, match=f"more than {MAX_LANES_PER_ROAD} lanes") as caught:
        _scenario(roadnet=roadnet)
    assert caught.value.field == "roads[3].lanes"
    roadnet["roads"][3]["lanes"] = [{"width": 3.0, "maxSpeed": 11.0}] * MAX_LANES_PER_ROAD  # at the limit: fine
    _scenario(roadnet=roadnet)


def test_a_demand_built_for_another_network_is_refused_at_construction():
    grid = load_scenario("grid_1x1")
    with pytest.raises(ConfigError, match="8 roads; this network has 4") as caught:
        Simulator(_scenario().network, grid.demand(1))
    assert caught.value.field == "demand.origin_start"


def _two_demands_of_one_shape(scenario):
    samples = [sample_trips(scenario, DemandSpec("poisson"), "eval", k, horizon=600) for k in (0, 1)]
    bigger = stack_demand(samples, scenario.network)  # the shape that holds both
    return [stack_demand([sample], scenario.network, bigger.shape) for sample in samples]


def test_restoring_a_snapshot_taken_with_another_demand_of_the_same_shape_is_refused():
    grid = load_scenario("grid_1x1")
    first, second = _two_demands_of_one_shape(grid)
    source = Simulator(grid.network, first)
    source.run(100)
    snapshot = source.snapshot()
    other = Simulator(grid.network, second)
    with pytest.raises(CommandError, match="another demand") as caught:
        other.restore(snapshot)
    assert caught.value.source == "<restore>" and caught.value.field.startswith("snapshot.")
    same = Simulator(grid.network, first)  # the same demand: restored and stepped like the original
    same.restore(snapshot)
    source.run(50)
    same.run(50)
    assert torch.equal(same.state.trip_finish, source.state.trip_finish)


def test_a_snapshot_of_another_shape_names_the_field_and_both_shapes():
    grid = load_scenario("grid_1x1")
    two = Simulator(grid.network, grid.demand(2))
    two.run(10)
    with pytest.raises(CommandError) as caught:
        Simulator(grid.network, grid.demand(3)).restore(two.snapshot())
    assert caught.value.field == "snapshot.t" and caught.value.value == (2,) and "expected (3,)" in str(caught.value)
    with pytest.raises(CommandError, match="expected a SimState"):
        two.restore(tuple(two.snapshot()))
    with pytest.raises(CommandError, match="snapshot.phase") as refused:
        Simulator(_scenario().network, _scenario().demand(2)).restore(two.snapshot())
    assert_names_everything(refused.value, "<restore>", "snapshot.phase", (2, 1))
    assert 'expected (2, 2)' in refused.value.reason


@pytest.mark.parametrize("command, field, says", [
    ([[0], [0]], "type", "torch.as_tensor"),
    (np.zeros((2, 1), dtype=np.int64), "type", "numpy array"),
    (True, "type", "torch int64 tensor"),
    (torch.zeros((2, 1), dtype=torch.bool), "dtype", "bool and float are not"),
    (torch.zeros((2, 1)), "dtype", "bool and float are not"),
    (torch.zeros((1, 2), dtype=torch.int64), "shape", "expected (2, 1)"),
])
def test_commands_of_the_wrong_kind_get_an_accurate_message(command, field, says):
    sim = Simulator(load_scenario("grid_1x1").network, load_scenario("grid_1x1").demand(2))
    with pytest.raises(CommandError, match=says.replace("(", r"\(").replace(")", r"\)")) as caught:
        sim.step(command)
    assert caught.value.field == field


def test_a_coordinate_beyond_any_physical_size_is_refused_not_an_overflow():
    # found by tests/test_reliability_fuzz.py: float32 road lengths became infinite
    roadnet = minimal_roadnet()
    roadnet["roads"][1]["points"][0]["x"] = 3.4028235677973366e38
    with pytest.raises(ScenarioError, match="beyond 1e\\+09 in magnitude") as caught:
        _scenario(roadnet=roadnet)
    assert caught.value.field == "roads[1].points[0].x"


@pytest.mark.parametrize("actions, given", [
    ([[0], [0]], "list"), (np.zeros((2, 1), dtype=np.int64), "ndarray"), (True, "bool"),
    (torch.zeros((2, 1), dtype=torch.bool), "torch.bool"), (torch.zeros((2, 1)), "torch.float32"),
])
def test_the_batched_env_names_what_it_was_given_instead_of_action_indices(actions, given):
    from envs.rl.signal_env import BatchedSignalEnv

    env = BatchedSignalEnv(scenario=load_scenario("grid_1x1"), copies=2)
    env.reset()
    with pytest.raises(CommandError, match="integer tensor of action indices") as caught:
        env.step(actions)
    assert caught.value.field == "actions" and caught.value.value == given
