"""What the step writes into the state besides positions (envs/engine/step.py): the three
accumulators that the metrics divide by time (`_tick`), each vehicle's delay, and the state
builder `with_fields`. Each accumulator must equal the per-second count taken from the state after
every step; the mutation audit of step.py found that counting halted vehicles outside the
network, dropping lane 0, zeroing active_sum or never updating a vehicle's delay went unnoticed
(the metric tests read these fields from the same state, so they agree with any value)."""

from __future__ import annotations

import pytest
import torch

from agents.classical import MaxPressure
from envs.engine import EngineParams, Simulator
from envs.engine.state import with_fields
from envs.evaluation.discharge import EAST_OUT, STRAIGHT_EW, STRAIGHT_NS, WEST_IN
from envs.incidents.demand_perturbations import Incident, with_incidents
from envs.scenario import load_scenario
from tests.scenarios import single_route, small_grid


def test_each_accumulator_adds_that_seconds_vehicles_in_the_network_halting_and_waiting_to_enter():
    scenario = small_grid(2, 2, rate=1200.0, horizon=120, seed=3)  # queues at the lights and at entry
    sim = Simulator(scenario.network, scenario.demand(2))
    demand = sim.demand
    depart = demand.per_copy(demand.depart)[:, :demand.max_trips]
    counted = {"active": torch.zeros(2), "halting": torch.zeros(2), "waiting": torch.zeros(2), "lane_0": 0}

    def count(s: Simulator) -> None:
        state = s.state
        live = state.veh_lane[:, :-1] >= 0
        counted["active"] += live.sum(1)
        counted["halting"] += (state.veh_halted[:, :-1] & live).sum(1)
        # departed by the second just simulated (t - 1), not yet entered after its entries
        second = (state.t - 1).unsqueeze(1)
        counted["waiting"] += ((depart <= second) & (state.trip_enter[:, :-1] < 0)).sum(1)
        counted["lane_0"] += int((state.veh_lane[:, :-1] == 0).sum())

    sim.run(150, MaxPressure(min_green_s=5), on_step=count)  # past the horizon: departures stop
    state = sim.state
    assert torch.equal(state.t, torch.full_like(state.t, 150))
    assert counted["lane_0"] > 0 and bool((counted["halting"] > 0).all()) and bool((counted["waiting"] > 0).all())
    assert torch.equal(state.active_sum.float(), counted["active"])
    assert torch.equal(state.halting_sum.float(), counted["halting"])
    assert torch.equal(state.waiting_sum.float(), counted["waiting"])


def test_a_state_built_with_a_misspelt_field_is_refused_not_built_without_the_change():
    grid = load_scenario("grid_1x1")
    state = Simulator(grid.network, grid.demand(1)).state
    with pytest.raises(TypeError, match="veh_lanes"):
        with_fields(state, veh_lanes=state.veh_lane)
    later = with_fields(state, t=state.t + 1)
    assert int(later.t[0]) == int(state.t[0]) + 1
    assert all(new is old for name, new, old in zip(state._fields, later, state) if name != "t")


def test_a_trip_held_by_a_red_light_ends_with_a_delay_that_grows_with_its_wait():
    """30 trips on one approach, red for 60 s then green: each finished trip's delay lies between
    0 and its time in the network, the first (held longest) lost over 30 s, and the queue's
    delays shrink from its front to its back."""
    scenario = single_route([WEST_IN, EAST_OUT], [k // 2 for k in range(30)])
    sim = Simulator(scenario.network, scenario.demand(1))
    for k in range(200):
        sim.step(torch.tensor([[STRAIGHT_NS if k < 60 else STRAIGHT_EW]]))
    state, trips = sim.state, sim.demand.max_trips
    done = state.trip_finish[0, :trips] >= 0
    delay = state.trip_delay[0, :trips][done]
    in_network = (state.trip_finish[0, :trips] - state.trip_enter[0, :trips])[done].float()
    assert int(done.sum()) == 30 and bool((delay >= 0).all()) and bool((delay <= in_network).all())
    assert float(delay[0]) > 30.0 and bool((delay[1:] <= delay[:-1]).all())


def test_a_vehicle_leaving_the_network_below_the_halting_speed_is_not_counted_as_halting_after_it_left():
    """A closure at the exit road's end holds a queue; when it lifts, the vehicles start from rest
    and leave slower than a 3 m/s halting speed. Their freed slots keep that last halted flag,
    which halting_sum must not count (only vehicles in the network halt)."""
    scenario = single_route([WEST_IN, EAST_OUT], [k // 2 for k in range(20)])
    net = scenario.network
    exits = [lane for lane in net.road_lanes[net.road_ids.index(EAST_OUT)].tolist() if lane >= 0]
    demand = with_incidents(scenario.demand(1), [[Incident(lane, 0, 80, 0.0) for lane in exits]])
    sim = Simulator(net, demand, EngineParams(halting_speed=3.0))
    halting, left_halted = 0, 0
    for _ in range(150):
        before = sim.state.veh_lane[0, :-1] >= 0
        state = sim.step(torch.tensor([[STRAIGHT_EW]]))
        live = state.veh_lane[0, :-1] >= 0
        halting += int((state.veh_halted[0, :-1] & live).sum())
        left_halted += int((state.veh_halted[0, :-1] & before & ~live).sum())
    assert left_halted > 0 and int((state.trip_finish[0, :-1] >= 0).sum()) == 20
    assert float(state.halting_sum[0]) == halting
