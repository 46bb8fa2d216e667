"""Entries: the first waiting trip of each origin road enters the network (step phase 5; the
rules are in `envs.engine.step`'s docstring)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from envs.engine.crossings import Put
from envs.engine.incident_rules import Incidents, with_blockages
from envs.engine.ops import FAR, materialise, prefer_open, put, take, take_sample
from envs.engine.state import SimState, SLOT_VEHICLE, with_fields
from envs.scenario.demand import VEHICLE_COLUMN, Demand
from envs.scenario.network import Network


class Entries(NamedTuple):
    """Per origin road ``[B, R]``: the trip at the front of its queue and where it goes."""

    trip: torch.Tensor  # the first waiting trip (the scratch trip when none)
    first_move: torch.Tensor  # its first movement
    vehicle: torch.Tensor  # [B, R, F] its vehicle parameters (VEHICLE_FIELDS)
    enters: torch.Tensor  # bool, it enters this step
    slot: torch.Tensor  # the free slot it takes (the scratch slot when it does not enter)
    lane: torch.Tensor  # the lane it enters (L when it does not)
    behind: torch.Tensor  # the slot of that lane's last vehicle, -1 = empty lane
    free_top: torch.Tensor  # [B] free slots left after the entries
    pool_blocked: torch.Tensor  # [B] the state's count plus entries that found no free slot


def choose_entries(
    network: Network, demand: Demand, new: SimState, incidents: Incidents | None
) -> Entries:
    """Which origin queues let a trip in this step, into which lane and slot."""
    batch = new.t.shape[0]
    num_lanes = network.num_lanes
    scratch_slot = new.veh_lane.shape[1] - 1
    scratch_trip = new.trip_enter.shape[1] - 1
    legs = demand.route_legs
    sample = demand.sample_of_copy  # [B] each copy's row of the shared trip tables
    queue_pos = demand.per_copy(demand.origin_start) + new.entry_ptr  # [B, R]
    queued = queue_pos < demand.per_copy(demand.origin_end)
    trip = take_sample(demand.entry_order, sample, torch.where(queued, queue_pos, scratch_trip))
    trip = torch.where(queued, trip, scratch_trip)
    due = queued & (take_sample(demand.depart, sample, trip) <= new.t.unsqueeze(1))
    first_move = take_sample(demand.route_movement, sample, trip * legs)
    trip, due, first_move = materialise(trip, due, first_move)
    origin_lanes = network.road_lanes.unsqueeze(0).expand(batch, -1, -1)  # [B, R, E]
    serves_first = torch.where(
        (first_move >= 0).unsqueeze(-1), network.movement_from_lane[first_move.clamp(min=0)], True
    )
    lane_ok = serves_first & (origin_lanes >= 0)
    origin_c = torch.where(origin_lanes >= 0, origin_lanes, num_lanes)
    if incidents is not None:
        lane_ok = prefer_open(lane_ok, take(incidents.avoid, origin_c))
    last = take(new.lane_tail, origin_c)
    last_c = torch.where(last >= 0, last, scratch_slot)
    last_rear = torch.where(last >= 0, take(new.veh_pos, last_c) - take(new.veh_length, last_c), FAR)
    last_rear, _ = with_blockages(incidents, last_rear, last_rear, origin_c)  # a blockage leaves less room
    entry_score = torch.where(lane_ok, last_rear, -FAR)
    pick = entry_score.argmax(dim=-1, keepdim=True)
    entry_lane = torch.gather(origin_c, 2, pick).squeeze(-1)  # [B, R]
    entry_room = torch.gather(entry_score, 2, pick).squeeze(-1)
    trip_vehicle = take_sample(demand.vehicle, sample, trip)  # [B, R, F]
    fits = due & (entry_room - trip_vehicle[..., VEHICLE_COLUMN["min_gap"]] >= 0)
    rank = torch.cumsum(fits.to(torch.int64), 1) - 1
    has_slot = rank < new.free_top.unsqueeze(1)
    (enters,) = materialise(fits & has_slot)
    pool_blocked = new.pool_blocked + (fits & ~has_slot).sum(1)
    slot = take(new.free_stack, torch.where(enters, new.free_top.unsqueeze(1) - 1 - rank, scratch_slot))
    slot = torch.where(enters, slot, scratch_slot)
    free_top = new.free_top - enters.sum(1)
    enter_lane = torch.where(enters, entry_lane, num_lanes)
    prev_last = take(new.lane_tail, enter_lane)
    return Entries(trip, first_move, trip_vehicle, enters, slot, enter_lane, prev_last, free_top, pool_blocked)


def enter(network: Network, demand: Demand, new: SimState, entries: Entries, put_first: Put) -> SimState:
    """Place the entering trips' vehicles at the start of their lanes, at rest.

    Runs after the crossings (which have written every per-vehicle field except the trip and
    the vehicle parameters, and the lane arrays)."""
    num_lanes = network.num_lanes
    scratch_slot = new.veh_lane.shape[1] - 1
    scratch_trip = new.trip_enter.shape[1] - 1
    legs = demand.route_legs
    slot, lane, behind, enters, trip = entries.slot, entries.lane, entries.behind, entries.enters, entries.trip
    veh_lane = put(new.veh_lane, slot, lane)
    veh_pos = put(new.veh_pos, slot, 0.0)
    veh_speed = put(new.veh_speed, slot, 0.0)
    veh_trip = put_first(new.veh_trip, slot, trip)
    veh_leg = put(new.veh_leg, slot, 0)
    veh_move = put(new.veh_move, slot, entries.first_move)
    next_move = take_sample(demand.route_movement, demand.sample_of_copy, trip * legs + 1)
    veh_next_move = put(new.veh_next_move, slot, next_move)
    veh_leader = put(new.veh_leader, slot, behind)
    veh_follower = put(new.veh_follower, slot, -1)
    veh_follower = put(veh_follower, torch.where(enters & (behind >= 0), behind, scratch_slot), slot)
    veh_halted = put(new.veh_halted, slot, True)
    veh_stops = put(new.veh_stops, slot, 0)
    veh_delay = put(new.veh_delay, slot, 0.0)
    parameters = {
        field: put_first(getattr(new, field), slot, entries.vehicle[..., VEHICLE_COLUMN[name]])
        for field, name in SLOT_VEHICLE.items()
    }
    lane_head = put(new.lane_head, torch.where(enters & (behind < 0), lane, num_lanes), slot)
    lane_tail = put(new.lane_tail, lane, slot)
    lane_count = new.lane_count
    lane_count.scatter_add_(1, lane, enters.to(lane_count.dtype))
    trip_enter = put_first(new.trip_enter, torch.where(enters, trip, scratch_trip), new.t.unsqueeze(1))
    return with_fields(new,
        veh_lane=veh_lane, veh_pos=veh_pos, veh_speed=veh_speed, veh_trip=veh_trip, veh_leg=veh_leg,
        veh_move=veh_move, veh_next_move=veh_next_move, veh_leader=veh_leader,
        veh_follower=veh_follower, veh_halted=veh_halted, veh_stops=veh_stops, veh_delay=veh_delay,
        **parameters, lane_head=lane_head, lane_tail=lane_tail, lane_count=lane_count,
        free_top=entries.free_top, entry_ptr=new.entry_ptr + enters.to(torch.int64),
        trip_enter=trip_enter, pool_blocked=entries.pool_blocked,
    )
