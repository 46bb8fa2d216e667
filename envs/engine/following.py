"""Car following for every vehicle slot (step phase 3; the rules are in `envs.engine.step`'s
docstring). A lane's head follows what `look_ahead` found for it."""

from __future__ import annotations

from typing import NamedTuple

import torch

from envs.engine.heads import Heads
from envs.engine.incident_rules import Incidents, vehicle_incidents
from envs.engine.ops import DT, take, unit_hash
from envs.engine.state import SimState
from envs.scenario.network import Network


class Motion(NamedTuple):
    """Every slot after car following ``[B, S+1]`` (free slots keep their values)."""

    active: torch.Tensor  # bool, the slot holds a vehicle on a lane
    pos: torch.Tensor  # new front position
    speed: torch.Tensor  # new speed
    free_limit: torch.Tensor  # the speed limit without incidents (delay is measured against it)


def follow(network: Network, state: SimState, heads: Heads, incidents: Incidents | None,
           sigma: torch.Tensor | None = None) -> Motion:
    """Move every vehicle one step behind its leader (or its lane head's obstacle).

    `sigma` ``[B, S+1]``: each slot's driver imperfection (None: nobody dawdles)."""
    s = state
    num_lanes = network.num_lanes
    scratch_slot = s.veh_lane.shape[1] - 1
    active = s.veh_lane >= 0
    lane_c = torch.where(active, s.veh_lane, num_lanes)
    leader = s.veh_leader
    has_leader = leader >= 0
    leader_c = torch.where(has_leader, leader, scratch_slot)
    lead_rear = torch.where(
        has_leader,
        take(s.veh_pos, leader_c) - take(s.veh_length, leader_c),
        take(heads.lead_rear, lane_c),
    )
    lead_speed = torch.where(has_leader, take(s.veh_speed, leader_c), take(heads.lead_speed, lane_c))
    # a blockage at a place ahead of the vehicle, nearer than its leader, is what it follows
    lead_rear, lead_speed, place_factor = vehicle_incidents(incidents, lane_c, s.veh_pos, lead_rear, lead_speed)
    lane_limit = torch.cat([network.lane_max_speed, network.lane_max_speed[:1]])[lane_c]
    free_limit = torch.minimum(s.veh_max_speed, lane_limit)  # delay is measured against this
    speed_limit = free_limit
    if incidents is not None:  # a capacity drop scales the lane's limit; a closure stops traffic at its end
        drop = torch.where(incidents.factor > 0.0, incidents.factor.clamp(max=1.0), 1.0)
        speed_limit = torch.minimum(s.veh_max_speed, lane_limit * take(drop, lane_c))
    if place_factor is not None:  # a capacity drop at a place slows the vehicles past it
        speed_limit = torch.minimum(speed_limit, lane_limit * place_factor)
    pos, speed, decel = s.veh_pos, s.veh_speed, s.veh_decel
    gap = lead_rear - pos - s.veh_min_gap
    # Safe speed v': after moving (v + v')/2 * DT we must still stop behind a leader that
    # brakes at our comfortable deceleration: v'^2 + b DT v' <= 2 b (gap + vL^2/2b - v DT/2).
    budget = (gap + lead_speed * lead_speed / (2.0 * decel) - speed * DT / 2.0).clamp(min=0.0)
    safe = 0.5 * (torch.sqrt(decel * decel * DT * DT + 8.0 * decel * budget) - decel * DT)
    # Time headway: after the step, the distance from our front to the leader's rear (assumed
    # to hold its speed) should cover headway x new speed:
    # v' <= (distance + vL DT - v DT/2) / (headway + DT/2). This sets the discharge rate of a
    # queue (the flow file's headwayTime; the distance is front to rear, as CityFlow's gap).
    distance = lead_rear - pos
    keep_headway = (distance + lead_speed * DT - speed * DT / 2.0) / (s.veh_headway + DT / 2.0)
    safe = torch.minimum(safe, keep_headway.clamp(min=0.0))
    new_speed = torch.minimum(torch.minimum(speed + s.veh_accel * DT, speed_limit), safe)
    new_speed = new_speed.clamp(min=0.0)
    if sigma is not None:
        new_speed = dawdle(new_speed, speed, s.veh_accel, decel, sigma, unit_hash(s.veh_trip, s.t.unsqueeze(1)))
    new_pos = pos + 0.5 * (speed + new_speed) * DT
    limit = lead_rear - s.veh_min_gap  # never past the leader's current rear (or stop line)
    over = new_pos > limit
    new_pos = torch.where(over, torch.maximum(limit, pos), new_pos)
    new_speed = torch.where(
        over, torch.minimum(new_speed, (2.0 * (new_pos - pos) / DT - speed).clamp(min=0.0)), new_speed
    )
    new_pos = torch.where(active, new_pos, pos)
    new_speed = torch.where(active, new_speed, speed)
    return Motion(active, new_pos, new_speed, free_limit)


def dawdle(wanted: torch.Tensor, speed: torch.Tensor, accel: torch.Tensor, decel: torch.Tensor,
           sigma: torch.Tensor, draw: torch.Tensor) -> torch.Tensor:
    """Krauss' driver imperfection, as SUMO's default car-following model applies it.

    The speed the rules allow (`wanted`) is cut by ``sigma x draw`` of one step's acceleration,
    or of the speed itself below that (so a standing vehicle still starts), never below 0 and
    never below what braking comfortably from the current `speed` leaves: a driver dawdles, he
    does not brake hard. The cut only lowers the speed, so every safety rule still holds.
    `draw` is uniform in [0, 1) per vehicle and step."""
    step_accel = accel * DT
    cut = sigma * draw * torch.where(wanted < step_accel, wanted, step_accel)
    floor = torch.minimum(wanted, (speed - decel * DT).clamp(min=0.0))
    return torch.maximum(floor, (wanted - cut).clamp(min=0.0))
