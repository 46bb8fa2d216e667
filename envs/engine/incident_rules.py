"""The lanes' incidents at a step (the demand's ``incident_*`` tables; the rules are in
`envs.engine.step`'s docstring): what each step phase needs to know of them.

Two kinds of place:

- *at the stop line* (``incident_pos`` None, or a negative entry): the whole lane. A closure
  lets nothing leave the lane (its head sees a stop line that never opens); a capacity drop
  scales the whole lane's speed limit.
- *at a place* (``incident_pos[b, k]`` >= 0, metres from the lane's start): a closure is a
  blockage at that point, which the vehicles whose front is at or before it cannot pass (the
  first stops at the blockage minus its minimum gap, at any colour of the light) while the
  vehicles already past it drive on normally; to vehicles entering the lane it is a standing
  vehicle whose rear is at the blockage (so lane choice, entries and spillback see the room
  left before it). A capacity drop scales the speed limit of the vehicles whose front is at or
  past the place, i.e. over the rest of the lane up to the stop line.

Lane choice (heads picking a target lane, entries picking a lane) avoids a lane with any
active closure, at its stop line or at a place, wherever another lane serves the same turns.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from envs.engine.ops import FAR
from envs.scenario.demand import Demand


class PlacedIncidents(NamedTuple):
    """The active incidents at a place, per copy and incident ``[B, K]`` (inactive ones and
    those at the stop line have lane -1, which no vehicle's lane matches)."""

    lane: torch.Tensor  # int64 lane of an active closure at a place, -1 otherwise
    pos: torch.Tensor  # float32 metres from the lane's start
    closure: torch.Tensor  # bool, an active closure at a place
    drop: torch.Tensor  # float32 speed factor of an active capacity drop at a place, 1 otherwise
    block_at: torch.Tensor  # [B, L+1] nearest-to-start active blockage per lane (FAR: none)


class Incidents(NamedTuple):
    """Each lane's incidents now ``[B, L+1]``; column L (padding) never has one."""

    factor: torch.Tensor  # whole-lane capacity: 1 = normal, 0 = closed, in between: limit scaled
    closed: torch.Tensor  # bool, closed at its stop line (factor <= 0): nothing leaves the lane
    avoid: torch.Tensor  # bool, any active closure on the lane: lane choice avoids it
    placed: PlacedIncidents | None  # None: every incident of the demand is at its stop line


def _active(demand: Demand, t: torch.Tensor) -> torch.Tensor:
    now = t.unsqueeze(1)
    return (demand.incident_lane >= 0) & (demand.incident_start <= now) & (now < demand.incident_end)


def incident_factor(demand: Demand, t: torch.Tensor, num_lanes: int) -> torch.Tensor:
    """Each lane's whole-lane capacity factor at step `t` ``[B, L+1]``: 1 without an incident
    at its stop line, the smallest factor of those active on it otherwise (0 = closed).
    Incidents at a place are not whole-lane (see `PlacedIncidents`). Column L is padding (1)."""
    batch = t.shape[0]
    factor = torch.ones(batch, num_lanes + 1, device=t.device)
    if demand.incident_lane is None:
        return factor
    active = _active(demand, t)
    if demand.incident_pos is not None:
        active = active & (demand.incident_pos < 0)
    lane = torch.where(active, demand.incident_lane, num_lanes)
    value = torch.where(active, demand.incident_factor, 1.0)
    return factor.scatter_reduce(1, lane, value, reduce="amin")


def lane_incidents(demand: Demand, t: torch.Tensor, num_lanes: int) -> Incidents | None:
    """The lanes' incidents at step `t`; None for a demand without incident tables (the step
    then skips every incident rule and runs exactly as without them)."""
    if demand.incident_lane is None:
        return None
    factor = incident_factor(demand, t, num_lanes)
    closed = factor <= 0.0
    if demand.incident_pos is None:
        return Incidents(factor, closed, closed, None)
    at_place = _active(demand, t) & (demand.incident_pos >= 0)
    closure = at_place & (demand.incident_factor <= 0.0)
    drop = torch.where(at_place & ~closure, demand.incident_factor, 1.0)
    lane = torch.where(at_place, demand.incident_lane, -1)
    block_at = torch.full_like(factor, FAR).scatter_reduce(
        1, torch.where(closure, demand.incident_lane, num_lanes), torch.where(closure, demand.incident_pos, FAR),
        reduce="amin")
    placed = PlacedIncidents(lane, demand.incident_pos, closure, drop, block_at)
    return Incidents(factor, closed, closed | (block_at < FAR), placed)


def with_blockages(incidents: Incidents | None, rear: torch.Tensor, speed: torch.Tensor,
                   lane: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The room at the start of lanes `lane` (any shape ``[B, ...]``, L = padding; None = every
    lane, ``[B, L+1]``), given the rear `rear` and speed `speed` of their last vehicles: a
    blockage nearer the start than the last vehicle's rear is a standing vehicle whose rear is
    at the blockage."""
    if incidents is None or incidents.placed is None:
        return rear, speed
    block = incidents.placed.block_at
    if lane is not None:
        batch = lane.shape[0]
        block = torch.gather(block, 1, lane.reshape(batch, -1)).reshape(lane.shape)
    nearer = block < rear
    return torch.where(nearer, block, rear), torch.where(nearer, 0.0, speed)


def vehicle_incidents(incidents: Incidents | None, lane: torch.Tensor, front: torch.Tensor,
                      lead_rear: torch.Tensor, lead_speed: torch.Tensor):
    """Per vehicle ``[B, S+1]`` (lane `lane`, front at `front`): what it follows once the
    blockages at a place are counted (the nearest blockage at or ahead of its front, standing,
    when it is nearer than its leader) and the speed factor of the capacity drops at a place
    behind its front. Returns ``(lead_rear, lead_speed, factor)``; factor is None without
    incidents at a place."""
    if incidents is None or incidents.placed is None:
        return lead_rear, lead_speed, None
    p = incidents.placed
    on = lane.unsqueeze(-1) == p.lane.unsqueeze(1)  # [B, S+1, K]
    place = p.pos.unsqueeze(1)
    ahead = on & p.closure.unsqueeze(1) & (front.unsqueeze(-1) <= place)
    block = torch.where(ahead, place, FAR).amin(-1)
    nearer = block < lead_rear
    past = on & (front.unsqueeze(-1) >= place)
    factor = torch.where(past, p.drop.unsqueeze(1), 1.0).amin(-1)
    return torch.where(nearer, block, lead_rear), torch.where(nearer, 0.0, lead_speed), factor
