"""Simulator state handling around the step: snapshots that restore any number of times, the
vehicle-slot pool (a restored or grown pool, checked before it can block an entry) and
`set_demand` growing the per-trip tables (envs/engine/simulator.py)."""

from __future__ import annotations

import pytest
import torch

from agents.classical import MaxPressure
from envs.engine import EngineParams, Simulator
from envs.engine.simulator import SLOT_CHECK_EVERY, grow_slots
from envs.errors import ConfigError
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import grid_roadnet, uniform_demand
from envs.scenario.splits import DemandSpec, sample_trips
from tests.engine_checks import check_all, unequal_fields
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import small_grid


def origins(demand) -> int:
    """Origin roads with trips (one entry each per step at most)."""
    return int((demand.origin_end > demand.origin_start).sum(1).max())


def cycling(sim: Simulator) -> torch.Tensor:
    """Every intersection's phase changes every 20 s (a fixed-time cycle in one line)."""
    return torch.full((sim.batch_size, sim.network.num_intersections), (int(sim.state.t[0]) // 20) % 4)


def test_one_snapshot_restores_any_number_of_times_and_is_never_written():
    """The simulator steps its state in place: a restored snapshot must be copied in, or the
    run after the first restore would write into it and a second restore would not go back."""
    scenario = small_grid(2, 2, rate=700.0, horizon=200, seed=1)
    sim = Simulator(scenario.network, scenario.demand(2))
    controller = MaxPressure()
    sim.run(60, controller)
    snapshot = sim.snapshot()
    kept = snapshot.clone()
    ends = []
    for _ in range(2):
        sim.restore(snapshot)
        sim.run(40, controller)
        ends.append(sim.snapshot())
        assert unequal_fields(snapshot, kept) == []  # the run after the restore left it alone
    assert unequal_fields(ends[0], ends[1]) == []
    assert int(ends[0].t[0]) == 100 and int((ends[0].trip_enter[:, :-1] >= 0).sum()) > int(
        (kept.trip_enter[:, :-1] >= 0).sum())  # traffic moved on after the restore


def test_a_nearly_full_pool_restored_into_a_simulator_that_sizes_its_own_grows_at_the_next_step():
    """Restore takes the snapshot's pool (its size too) and checks it at the next step, whatever
    was due before: each copy then has origins x SLOT_CHECK_EVERY free slots, so no entry
    waits for a slot and the run matches one that never ran short."""
    scenario = small_grid(2, 2, rate=900.0, horizon=300, seed=0)
    demand = scenario.demand(2)
    per_step, margin = origins(demand), origins(demand) * SLOT_CHECK_EVERY
    tight = Simulator(scenario.network, demand, EngineParams(max_vehicles=40))  # the user fixed this pool
    roomy = Simulator(scenario.network, demand)
    for _ in range(100):  # until the fixed pool is nearly full (about 20 s)
        for sim in (tight, roomy):
            sim.step(cycling(sim))
        if int(tight.state.free_top.min()) < 2 * per_step:
            break
    free = int(tight.state.free_top.min())
    assert per_step <= free < margin - per_step and int(tight.state.pool_blocked.max()) == 0
    fresh = torch.tensor([True, False])  # copy 0 restarts with an empty pool, copy 1 keeps its nearly full one
    tight.reset_copies(fresh)
    roomy.reset_copies(fresh)
    assert int(tight.state.free_top[0]) >= margin > int(tight.state.free_top[1])

    sim = Simulator(scenario.network, demand)
    sim.step()  # one step after a slot check: the next one would be due in 3 steps
    sim.restore(tight.snapshot())
    assert sim.num_slots == sim.state.num_slots == 40
    sim.step(cycling(sim))
    roomy.step(cycling(roomy))
    # checked before the step (>= margin free in every copy), then at most one entry per origin
    assert int(sim.state.free_top.min()) >= margin - per_step, sim.state.free_top.tolist()
    for _ in range(60):
        sim.step(cycling(sim))
        roomy.step(cycling(roomy))
    assert int(sim.state.pool_blocked.max()) == 0
    assert sim.num_slots == sim.state.num_slots > 40
    for name in ("trip_enter", "trip_finish", "lane_count", "halting_sum", "waiting_sum"):
        assert torch.equal(getattr(sim.state, name), getattr(roomy.state, name)), name


def test_a_grown_pool_holds_what_a_fresh_pool_of_that_size_holds_and_each_slot_once():
    scenario = small_grid(seed=2)
    demand = scenario.demand(2)
    small = Simulator(scenario.network, demand, EngineParams(max_vehicles=60))
    big = Simulator(scenario.network, demand, EngineParams(max_vehicles=100))
    grown = grow_slots(small.state, 100)
    differ = unequal_fields(grown, big.state)
    assert differ in ([], ["free_stack"])  # the same free ids, pushed in another order
    assert torch.equal(grown.free_stack.sort(1).values, big.state.free_stack.sort(1).values)

    small.run(20, MaxPressure())
    live_before = int((small.state.veh_lane[:, :-1] >= 0).sum())
    grown = grow_slots(small.state, 100)
    assert grown.num_slots == 100 and live_before > 0
    for b in range(2):
        live = set(torch.nonzero(grown.veh_lane[b, :-1] >= 0).flatten().tolist())
        free = grown.free_stack[b, :int(grown.free_top[b])].tolist()
        assert len(free) == len(set(free)) and not live & set(free)
        assert live | set(free) == set(range(100)), "a slot is neither live nor free"
        # the new slots hold what a free slot holds (the scratch trip, no lane)
        assert set(grown.veh_trip[b, 60:100].tolist()) == {demand.max_trips}
        assert set(grown.veh_lane[b, 60:100].tolist()) == {-1}


def _samples(scenario, *horizons):
    return [sample_trips(scenario, DemandSpec("poisson"), "eval", k, horizon=h) for k, h in enumerate(horizons)]


def test_set_demand_with_more_trips_runs_on_as_if_the_tables_had_been_that_big_from_the_start():
    """Copy 0 keeps its trips while copy 1 is given a bigger sample (what the env's autoreset
    does): copy 0's whole state, per-trip tables included, is what a run on the bigger tables
    from the start gives, every invariant holds after the switch, and the result restores."""
    scenario = small_grid(2, 2, rate=600.0, horizon=300, seed=0)
    first, short, long = _samples(scenario, 200, 80, 400)
    smaller, bigger = scenario.demand(trips=[first, short]), scenario.demand(trips=[first, long])
    assert smaller.max_trips == first.num_trips < bigger.max_trips
    params = EngineParams(max_vehicles=300)  # one pool size for both runs
    sim = Simulator(scenario.network, smaller, params)
    reference = Simulator(scenario.network, bigger, params)
    controller = MaxPressure()
    controller.reset(sim)
    for _ in range(100):
        sim.step(controller.act(sim))
    sim.set_demand(bigger)
    sim.reset_copies(torch.tensor([False, True]))
    assert sim.state.trip_enter.shape[1] == bigger.max_trips + 1
    for _ in range(40):
        before = sim.snapshot()
        sim.step(controller.act(sim))
        check_all(sim.network, sim.demand, sim.params, before, sim.state)
    reference.run(140, MaxPressure())
    assert unequal_fields(sim.state.select(slice(0, 1)), reference.state.select(slice(0, 1))) == []
    again = Simulator(scenario.network, bigger, params)
    again.restore(sim.snapshot())  # a state grown this way is one this demand can produce
    assert unequal_fields(again.state, sim.state) == []


def test_set_demand_refuses_another_batch_and_fewer_trips_per_copy():
    scenario = small_grid(2, 2, rate=600.0, horizon=300, seed=0)
    first, short = _samples(scenario, 200, 80)
    sim = Simulator(scenario.network, scenario.demand(trips=[first, first]))
    with pytest.raises(ConfigError) as caught:
        sim.set_demand(scenario.demand(trips=[first]))
    assert_names_everything(caught.value, "<engine>", "copies", 1)
    with pytest.raises(ConfigError) as caught:
        sim.set_demand(scenario.demand(trips=[short, short]))
    assert_names_everything(caught.value, "<engine>", "demand.max_trips", short.num_trips)
    assert sim.demand.max_trips == first.num_trips  # refused: the simulator runs on as it was


def test_set_demand_with_more_origin_roads_keeps_every_entry_supplied_with_a_slot():
    """The free-slot margin is per origin road: a demand that starts using more origins than
    the one the simulator was built with must widen it, or entries wait for slots."""
    roadnet = grid_roadnet(2, 2, road_length=150.0)
    flow = uniform_demand(roadnet, rate_per_origin=1800.0, horizon=200, seed=0)  # an entry every 2 s per road
    scenario = scenario_from_dicts(roadnet, flow, name="heavy")
    one_road = scenario_from_dicts(roadnet, [f for f in flow if f["route"][0] == flow[0]["route"][0]], name="one_road")
    light, heavy = one_road.demand(1), scenario.demand(1)
    assert origins(light) < origins(heavy) and heavy.max_trips > light.max_trips
    sim = Simulator(scenario.network, light)
    sim.set_demand(heavy)
    for _ in range(200):
        sim.step(cycling(sim))
    assert int(sim.state.pool_blocked.max()) == 0
    assert sim.num_slots == sim.state.num_slots
