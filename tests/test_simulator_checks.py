"""What `Simulator` checks and reports around the step (envs/engine/simulator.py): the range and
types of phase commands, one device for network and demand, `run`'s per-step callback, a pool
fixed by the user (it never grows; the seconds entries waited for it are reported) and the initial pool size."""

from __future__ import annotations

import pytest
import torch

from envs.engine import EngineParams, Simulator
from envs.engine.simulator import default_slots
from envs.errors import CommandError, ConfigError
from tests.scenarios import small_grid, uneven_grid


def test_a_phase_command_is_minus_one_up_to_each_intersections_last_phase_in_int64_or_int32():
    scenario = uneven_grid(horizon=120)  # intersection 0 has 3 phases, the others 4
    sim = Simulator(scenario.network, scenario.demand(2))
    phases = sim.network.num_phases.tolist()
    assert phases[0] == 3 and phases[1] == 4
    last = torch.tensor([phases, phases], dtype=torch.int64) - 1
    for refused, at in ((-2, (1, 0)), (3, (0, 0)), (4, (1, 1))):
        command = last.clone()
        command[at] = refused
        with pytest.raises(CommandError) as caught:
            sim.step(command)
        assert caught.value.value == refused and sim.network.intersection_ids[at[1]] in caught.value.field
    assert int(sim.state.t[0]) == 0  # a refused command steps nothing
    twin = Simulator(scenario.network, scenario.demand(2))
    for k in range(30):  # the last phases, then keep (-1): as int32 the same run as int64
        command = last if k % 10 == 0 else -torch.ones_like(last)
        sim.step(command.to(torch.int32))
        twin.step(command)
    assert all(torch.equal(x, y) for x, y in zip(sim.state, twin.state))
    assert torch.equal(sim.state.phase, last)


def test_a_demand_on_another_device_than_the_network_is_refused_naming_both():
    scenario = small_grid(horizon=60)
    with pytest.raises(ConfigError) as caught:
        Simulator(scenario.network, scenario.demand(1).to("meta"))  # a device every machine has
    assert caught.value.field == "device" and caught.value.value == "meta" and "cpu" in str(caught.value)


def test_run_calls_on_step_after_each_step():
    scenario = small_grid(horizon=60)
    sim = Simulator(scenario.network, scenario.demand(1))
    seen = []
    sim.run(5, on_step=lambda s: seen.append(int(s.state.t[0])))
    assert seen == [1, 2, 3, 4, 5]


def test_a_pool_the_user_fixed_never_grows_and_the_run_reports_the_entries_that_waited_for_it():
    scenario = small_grid(2, 2, rate=900.0, horizon=300, seed=0)
    sim = Simulator(scenario.network, scenario.demand(1), EngineParams(max_vehicles=30))
    with pytest.warns(UserWarning, match=r"waited \d+ s in all only for a free vehicle slot \(max_vehicles=30\)"):
        sim.run(120)
    assert sim.num_slots == sim.state.num_slots == 30
    assert int(sim.state.pool_blocked[0]) > 0 and int((sim.state.veh_lane[0, :-1] >= 0).sum()) <= 30


def test_the_waiting_report_counts_seconds_not_trips():
    """pool_blocked adds one per waiting trip and step: with 2 slots it soon exceeds the trips that
    ever departed, so the warning must not call it a number of entries."""
    scenario = small_grid(1, 1, rate=900.0, horizon=300, seed=0)
    demand = scenario.demand(1)
    sim = Simulator(scenario.network, demand, EngineParams(max_vehicles=2))
    with pytest.warns(UserWarning) as caught:
        sim.run(200)
    blocked = int(sim.state.pool_blocked[0])
    assert blocked > int((demand.depart[0] < 200).sum())  # more than the trips: seconds
    message = str(caught[0].message)
    assert f"waited {blocked} s in all" in message and "entries" not in message, message


def test_vehicles_take_the_slots_from_0_up_in_the_order_they_enter():
    scenario = small_grid(2, 2, rate=900.0, horizon=300, seed=0)
    sim = Simulator(scenario.network, scenario.demand(1))
    sim.run(10)
    entered = int((sim.state.trip_enter[0, :-1] >= 0).sum())
    assert entered > 3 and int((sim.state.trip_finish[0, :-1] >= 0).sum()) == 0  # nobody has left yet
    live = torch.nonzero(sim.state.veh_lane[0, :-1] >= 0).flatten().tolist()
    assert live == list(range(entered))
    order = sim.state.trip_enter[0, sim.state.veh_trip[0, :entered].long()]
    assert bool((order[1:] >= order[:-1]).all())  # slot k entered no later than slot k + 1


def test_the_initial_pool_is_twice_the_busiest_samples_load_at_least_128_within_the_network_and_trips():
    scenario = small_grid(2, 2, rate=900.0, horizon=300, seed=0)
    quiet = small_grid(2, 2, rate=100.0, horizon=1200, seed=0)
    net = scenario.network
    busy, light = scenario.trips, quiet.trips
    both = scenario.demand(trips=[light, busy])
    alone = default_slots(net, scenario.demand(trips=[busy]), factor=1.0, floor=1)
    assert default_slots(net, both, factor=1.0, floor=1) == alone > default_slots(
        net, quiet.demand(trips=[light]), factor=1.0, floor=1)
    assert default_slots(net, both) == max(2 * alone, 128)
    assert default_slots(net, quiet.demand(1)) == 128 < quiet.demand(1).max_trips  # the floor
    short = small_grid(1, 1, rate=7200.0, horizon=300, seed=0, road_length=45.0)  # two vehicles a second
    held = short.network.storage_capacity()
    assert 2 * default_slots(short.network, short.demand(1), factor=1.0, floor=1) > held
    assert held < short.demand(1).max_trips
    assert default_slots(short.network, short.demand(1)) == held  # never more than the network holds


def test_engine_params_take_each_bound_they_state_and_refuse_the_value_just_past_it():
    """validate()'s bounds, each at its edge: 0 s of yellow, all-red and min green, a halting speed
    of 0 and a single vehicle slot are rules a user may pick; the values just past them, and a bool
    where a number belongs, are refused naming the field."""
    EngineParams(yellow_s=0, all_red_s=0, min_green_s=0, halting_speed=0.0, max_vehicles=1,
                 junction_yielding=True, yield_gap_s=0.5).validate()
    for field, value in [("min_green_s", -1), ("all_red_s", 2.0), ("max_vehicles", 0), ("max_vehicles", True),
                         ("yield_gap_s", True), ("yield_gap_s", 0.0), ("halting_speed", True)]:
        with pytest.raises(ConfigError) as refused:
            EngineParams(**{field: value}).validate()
        assert refused.value.field == field and refused.value.value is value
