"""Braking harder than comfortable: which vehicles do it in a step, and which documented cause
explains it (docs/engine.md, "Braking"). A diagnostic for the invariant test and
`benchmarks/hard_braking.py`; the step does not use it.

A vehicle decelerates beyond its comfortable deceleration ``b`` (its flow's ``decel``) only
when one of these holds, checked in this order (`CAUSES`):

- ``crossing_loss``: it is a head past its stop line that lost the one-vehicle-per-lane
  crossing; it waits at the line at rest (`crossings`);
- ``stop_line``: it is a head that followed a vehicle (or nothing) in the step before and now
  follows its stop line: the light turned yellow, or red while it was still short of the line,
  the target lane's last vehicle stopped near its start (spillback), or it yields;
- ``merged_ahead``: it is a head that follows another vehicle than in the step before: one that
  crossed into its target lane ahead of it from another approach, or the last vehicle of
  another target lane;
- ``new_leader``: it follows another vehicle than in the step before for any other reason (its
  leader left the lane, it crossed into a new lane behind its last vehicle);
- ``cascade``: what it follows is the same vehicle, which braked harder than this vehicle's
  ``b`` in the step before: its speed dropped by more, or the point where it would stop braking
  at this vehicle's ``b`` (position + speed^2 / 2b) came nearer, as when it is held at its own
  leader's rear and stops short of the distance its speed implies. The safe speed assumes it does
  neither;
- ``headway``: none of the above, and the deceleration is within the time-headway rule's
  bound ``(v - vL + d) / (h + DT/2)`` (``v`` its speed, ``vL`` the speed of what it follows, 0
  for a stop line, ``d`` how far that vehicle fell short in the step before of holding its speed,
  ``aL/2`` for a vehicle that braked by ``aL``, ``h`` its headway).

Anything else is ``unexplained``: a new kind of hard stop, which the invariant test refuses.
Lane closures are left out (a closure appearing ahead stops the first vehicle at it within
the step); classify demands without incidents.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from envs.engine.crossings import cross_stop_lines
from envs.engine.following import follow
from envs.engine.heads import look_ahead
from envs.engine.ops import DT, take, take_sample
from envs.engine.signals import switch_signals
from envs.engine.simulator import Simulator, grow_slots
from envs.engine.state import SimState

CAUSES = ("crossing_loss", "stop_line", "merged_ahead", "new_leader", "cascade", "headway", "unexplained")
TOLERANCE = 1e-3  # m/s per step: float32 rounding of speeds
STOP_LINE = -2  # what a held head follows
NOTHING = -1  # an empty target lane, the end of the route


class Braking(NamedTuple):
    """One step's braking, per slot ``[B, S+1]`` (the slot pool after the step)."""

    decel: torch.Tensor  # speed lost in the step (m/s per step; negative: it sped up); 0 for free slots
    hard: torch.Tensor  # bool, decel beyond the vehicle's comfortable deceleration
    cause: torch.Tensor  # int64 index into CAUSES where hard, -1 elsewhere
    followed: torch.Tensor  # int64 the slot it followed (STOP_LINE, NOTHING)
    key: torch.Tensor  # int64 identity of what it followed: slot and trip, or STOP_LINE / NOTHING
    trip: torch.Tensor  # the trip in the slot during the step (-1: free slot)
    short: torch.Tensor  # how far short of holding its speed it moved in the step (0 if it changed lanes)
    lane: torch.Tensor  # its lane, position and speed at the start of the step
    pos: torch.Tensor
    speed: torch.Tensor


def _followed(sim: Simulator, before: SimState, command: torch.Tensor):
    """What each vehicle follows during the step from `before`, and the heads that lose a crossing."""
    network, s = sim.network, before
    num_lanes = network.num_lanes
    signals = switch_signals(network, sim.params, s, command)
    heads = look_ahead(network, sim.params, s, signals, None)
    sigma = None if sim.demand.sigma is None else take_sample(sim.demand.sigma, sim.demand.sample_of_copy, s.veh_trip)
    crossing = cross_stop_lines(network, heads, follow(network, s, heads, None, sigma))
    lost = heads.present & ~heads.held & ~heads.last_road & ~crossing.wins
    lost = lost & (crossing.front > network.lane_length.unsqueeze(0))
    target_tail = take(s.lane_tail, torch.where(heads.present, heads.target, num_lanes))
    head_follows = torch.where(heads.held, STOP_LINE, torch.where(heads.last_road | (target_tail < 0), NOTHING,
                                                                    target_tail))
    scratch = s.veh_lane.shape[1] - 1
    head_slot = torch.where(heads.present, heads.slot, scratch)
    followed = torch.where(s.veh_leader >= 0, s.veh_leader, NOTHING).to(torch.int64)
    followed = followed.scatter(1, head_slot, head_follows.to(torch.int64))
    lost_slot = torch.zeros_like(s.veh_lane, dtype=torch.bool).scatter(1, head_slot, lost)
    followed = torch.where(s.veh_lane >= 0, followed, NOTHING)
    return followed, lost_slot & (s.veh_lane >= 0)


