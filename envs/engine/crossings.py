"""Crossings: heads past their stop line change lanes or, on their last road, leave (step
phase 4; the rules are in `envs.engine.step`'s docstring), and the per-vehicle tallies.

`change_lanes` and `finish_trips` (and `entries.enter`) take the step's new state so far and
return it with the fields they change; `put_first` writes a field the step has not written
yet: in place, or on a copy when the step is pure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from envs.engine.following import Motion
from envs.engine.heads import Heads
from envs.engine.ops import DT, FAR, materialise, put, take, take_sample
from envs.engine.state import EngineParams, SimState, with_fields
from envs.scenario.demand import Demand
from envs.scenario.network import Network

Put = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


class Crossing(NamedTuple):
    """Which heads pass their stop line this step ``[B, L]``, and every slot after it."""

    front: torch.Tensor  # the head's new front position (> lane length: past the stop line)
    leaving: torch.Tensor  # bool, the head leaves the network (its last road)
    wins: torch.Tensor  # bool, the head moves to its target lane
    pos: torch.Tensor  # [B, S+1] new positions, heads that lost held at their stop line
    speed: torch.Tensor  # [B, S+1] new speeds, likewise


class Tally(NamedTuple):
    """Per slot ``[B, S+1]``: delay, halting and stops after this step."""

    delay: torch.Tensor  # seconds lost against driving at the speed limit
    halted: torch.Tensor  # bool, slower than the halting speed
    stops: torch.Tensor  # halts that started after moving


def cross_stop_lines(network: Network, heads: Heads, motion: Motion) -> Crossing:
    """Decide which heads past the stop line cross; the others wait at it."""
    batch = motion.pos.shape[0]
    device = motion.pos.device
    num_lanes = network.num_lanes
    scratch_slot = motion.pos.shape[1] - 1
    lane_length = network.lane_length.unsqueeze(0)
    h = heads.slot
    new_pos, new_speed = motion.pos, motion.speed
    h_new_pos = take(new_pos, h)
    past = heads.present & (h_new_pos > lane_length)
    # A head held at its stop line can still end past it by float32 rounding: it follows the
    # line plus its min gap, and (length + gap) - gap rounds above the length for some lengths
    # (127.63 m with a 2.5 m or 1.5 m gap, as in resco_cologne3), so it crossed on red. It never
    # crosses: it waits at the line, as a head that lost its target lane does.
    overshot = past & heads.held
    crossing = past & ~heads.held
    leaving_network = crossing & heads.last_road
    moving = crossing & ~heads.last_road
    h_new_pos, leaving_network, moving, overshot = materialise(h_new_pos, leaving_network, moving, overshot)
    lane_ids = torch.arange(num_lanes, device=device).unsqueeze(0)
    overshoot_mm = ((h_new_pos - lane_length) * 1000.0).to(torch.int64)
    key = torch.where(moving, overshoot_mm * (num_lanes + 1) + (num_lanes - lane_ids), -1)
    target_c = torch.where(moving, heads.target, num_lanes)
    best_key = torch.full((batch, num_lanes + 1), -1, dtype=torch.int64, device=device)
    best_key = best_key.scatter_reduce(1, target_c, key, reduce="amax")
    (wins,) = materialise(moving & (key == take(best_key, target_c)))
    blocked = (moving & ~wins) | overshot  # wait at the stop line
    blocked_slot = torch.where(blocked, h, scratch_slot)
    new_pos = put(new_pos, blocked_slot, lane_length.expand(batch, -1))
    new_speed = put(new_speed, blocked_slot, 0.0)
    return Crossing(h_new_pos, leaving_network, wins, new_pos, new_speed)


def tally(params: EngineParams, state: SimState, motion: Motion, crossing: Crossing) -> Tally:
    """Delay (time lost against driving at the speed limit), halting and stops, per vehicle."""
    lost = (DT - (crossing.pos - state.veh_pos) / motion.free_limit).clamp(min=0.0)
    delay = state.veh_delay + torch.where(motion.active, lost, 0.0)
    halted = motion.active & (crossing.speed < params.halting_speed)
    stops = state.veh_stops + (halted & ~state.veh_halted).to(state.veh_stops.dtype)
    return Tally(delay, halted, stops)


def change_lanes(
    network: Network, demand: Demand, new: SimState, heads: Heads, crossing: Crossing, put_first: Put
) -> SimState:
    """Heads that cross leave their lanes; the winners join the tail of their target lane.

    `new` has this step's positions, speeds and tallies; its lane and other vehicle fields are
    still the input state's."""
    batch = new.t.shape[0]
    num_lanes = network.num_lanes
    scratch_slot = new.veh_lane.shape[1] - 1
    scratch_trip = new.trip_enter.shape[1] - 1
    lane_length = network.lane_length.unsqueeze(0)
    legs = demand.route_legs
    h, wins, target = heads.slot, crossing.wins, heads.target

    # heads leave their lanes
    leaves = wins | crossing.leaving
    (follower,) = materialise(take(new.veh_follower, h))
    lane_head = new.lane_head.clone()
    lane_tail = new.lane_tail.clone()
    lane_head[:, :num_lanes] = torch.where(leaves, follower, new.lane_head[:, :num_lanes])
    lane_tail[:, :num_lanes] = torch.where(leaves & (follower < 0), -1, new.lane_tail[:, :num_lanes])
    veh_leader = put_first(new.veh_leader, torch.where(leaves & (follower >= 0), follower, scratch_slot), -1)
    lane_count = new.lane_count - torch.cat(
        [leaves.to(new.lane_count.dtype), torch.zeros(batch, 1, dtype=new.lane_count.dtype, device=new.t.device)], 1
    )

    # winners join the tail of their target lane
    win_slot = torch.where(wins, h, scratch_slot)
    win_lane = torch.where(wins, target, num_lanes)
    old_tail = take(lane_tail, win_lane)
    old_tail_c = torch.where(old_tail >= 0, old_tail, scratch_slot)
    behind = torch.where(
        old_tail >= 0, take(new.veh_pos, old_tail_c) - take(new.veh_length, old_tail_c), FAR
    )
    entry_pos = torch.minimum(crossing.front - lane_length - heads.through_length, behind - heads.gap)
    veh_lane = put_first(new.veh_lane, win_slot, win_lane)
    veh_pos = put(new.veh_pos, win_slot, entry_pos)
    veh_leg = put_first(new.veh_leg, win_slot, heads.leg + 1)
    # the route table is read only for the vehicles that change road (and enter)
    after_next = take_sample(
        demand.route_movement, demand.sample_of_copy,
        # the route-table offset in int64: trips x legs can pass int32's range on a long day
        torch.where(wins, heads.trip.to(torch.int64) * legs + (heads.leg + 2).clamp(max=legs - 1), scratch_trip * legs),
    )
    veh_move = put_first(new.veh_move, win_slot, heads.after_move)
    veh_next_move = put_first(new.veh_next_move, win_slot, after_next)
    veh_leader = put(veh_leader, win_slot, old_tail)
    veh_follower = put_first(new.veh_follower, torch.where(leaves & (follower >= 0), h, scratch_slot), -1)
    veh_follower = put(veh_follower, win_slot, -1)
    veh_follower = put(veh_follower, torch.where(wins & (old_tail >= 0), old_tail, scratch_slot), h)
    lane_head = put(lane_head, torch.where(wins & (old_tail < 0), target, num_lanes), h)
    lane_tail = put(lane_tail, win_lane, h)
    lane_count.scatter_add_(1, win_lane, wins.to(lane_count.dtype))
    return with_fields(new,
        veh_lane=veh_lane, veh_pos=veh_pos, veh_leg=veh_leg, veh_move=veh_move,
        veh_next_move=veh_next_move, veh_leader=veh_leader, veh_follower=veh_follower,
        lane_head=lane_head, lane_tail=lane_tail, lane_count=lane_count,
    )


