"""Lane heads: what the vehicle nearest each stop line sees ahead (step phase 2; the rules are
in `envs.engine.step`'s docstring). The lanes' incidents at a step: `envs.engine.incident_rules`
(re-exported here)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from envs.engine.incident_rules import Incidents, incident_factor, lane_incidents, with_blockages
from envs.engine.ops import FAR, MOVING_TAIL_SPEED, materialise, prefer_open, take
from envs.engine.right_of_way import gives_way, has_right_of_way_rules
from envs.engine.signals import Signals
from envs.engine.state import EngineParams, SimState
from envs.scenario.network import Network


__all__ = ["Heads", "Incidents", "incident_factor", "lane_incidents", "look_ahead"]


class Heads(NamedTuple):
    """Per lane ``[B, L]`` unless noted: its head vehicle and what that vehicle sees."""

    slot: torch.Tensor  # the head's slot (the scratch slot on an empty lane)
    present: torch.Tensor  # bool, the lane has a head
    trip: torch.Tensor  # the head's trip
    leg: torch.Tensor  # the head's leg (index of its current road in the route)
    after_move: torch.Tensor  # the head's movement after its next one (-1 = none)
    last_road: torch.Tensor  # bool, the head is on the last road of its route
    target: torch.Tensor  # the lane it enters after the stop line
    through_length: torch.Tensor  # length of the link through the box to `target`
    gap: torch.Tensor  # the head's minimum gap
    lead_rear: torch.Tensor  # [B, L+1] position of what it follows (from this lane's start)
    lead_speed: torch.Tensor  # [B, L+1] speed of what it follows
    held: torch.Tensor  # bool, the head follows its stop line (it may not cross this step)


def look_ahead(
    network: Network, params: EngineParams, state: SimState, signals: Signals,
    incidents: Incidents | None,
) -> Heads:
    """Every lane's head: its target lane and the obstacle it follows (a stop line or the
    target lane's last vehicle)."""
    s = state
    batch = s.t.shape[0]
    num_lanes = network.num_lanes
    scratch_slot = s.veh_lane.shape[1] - 1
    lane_length = network.lane_length.unsqueeze(0)  # [1, L]
    head = s.lane_head[:, :num_lanes]
    has_head = head >= 0
    h = torch.where(has_head, head, scratch_slot)
    h_trip = take(s.veh_trip, h)
    h_leg = take(s.veh_leg, h)
    next_move = torch.where(has_head, take(s.veh_move, h), -1)  # [B, L]
    after_move = take(s.veh_next_move, h)
    h, h_trip, h_leg, next_move, after_move = materialise(h, h_trip, h_leg, next_move, after_move)
    last_road = has_head & (next_move < 0)
    m1 = next_move.clamp(min=0)
    m2 = after_move.clamp(min=0)
    lane_in_road = network.lane_index.unsqueeze(0).expand(batch, -1)

    # room at each lane's start: rear of its last vehicle (FAR when empty)  [B, L+1]
    tail = s.lane_tail
    tail_c = torch.where(tail >= 0, tail, scratch_slot)
    tail_rear = torch.where(tail >= 0, take(s.veh_pos, tail_c) - take(s.veh_length, tail_c), FAR)
    tail_speed = torch.where(tail >= 0, take(s.veh_speed, tail_c), 0.0)
    tail_rear, tail_speed = with_blockages(incidents, tail_rear, tail_speed)  # a blockage leaves less room
    tail_rear, tail_speed = materialise(tail_rear, tail_speed)

    candidates = network.road_lanes[network.movement_end_road[m1]]  # [B, L, E]
    reachable = network.movement_target[m1, lane_in_road]  # [B, L, E]
    serves_after = torch.where(
        (after_move >= 0).unsqueeze(-1), network.movement_from_lane[m2], True
    )
    usable = reachable & serves_after & (candidates >= 0)
    cand_c = torch.where(candidates >= 0, candidates, num_lanes)
    if incidents is not None:
        usable = prefer_open(usable, take(incidents.avoid, cand_c))
    cand_rear = take(tail_rear, cand_c)
    score = torch.where(usable, cand_rear, -FAR)
    best = score.argmax(dim=-1, keepdim=True)  # lowest index among equals
    target = torch.gather(cand_c, 2, best).squeeze(-1)  # [B, L]
    target_rear = torch.gather(score, 2, best).squeeze(-1)
    target_speed = take(tail_speed, target)
    through_length = network.link_length[m1, lane_in_road, best.squeeze(-1)]

    h_pos = take(s.veh_pos, h)
    h_speed = take(s.veh_speed, h)
    h_gap = take(s.veh_min_gap, h)
    h_decel = take(s.veh_decel, h)
    to_stop_line = lane_length - h_pos
    # Spillback: the target lane blocks its upstream movements when its last vehicle stands
    # near its start. A last vehicle that is still moving (in the box or just past it) does
    # not block: car following through the box keeps the head behind it.
    room = (target_rear - h_gap >= 0) | (target_speed >= MOVING_TAIL_SPEED)
    no_movement = network.num_movements
    signal_green = take(signals.green, torch.where(next_move >= 0, next_move, no_movement))
    signal_yellow = take(signals.yellow, torch.where(next_move >= 0, next_move, no_movement))
    can_stop = h_speed * h_speed <= 2.0 * h_decel * to_stop_line
    may_cross = room & (signal_green | (signal_yellow & ~can_stop)) & ~last_road
    leaves_freely = last_road
    if incidents is not None:  # a closed lane's head sees a stop line that never opens, exit lanes too
        may_cross = may_cross & ~incidents.closed[:, :num_lanes]
        leaves_freely = last_road & ~incidents.closed[:, :num_lanes]
    if params.junction_yielding and has_right_of_way_rules(network):
        # a head that can still stop waits for the movements it yields to (right_of_way)
        waits = gives_way(network, params, signals, next_move, may_cross, h_speed, to_stop_line)
        may_cross = may_cross & ~(waits & can_stop)
    head_rear = torch.where(
        leaves_freely,
        FAR,
        torch.where(may_cross, lane_length + through_length + target_rear, lane_length + h_gap),
    )
    head_lead_speed = torch.where(may_cross, target_speed, 0.0)
    held = has_head & ~may_cross & ~leaves_freely
    pad = torch.zeros(batch, 1, device=s.t.device)
    head_rear = torch.cat([head_rear, pad + FAR], 1)  # [B, L+1]
    head_lead_speed = torch.cat([head_lead_speed, pad], 1)
    return Heads(
        h, has_head, h_trip, h_leg, after_move, last_road, target, through_length, h_gap,
        head_rear, head_lead_speed, held,
    )
