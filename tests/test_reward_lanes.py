"""A light's lane-based rewards count the queue that backs up over the unsignalised junctions
before it (`envs.engine.intersections.reward_lanes`): on resco_ingolstadt1 the light's own lanes
in front of its phase 2 hold two cars, so counting them alone rewarded never serving phase 2."""

from __future__ import annotations

import torch

from envs.rl.signal_env import BatchedSignalEnv
from envs.scenario import scenario_from_sumo
from tests.sumo_fixtures import two_lights_net, write_tiny


def _light_queue(env: BatchedSignalEnv, light: int, actions) -> float:
    """The light's summed queue reward over one episode, its action at decision k `actions(k)`."""
    env.reset(seed=0)
    total, k = 0.0, 0
    while True:
        action = torch.zeros(1, env.num_intersections, dtype=torch.int64)
        action[0, light] = actions(k)
        _, reward, terminated, truncated, _ = env.step(action)
        total, k = total + float(reward[0, light]), k + 1
        if bool(terminated[0] or truncated[0]):
            return total


def test_ingolstadt1_light_is_not_rewarded_for_never_serving_phase_2(datasets_dir):
    env = BatchedSignalEnv("resco_ingolstadt1", 1, episode_s=1800, demand={"mode": "original"},
                           data_dir=str(datasets_dir), autoreset=False)
    light = int(torch.nonzero(env.layout.num_actions > 1).flatten()[0])
    assert int(env.layout.num_actions[light]) == 3  # the one light; the other three have one phase
    hold = _light_queue(env, light, lambda k: 0)  # phase 0 forever: phase 2's traffic never moves
    cycle = _light_queue(env, light, lambda k: (k // 6) % 3)  # 30 s per phase
    # counted over its own lanes alone this was -771 (hold) against -2,452 (cycle), so training
    # learnt to hold (607 s of travel time against 52 s): the queue holding leaves stands behind
    # the unsignalised junction before the 14.9 m approach (now -12,001 against -3,182)
    assert cycle > hold
    assert cycle > 0.5 * hold  # not a near tie: holding costs at least twice the cycle's queue


def test_a_light_counts_the_lanes_that_reach_it_through_an_unsignalised_junction(tmp_path):
    from envs.engine.intersections import intersection_layout, reward_lanes

    # C and E are lights; N (unsignalised, one phase) passes CN's traffic on to E over NE
    scenario = scenario_from_sumo(write_tiny(tmp_path, net=two_lights_net()))
    net = scenario.network
    layout = intersection_layout(net)
    ids = list(net.intersection_ids)
    c, n, e = ids.index("C"), ids.index("N"), ids.index("E")
    assert int(layout.num_actions[n]) == 1 and int(layout.num_actions[c]) > 1 and int(layout.num_actions[e]) > 1
    lanes = reward_lanes(net, layout)

    def lane_set(table, i):
        return {lane for lane in table[i].tolist() if lane >= 0}

    cn = {lane for lane in net.road_lanes[list(net.road_ids).index("CN")].tolist() if lane >= 0}
    # CN ends 100 m (NE's length) before E's stop line: at the reach, not within it
    assert lane_set(lanes, e) == lane_set(layout.in_lanes, e)
    further = reward_lanes(net, layout, reach_m=150.0)
    assert lane_set(further, e) == lane_set(layout.in_lanes, e) | cn  # CN's queue stands before E
    for table in (lanes, further):
        assert lane_set(table, c) == lane_set(layout.in_lanes, c)  # nothing reaches C through N
        assert lane_set(table, n) == lane_set(layout.in_lanes, n)  # N decides nothing: its own lanes

    env = BatchedSignalEnv(scenario, 1, autoreset=False)  # the table the env's rewards sum over
    assert torch.equal(env.feature_base.reward_lanes, lanes)


def test_on_a_network_of_lights_alone_the_reward_lanes_are_the_incoming_lanes():
    env = BatchedSignalEnv("grid_4x4", 1)
    assert torch.equal(env.feature_base.reward_lanes, env.layout.in_lanes)


def test_a_light_never_counts_the_roads_it_sends_traffic_out_on(tmp_path):
    """A turnaround at N (CN -> NC) leads C's own outgoing road CN back into C: C's rewards counted CN,
    the traffic C had just released (12 such roads on resco_cologne8's lights, 3 on resco_cologne3's,
    one on resco_cologne1's), so a light was penalised for serving the approach that feeds it."""
    from envs.engine.intersections import intersection_layout, reward_lanes

    turnaround = '  <connection from="CN" to="NC" fromLane="0" toLane="0" dir="t"/>\n</net>'
    scenario = scenario_from_sumo(write_tiny(tmp_path, net=two_lights_net().replace("</net>", turnaround)))
    net = scenario.network
    layout = intersection_layout(net)
    ids, roads = list(net.intersection_ids), list(net.road_ids)
    c, n = ids.index("C"), ids.index("N")
    assert int(layout.num_actions[n]) == 1 and int(layout.num_actions[c]) > 1
    lanes = reward_lanes(net, layout)
    counted = {lane for lane in lanes[c].tolist() if lane >= 0}
    cn = {lane for lane in net.road_lanes[roads.index("CN")].tolist() if lane >= 0}
    assert not counted & cn
    assert counted == {lane for lane in layout.in_lanes[c].tolist() if lane >= 0}  # NC is C's own approach
