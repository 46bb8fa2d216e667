"""Queues between junctions (engine.md, steps 2 and 4): a lane whose last vehicle stands near its
start blocks the movements into it (spillback), and when several heads cross into one lane in a
step, one enters it: the furthest past its stop line, then the lowest lane id."""

from __future__ import annotations

import torch

from envs.engine import Simulator
from envs.engine.crossings import cross_stop_lines
from envs.engine.following import Motion
from envs.engine.heads import Heads
from envs.engine.ops import MOVING_TAIL_SPEED
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet
from tests.engine_checks import check_all
from tests.scenarios import small_grid

WEST_IN, MIDDLE, EAST_OUT = "road_0_1_0", "road_1_1_0", "road_2_1_0"  # eastbound through a 1x2 grid
EAST_WEST, NORTH_SOUTH = 0, 1  # the generated phases' straight movements


def test_a_lane_whose_last_vehicle_stands_near_its_start_lets_nobody_in():
    """Eastbound traffic through two junctions, the second red for it throughout: the 60 m road
    between them fills. A vehicle crosses onto it only while its last vehicle's rear is at least
    the entrant's min gap from the start or that vehicle still moves (at MOVING_TAIL_SPEED or
    more); once the queue stands, the first junction's green lets nobody through."""
    roadnet = grid_roadnet(1, 2, road_length=60.0)
    flow = [{"vehicle": dict(DEFAULT_VEHICLE), "route": [WEST_IN, MIDDLE, EAST_OUT], "interval": 2.0,
             "startTime": 0, "endTime": 300}]
    scenario = scenario_from_dicts(roadnet, flow, name="spillback")
    net = scenario.network
    sim = Simulator(net, scenario.demand(1))
    middle = net.road_lanes[net.road_ids.index(MIDDLE)].tolist()
    upstream = net.road_lanes[net.road_ids.index(WEST_IN)].tolist()
    entered = blocked = 0
    for _ in range(300):
        before = sim.snapshot()
        sim.step(torch.tensor([[EAST_WEST, NORTH_SOUTH]]))
        check_all(net, sim.demand, sim.params, before, sim.state)
        was, now = before.veh_lane[0, :-1], sim.state.veh_lane[0, :-1]
        for lane in middle:
            tail = int(before.lane_tail[0, lane])
            entrants = ((now == lane) & torch.isin(was, torch.tensor(upstream))).nonzero().flatten().tolist()
            entered += len(entrants)
            if tail < 0:
                continue
            rear = float(before.veh_pos[0, tail] - before.veh_length[0, tail])
            standing = float(before.veh_speed[0, tail]) < MOVING_TAIL_SPEED
            for slot in entrants:
                assert rear >= float(before.veh_min_gap[0, slot]) or not standing, (
                    f"t={int(before.t[0])}: slot {slot} entered behind a standing tail at {rear:.1f} m")
            if standing and rear < float(DEFAULT_VEHICLE["minGap"]):
                blocked += 1
    # the queue filled the middle road, and then held the upstream heads at their green for long
    assert entered > 8 and blocked > 200
    upstream_heads = [int(h) for h in sim.state.lane_head[0, upstream] if h >= 0]
    assert upstream_heads and all(float(sim.state.veh_speed[0, h]) == 0.0 for h in upstream_heads)


def _two_heads_into_one_lane(overshoot_a: float, overshoot_b: float):
    """Heads of two lanes a < b of a 2x2 grid both past their stop line by the given metres,
    both bound for one lane: ``(a, b, crossing)`` after `cross_stop_lines`."""
    net = small_grid().network
    lanes, scratch = net.num_lanes, 2
    a, b, target = 0, 5, 9  # any two lanes and a third; the rule reads only positions and ids
    slot = torch.full((1, lanes), scratch)
    slot[0, a], slot[0, b] = 0, 1
    present = slot != scratch
    zeros = torch.zeros(1, lanes)
    heads = Heads(slot, present, torch.zeros_like(slot), torch.zeros_like(slot), torch.full_like(slot, -1),
                  torch.zeros_like(present), torch.where(present, target, lanes), zeros, zeros,
                  torch.zeros(1, lanes + 1), torch.zeros(1, lanes + 1), torch.zeros_like(present))
    length = net.lane_length
    pos = torch.tensor([[float(length[a]) + overshoot_a, float(length[b]) + overshoot_b, 0.0]])
    motion = Motion(torch.tensor([[True, True, False]]), pos, torch.full((1, 3), 8.0), torch.full((1, 3), 11.0))
    return a, b, length, cross_stop_lines(net, heads, motion)


def test_of_two_heads_crossing_into_one_lane_the_furthest_past_its_stop_line_enters():
    a, b, length, crossing = _two_heads_into_one_lane(0.3, 0.5)
    assert not bool(crossing.wins[0, a]) and bool(crossing.wins[0, b])
    # the other waits at its stop line, at rest
    assert float(crossing.pos[0, 0]) == float(length[a]) and float(crossing.speed[0, 0]) == 0.0
    assert float(crossing.pos[0, 1]) == float(length[b]) + 0.5 and float(crossing.speed[0, 1]) == 8.0
    a, b, _, crossing = _two_heads_into_one_lane(0.5, 0.3)
    assert bool(crossing.wins[0, a]) and not bool(crossing.wins[0, b])


def test_of_two_heads_equally_far_past_the_lower_lane_id_enters():
    a, b, _, crossing = _two_heads_into_one_lane(0.4, 0.4)
    assert bool(crossing.wins[0, a]) and not bool(crossing.wins[0, b])