def _pad(x: torch.Tensor, slots: int, fill) -> torch.Tensor:
    """`x` ``[B, S+1]`` as ``[B, slots+1]`` (a grown pool), the new slots `fill`."""
    if x.shape[1] == slots + 1:
        return x
    out = torch.full((x.shape[0], slots + 1), fill, dtype=x.dtype, device=x.device)
    out[:, :x.shape[1] - 1] = x[:, :-1]
    return out


def step_braking(sim: Simulator, command: torch.Tensor | None, previous: Braking | None) -> Braking:
    """Step `sim` once with `command` and classify every deceleration beyond comfortable.
    `previous`: this function's answer for the step before (None at the first step)."""
    command = sim.keep_command() if command is None else command.to(torch.int64)
    if sim._steps_to_slot_check == 0:  # grow the pool first, as the step would, so `before` has its slots
        sim.ensure_free_slots()
    before = sim.snapshot()
    followed, lost = _followed(sim, before, command)
    after = sim.step(command)
    slots = after.num_slots
    if before.num_slots != slots:  # cannot happen after the growth above; kept exact anyway
        before, followed, lost = grow_slots(before, slots), _pad(followed, slots, NOTHING), _pad(lost, slots, False)
    active = (before.veh_lane >= 0) & (after.veh_lane >= 0) & (before.veh_trip == after.veh_trip)
    trip = torch.where(before.veh_lane >= 0, before.veh_trip.to(torch.int64), -1)
    decel = torch.where(active, before.veh_speed - after.veh_speed, 0.0)
    stayed = active & (before.veh_lane == after.veh_lane)
    short = torch.where(stayed, (before.veh_speed * DT - (after.veh_pos - before.veh_pos)).clamp(min=0.0), 0.0)
    comfortable = before.veh_decel * DT
    hard = active & (decel > comfortable + TOLERANCE)
    f_c = followed.clamp(min=0)
    key = torch.where(followed >= 0, f_c * 2**32 + take(trip, f_c), followed)
    if previous is None:
        prev_key = torch.full_like(key, NOTHING)
        prev_trip = torch.full_like(trip, -1)
        prev_decel, prev_short = torch.zeros_like(decel), torch.zeros_like(decel)
        prev_lane, prev_pos, prev_speed = torch.full_like(trip, -1), torch.zeros_like(decel), torch.zeros_like(decel)
    else:
        prev_key, prev_trip = _pad(previous.key, slots, NOTHING), _pad(previous.trip, slots, -1)
        prev_decel, prev_short = _pad(previous.decel, slots, 0.0), _pad(previous.short, slots, 0.0)
        prev_lane, prev_pos = _pad(previous.lane, slots, -1), _pad(previous.pos, slots, 0.0)
        prev_speed = _pad(previous.speed, slots, 0.0)
    known = prev_trip == trip  # the same vehicle was in this slot in the step before
    changed = known & (key != prev_key)
    is_head = before.veh_leader < 0
    followed_decel = torch.where(followed >= 0, take(prev_decel, f_c), 0.0)
    followed_speed = torch.where(followed >= 0, take(before.veh_speed, f_c), 0.0)
    followed_short = torch.where(followed >= 0, take(prev_short, f_c), 0.0)
    # where the followed vehicle would stop at this vehicle's comfortable deceleration, then and now
    b2 = 2.0 * before.veh_decel
    stop_then = take(prev_pos, f_c) + take(prev_speed, f_c) ** 2 / b2
    stop_now = take(before.veh_pos, f_c) + take(before.veh_speed, f_c) ** 2 / b2
    same_lane = (followed >= 0) & (take(prev_lane, f_c) == take(before.veh_lane.to(torch.int64), f_c))
    nearer = same_lane & (stop_now < stop_then - TOLERANCE)
    cascade = known & ~changed & ((followed_decel > comfortable + TOLERANCE) | nearer)
    bound = (before.veh_speed - followed_speed + followed_short) / (before.veh_headway + DT / 2.0)
    within_headway = decel <= torch.maximum(comfortable, bound * DT) + TOLERANCE
    order = [
        lost,
        changed & is_head & (followed == STOP_LINE),
        changed & is_head & (prev_key != STOP_LINE) & (followed >= 0),
        changed,
        cascade,
        known & within_headway,
    ]
    cause = torch.full_like(key, len(CAUSES) - 1)
    for index in reversed(range(len(order))):
        cause = torch.where(order[index], index, cause)
    return Braking(decel, hard, torch.where(hard, cause, -1), followed, key, trip, short,
                   before.veh_lane.to(torch.int64), before.veh_pos, before.veh_speed)