def finish_trips(new: SimState, heads: Heads, crossing: Crossing, put_first: Put) -> SimState:
    """Trips that reach the end of their route leave the network; their slots go back on the
    free stack. Runs after `change_lanes` (which has written ``veh_lane``)."""
    scratch_slot = new.veh_lane.shape[1] - 1
    scratch_trip = new.trip_enter.shape[1] - 1
    h, leaving = heads.slot, crossing.leaving
    done_slot = torch.where(leaving, h, scratch_slot)
    done_trip = torch.where(leaving, heads.trip, scratch_trip)
    trip_finish = put_first(new.trip_finish, done_trip, new.t.unsqueeze(1) + 1)
    trip_stops = put_first(new.trip_stops, done_trip, take(new.veh_stops, h))
    trip_delay = put_first(new.trip_delay, done_trip, take(new.veh_delay, h))
    veh_lane = put(new.veh_lane, done_slot, -1)
    freed = leaving.to(torch.int64)
    free_at = new.free_top.unsqueeze(1) + torch.cumsum(freed, 1) - 1
    free_stack = put_first(new.free_stack, torch.where(leaving, free_at, scratch_slot), h)
    free_top = new.free_top + freed.sum(1)
    return with_fields(new,
        trip_finish=trip_finish, trip_stops=trip_stops, trip_delay=trip_delay, veh_lane=veh_lane,
        free_stack=free_stack, free_top=free_top,
    )
