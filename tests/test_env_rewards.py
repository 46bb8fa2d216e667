"""The reward terms are the quantities environments.md documents, each computed here from the
vehicles' slots by a plain loop (not the registry's code path), and the per-step terms sum over
every second of a decision interval."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.test_envs import _stepped_env


def test_rewards_are_the_documented_quantities():
    from envs.rl.features import REWARDS

    env = _stepped_env(["lane_count"], reward={"queue": 1.0})
    ctx = env.context()

    lanes_halting = torch.zeros(2, 4)
    for b in range(2):
        for i in range(4):
            for lane in env.layout.in_lanes[i].tolist():
                on = env.sim.state.veh_lane[b, :-1] == lane
                lanes_halting[b, i] += (on & (env.sim.state.veh_speed[b, :-1] < 0.1)).sum()
    assert torch.equal(REWARDS["queue"].compute(ctx), -lanes_halting)
    assert torch.equal(REWARDS["waiting_time"].compute(ctx), -lanes_halting)
    # per vehicle, from the slots (not the engine's lane counts): pressure is minus |incoming -
    # outgoing| summed over an intersection's movements, each movement's lanes counted once
    state, net = env.sim.state, env.sim.network
    lane_of, speed = state.veh_lane[:, :-1], state.veh_speed[:, :-1]
    moves = net.movement_in_lanes.shape[0] // 4
    pressure, delay = torch.zeros(2, 4), torch.zeros(2, 4)
    partial = 0  # vehicles moving below their limit: delay's fractional part is exercised
    for b in range(2):
        on_lane = torch.stack([(lane_of[b] == lane).sum() for lane in range(net.num_lanes)]).float()
        for m in range(net.movement_in_lanes.shape[0]):
            if net.movement_valid[m]:
                ins, outs = (ids[ids >= 0] for ids in (net.movement_in_lanes[m], net.movement_out_lanes[m]))
                pressure[b, m // moves] += on_lane[ins].sum() - on_lane[outs].sum()
        for i in range(4):
            for lane in env.layout.in_lanes[i].tolist():
                for slot in torch.nonzero(lane_of[b] == lane).flatten().tolist():
                    limit = min(float(state.veh_max_speed[b, slot]), float(net.lane_max_speed[lane]))
                    lost = max(0.0, 1.0 - float(speed[b, slot]) / limit)
                    delay[b, i] += lost
                    partial += 0.0 < lost < 0.9
    assert partial > 0 and (pressure != 0).any()
    assert any(on_lane[ids[ids >= 0]].sum() > 0 for ids in net.movement_out_lanes)  # outgoing lanes count
    assert torch.equal(REWARDS["pressure"].compute(ctx), -pressure.abs())
    torch.testing.assert_close(REWARDS["delay"].compute(ctx), -delay)


def test_waiting_time_sums_the_queue_over_every_second_of_the_interval():
    env_a = _stepped_env(["lane_count"], reward="waiting_time", steps=4)
    env_b = copy.deepcopy(env_a)
    from envs.rl.features import REWARDS

    total = torch.zeros(2, 4)
    action = torch.ones(2, 4, dtype=torch.int64)
    for _ in range(5):  # replay the interval second by second
        env_b.sim.step(env_b.commands(action))
        total += REWARDS["queue"].compute(env_b.context())
    _, reward, *_ = env_a.step(action)
    torch.testing.assert_close(reward, total)


def test_delay_is_lost_time_against_the_lane_limit_for_vehicles_faster_than_the_lane():
    from envs.rl.features import REWARDS
    from envs.rl.signal_env import BatchedSignalEnv
    from envs.scenario import scenario_from_dicts
    from envs.scenario.generate import grid_roadnet, uniform_demand

    # the generator's vehicles may drive 11.1 m/s; these lanes allow 6: a vehicle driving at the
    # lane limit loses nothing, and one at 3 m/s loses half of each second (1 - v / 6)
    roadnet = grid_roadnet(1, 1, road_length=200.0, speed_limit=6.0)
    flow = uniform_demand(roadnet, rate_per_origin=600.0, horizon=300, seed=0)
    env = BatchedSignalEnv(scenario_from_dicts(roadnet, flow, name="slow_lanes"), 1, episode_s=300,
                           reward="delay")
    env.reset(seed=0)
    for _ in range(6):
        env.step(torch.zeros(1, 1, dtype=torch.int64))
    state, net = env.sim.state, env.network
    lane, speed = state.veh_lane[0, :-1], state.veh_speed[0, :-1]
    incoming = torch.isin(lane, env.layout.in_lanes[0][env.layout.in_lanes[0] >= 0])
    assert bool((state.veh_max_speed[0, :-1][incoming] > 6.0).all())
    assert bool((speed[incoming] > 5.9).any())  # free-flowing vehicles at the lane limit
    expected = (1.0 - speed[incoming] / net.lane_max_speed[lane[incoming]]).clamp(min=0.0).sum()
    torch.testing.assert_close(REWARDS["delay"].compute(env.context())[0, 0], -expected)


@pytest.mark.parametrize("term", ["waiting_time", "queue"])  # summed per second; read at the decision
def test_a_terms_weight_scales_its_reward(term):
    # the same traffic (same scenario, seed and actions) under two weights of the term
    env_a, env_b = (_stepped_env(["lane_count"], reward={term: w}, steps=4) for w in (1.0, 2.5))
    action = torch.ones(2, 4, dtype=torch.int64)
    (_, once, *_), (_, scaled, *_) = env_a.step(action), env_b.step(action)
    assert once.abs().sum() > 0  # queues to weigh
    torch.testing.assert_close(scaled, 2.5 * once)
