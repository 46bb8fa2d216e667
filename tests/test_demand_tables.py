"""Shared demand tables: copies of one sample share its rows, tables are stored narrow, and the
engine simulates exactly what it simulates on one table per copy."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from agents.classical import MaxPressure
from envs.engine import Simulator
from envs.engine.ops import take_sample
from envs.scenario.demand import DemandShape, index_dtype, stack_demand
from envs.scenario.splits import DemandSpec, sample_trips
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import single_route, small_grid


def _run(scenario, trips, steps=200):
    sim = Simulator(scenario.network, scenario.demand(trips=trips))
    controller = MaxPressure(min_green_s=5)
    controller.reset(sim)
    for _ in range(steps):
        sim.step(controller.act(sim))
    return sim


def test_copies_of_one_sample_share_its_rows_and_simulate_like_separate_tables():
    scenario = small_grid(2, 2, rate=800.0, horizon=200, seed=3)
    a, b = (sample_trips(scenario, DemandSpec(mode="poisson"), "eval", k) for k in range(2))
    assert a.num_trips != b.num_trips  # two really different samples
    shared = _run(scenario, [a, b, a, b, b])
    # the same trips as distinct objects: one table row per copy, as before sharing
    separate = _run(scenario, [a, b, replace(a), replace(b), replace(b)])
    assert shared.demand.num_samples == 2 and separate.demand.num_samples == 5
    assert shared.demand.sample_of_copy.tolist() == [0, 1, 0, 1, 1]
    assert separate.demand.sample_of_copy.tolist() == [0, 1, 2, 3, 4]
    assert shared.demand.num_trips.tolist() == [a.num_trips, b.num_trips, a.num_trips, b.num_trips, b.num_trips]
    assert int((shared.state.trip_finish >= 0).sum()) > 0  # trips did finish
    for name, x, y in zip(shared.state._fields, shared.state, separate.state):
        assert x.dtype == y.dtype and torch.equal(x, y), name
    # copies that run one sample from the same start move identically
    assert torch.equal(shared.state.veh_lane[1], shared.state.veh_lane[4])


def test_per_copy_and_take_sample_read_each_copys_sample_row():
    scenario = small_grid(2, 2, rate=600.0, horizon=100, seed=1)
    a, b = (sample_trips(scenario, DemandSpec(mode="poisson"), "eval", k) for k in range(2))
    demand = scenario.demand(trips=[b, a, b])
    depart = demand.per_copy(demand.depart)
    assert depart.shape == (3, demand.max_trips + 1) and depart.dtype == torch.int32
    assert depart[0, : b.num_trips].tolist() == b.depart.tolist()
    assert depart[1, : a.num_trips].tolist() == a.depart.tolist()
    assert torch.equal(depart[0], depart[2])
    trip = torch.tensor([[0, 3], [1, 2], [4, 0]])
    legs = demand.route_legs
    moves = take_sample(demand.route_movement, demand.sample_of_copy, trip * legs)
    assert moves.dtype == torch.int64  # widened for indexing, same values
    per_copy = demand.per_copy(demand.route_movement).to(torch.int64)
    assert torch.equal(moves, torch.gather(per_copy, 1, trip * legs))
    vehicle = take_sample(demand.vehicle, demand.sample_of_copy, trip)  # [B, 2, F]
    assert torch.equal(vehicle[1, 0], torch.from_numpy(a.vehicle[1]))
    assert torch.equal(vehicle[2, 0], torch.from_numpy(b.vehicle[4]))


@pytest.mark.parametrize("low, high, dtype", [
    (-1, 32767, torch.int16), (-32768, 0, torch.int16), (0, 32768, torch.int32), (-32769, 0, torch.int32),
    (-1, 2**31 - 1, torch.int32), (0, 2**31, torch.int64),
])
def test_index_dtype_is_the_narrowest_that_holds_the_range(low, high, dtype):
    assert index_dtype(low, high) == dtype


@pytest.mark.parametrize("trips, dtype", [(32767, torch.int16), (32768, torch.int32)])
def test_trip_position_tables_widen_when_trip_ids_pass_int16(trips, dtype):
    """Trip ids, queue positions and departure counts run up to T (the scratch trip): int16 holds
    T = 32767, T = 32768 needs int32."""
    scenario = single_route(["road_0_1_0", "road_1_1_0"], [0, 0, 5])
    demand = stack_demand([scenario.trips], scenario.network, DemandShape(trips, 0, 0))
    assert demand.max_trips == trips
    for name in ("entry_order", "origin_start", "origin_end", "departed_by"):
        assert getattr(demand, name).dtype == dtype, name
    assert demand.entry_order[0, -1] == trips  # padding points at the scratch trip
    assert demand.route_movement.dtype == torch.int16  # movements -1..M-1
    assert demand.depart.dtype == torch.int32


def _sample_bytes(demand, network) -> int:
    """Hand count of one sample's row: int32 departures, int16 roads, movements and trip
    positions (these small scenarios), float32 vehicle parameters and free-flow times."""
    trips, legs, fields = demand.max_trips + 1, demand.route_legs, demand.vehicle.shape[2]
    return (trips * 4 + trips * 2 + trips * legs * 2 + trips * fields * 4 + trips * 2
            + 2 * network.num_roads * 2 + (demand.horizon + 1) * 2 + trips * 4)


def test_memory_per_copy_is_the_copy_index_only_when_copies_share_a_sample():
    scenario = small_grid(2, 2, rate=600.0, horizon=200, seed=0)
    network = scenario.network
    one, many = scenario.demand(copies=1), scenario.demand(copies=64)
    assert many.num_samples == 1
    # per copy: its sample index and its trip count, two int64 values; the tables once
    assert one.table_bytes() == _sample_bytes(one, network) + 16
    assert many.table_bytes() == _sample_bytes(many, network) + 64 * 16
    distinct = [sample_trips(scenario, DemandSpec(mode="poisson"), "eval", k) for k in range(4)]
    four = scenario.demand(trips=distinct * 16)  # 64 copies over 4 samples
    assert four.batch_size == 64 and four.num_samples == 4
    assert four.table_bytes() == 4 * _sample_bytes(four, network) + 64 * 16
    # the int64 tables of one row per copy that this replaces: 64 rows, 8-byte integers
    trips, legs = four.max_trips + 1, four.route_legs
    old_row = (trips * 8 * 4 + trips * legs * 8 + trips * four.vehicle.shape[2] * 4 + 2 * network.num_roads * 8
               + (four.horizon + 1) * 8)
    assert 64 * old_row > 16 * 2 * four.table_bytes()  # 16 copies a sample, half the bytes a row


def test_env_demand_pool_cycles_k_samples_and_autoreset_only_reindexes_the_tables():
    from envs.errors import ConfigError
    from envs.rl.signal_env import BatchedSignalEnv

    scenario = small_grid(2, 2, rate=900.0, horizon=200)
    env = BatchedSignalEnv(scenario, 5, episode_s=20, decision_interval_s=10, demand={"mode": "poisson"},
                           demand_pool=2)
    assert env.sim.demand.num_samples == 1  # before the first reset: the scenario's own trips, once
    env.reset(seed=4)
    demand = env.sim.demand
    assert demand.num_samples == 2 and demand.sample_of_copy.tolist() == [0, 1, 0, 1, 0]
    expected = [sample_trips(scenario, env.demand_spec, "train", k).num_trips for k in (4, 5)]
    assert env.sim.demand.num_trips.tolist() == [expected[b % 2] for b in range(5)]
    tables = demand.route_movement
    env.step(torch.zeros(5, 4, dtype=torch.int64))
    env.step(torch.zeros(5, 4, dtype=torch.int64))  # t = 20: every copy truncates and restarts
    after = env.sim.demand
    assert after.route_movement is tables  # the pool's tables stay, only the index moved
    assert after.sample_of_copy.tolist() == [1, 0, 1, 0, 1]  # episodes 5..9: samples 5, 4, 5, 4, 5
    assert after.num_trips.tolist() == [expected[(b + 1) % 2] for b in range(5)]  # and their trip counts
    assert env.next_sample == 14
    env.reset(seed=0)  # a new pool: samples 0 and 1
    assert env.sim.demand.num_trips.tolist()[:2] == [
        sample_trips(scenario, env.demand_spec, "train", k).num_trips for k in (0, 1)]
    with pytest.raises(ConfigError, match="demand_pool") as refused:
        BatchedSignalEnv(scenario, 2, demand_pool=-1)
    assert_names_everything(refused.value, "<env>", "demand_pool", -1)
    assert 'must be an integer >= 0' in refused.value.reason
    with pytest.raises(ConfigError, match="replays one flow file") as refused:  # every sample the same: no effect
        BatchedSignalEnv(scenario, 2, demand_pool=2)
    assert_names_everything(refused.value, "<env>", "demand_pool", 2)


def test_an_eval_env_draws_its_episodes_from_the_eval_split():
    from envs.rl.signal_env import BatchedSignalEnv

    # the splits' seeds are disjoint: an evaluation env must run eval samples, never training ones
    scenario = small_grid(2, 2, rate=900.0, horizon=200)
    env = BatchedSignalEnv(scenario, 2, episode_s=20, demand={"mode": "poisson"}, split="eval")
    env.reset(seed=3)
    for copy, index in enumerate((3, 4)):
        own, train = (sample_trips(scenario, env.demand_spec, split, index) for split in ("eval", "train"))
        assert not (own.num_trips == train.num_trips and (own.depart == train.depart).all())
        assert (env.trips[copy].num_trips, env.trips[copy].depart.tolist()) == (own.num_trips, own.depart.tolist())


def _staggered_env(**options):
    """grid_1x1 whose demand drains in 60 s, 600 s episodes, random decisions until the copies'
    episodes hold samples out of order (their episodes ended at different times)."""
    from envs.rl.signal_env import BatchedSignalEnv
    from envs.scenario import load_scenario

    env = BatchedSignalEnv(load_scenario("grid_1x1", horizon=60), 4, episode_s=600, demand={"mode": "poisson"},
                           **options)
    env.reset(seed=0)
    draws = torch.Generator().manual_seed(0)
    for _ in range(2000):
        env.step(torch.randint(0, int(env.num_actions[0]), (4, 1), generator=draws))
        held = env.demand_state["held"]
        if sorted(held) != list(range(min(held), min(held) + 4)):
            return env
    raise AssertionError("the copies' episodes never fell out of step")


def test_a_resumed_env_restarts_each_copy_on_the_sample_it_held_and_carries_on_the_stream():
    """What a checkpoint keeps (`demand_state`): a resumed env restarts every copy on the sample
    its episode ran, whatever seed its reset is given (SB3 seeds its env when it loads a model),
    and draws new samples from where the stream was; with a pool, the pool stays where it was."""
    from envs.errors import ConfigError
    from envs.rl.signal_env import BatchedSignalEnv
    from envs.scenario import load_scenario

    for options in ({}, {"demand_pool": 3}):
        env = _staggered_env(**options)
        state = env.demand_state
        resumed = BatchedSignalEnv(load_scenario("grid_1x1", horizon=60), 4, episode_s=600,
                                   demand={"mode": "poisson"}, **options)
        resumed.resume_demand(state, "<checkpoint>")
        resumed.reset(seed=0)
        assert resumed.demand_state == state  # before: copies restarted on min(held) .. min(held) + 3
        assert [t.num_trips for t in resumed.trips] == [t.num_trips for t in env.trips]
        assert torch.equal(resumed.sim.demand.depart, env.sim.demand.depart)
        resumed.restart_copies(torch.tensor([True, False, False, False]))  # the next episode: a new sample
        assert resumed.demand_state["held"][0] == state["next_sample"]
    resumed.reset(seed=7)  # the resume applied once: a later seeded reset restarts the stream at its seed
    assert resumed.demand_state["held"] == [7, 8, 9, 10]
    for bad in ({"held": [0], "next_sample": 0, "pool_base": 0}, {"held": [0], "next_sample": 1},
                {"held": [-2, 0], "next_sample": 3, "pool_base": 0}):
        with pytest.raises(ConfigError) as refused:
            env.resume_demand(bad, "ckpt.pt")
        assert_names_everything(refused.value, "ckpt.pt", "train_demand", bad)
