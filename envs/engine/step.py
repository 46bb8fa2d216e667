"""The pure, batched simulation step: ``state' = step(network, demand, params, state, command)``.

One call advances all B copies by one second. There is no Python loop over vehicles, lanes,
intersections or copies, no ``.item()`` and no data-dependent control flow, so the same code
runs eagerly on the CPU or a GPU and `torch.compile` can take it whole.

Order of events inside a step at time t:

1. Signals: a command to switch phase is accepted once the current green has lasted
   ``min_green_s``; the switch starts ``yellow_s`` of yellow on the movements that lose green,
   then ``all_red_s`` of red, then the new phase's green. Movements green in both phases stay
   green.
2. Heads: the vehicle nearest each stop line picks its target lane on the next road (a lane
   its next turn reaches and that serves the turn after, with the most room; lowest index on a
   tie) and sees either the stop line (red; yellow when it can stop comfortably; or spillback:
   the target lane's last vehicle stands within a minimum gap of its start) or the target
   lane's last vehicle through the box.
3. Car following for every vehicle: the fastest speed that lets it stop behind its leader if the
   leader brakes (ballistic update) and keeps its time headway (the flow's ``headwayTime``),
   capped by acceleration and the speed limit; and never past the leader's current rear minus
   the minimum gap, nor past a closed stop line.
4. Crossings: heads past the stop line move to their target lane (at most one vehicle enters a
   lane per step: the one furthest past its stop line, then the lowest lane id; the others wait
   at the stop line) or, on their last road, leave the network.
5. Entries: the first waiting trip of each origin road enters the lane of that road that serves
   its first turn and has the most room, if the vehicle fits behind the lane's last vehicle and
   a vehicle slot is free. Vehicles that cannot enter wait in the origin's queue.

Incidents (the demand's ``incident_*`` tables, per copy): a *closed* lane lets nothing leave it
(its head sees a stop line that never opens, so the vehicles behind it queue), and lane
choice — a head picking its target lane, an entry picking its lane — avoids closed lanes
whenever another lane serves the same turns; a *capacity drop* scales the lane's speed limit
by its factor (delay is still measured against the normal limit).
"""

from __future__ import annotations

import torch

from envs.engine.state import EngineParams, SimState
from envs.scenario.demand import Demand
from envs.scenario.network import Network

FAR = 1.0e7  # metres: "no obstacle ahead"
MOVING_TAIL_SPEED = 2.0  # m/s: a lane whose last vehicle moves this fast is not spilling back
DT = 1.0  # seconds per step


# inductor's op that stores a tensor in a buffer of its own; set by `use_inductor_buffers`
_REALIZE = None


def use_inductor_buffers() -> None:
    """Let a compiled step keep its lane-level intermediates in buffers (see `_materialise`).

    Imports ``torch._inductor`` (about a second), so only a simulator that compiles calls it.
    The op lives in inductor's test operators (torch is pinned); should a torch release drop it,
    the step compiles as before, only slower."""
    global _REALIZE
    try:
        import torch._inductor.test_operators  # noqa: F401  (registers _inductor_test.realize)

        _REALIZE = torch.ops._inductor_test.realize
    except (ImportError, AttributeError):
        _REALIZE = None


def _materialise(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Under torch.compile, compute each tensor once into its own buffer.

    Inductor otherwise inlines a pointwise result into every loop that reads it, so a head's
    chain of gathers (lane -> head slot -> its trip, leg and movements) is recomputed in each of
    the twenty-odd lane loops of the step. Stored once, each loop reads one value instead:
    hangzhou_4x4, B=64, distinct demand samples per copy, 2 threads: 1.01 -> 0.83 ms per step
    (grid_16x8: 8.1 -> 6.2 ms), identical results. Eager code computes each value once anyway.
    CPU only: on a GPU, recomputing a gather may well be cheaper than a round trip through
    memory, and it has not been measured there."""
    if _REALIZE is None or not torch.compiler.is_compiling() or tensors[0].device.type != "cpu":
        return tensors
    return tuple(_REALIZE(x) for x in tensors)


def _take(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Batched gather along dim 1: ``out[b, ...] = source[b, index[b, ...]]``."""
    batch = source.shape[0]
    return torch.gather(source, 1, index.reshape(batch, -1)).reshape(index.shape)


def _put(target: torch.Tensor, index: torch.Tensor, value) -> torch.Tensor:
    """Batched scatter along dim 1 into `target` itself (indices unique or pointing at scratch).

    Used on tensors the step created, and on the input state's fields only in place mode.
    Under torch.compile it is written as ``index_put_``: both are functionalised, but inductor
    turns only ``index_put`` back into an in-place write; a ``scatter`` becomes a copy of the
    whole array plus the scatter, i.e. one full pass per write. Eager, ``scatter_`` is the
    faster of the two (grid_4x4, B=16: 2.55 vs 3.24 ms per step). Same values either way."""
    if not isinstance(value, torch.Tensor):
        value = torch.full_like(index, value, dtype=target.dtype)
    value = value.to(target.dtype).expand_as(index)
    if not torch.compiler.is_compiling():
        return target.scatter_(1, index, value)
    rows = torch.arange(index.shape[0], device=index.device).unsqueeze(1).expand_as(index)
    return target.index_put_((rows, index), value)


def _put_copy(target: torch.Tensor, index: torch.Tensor, value) -> torch.Tensor:
    """Functional batched scatter: a new tensor, `target` untouched."""
    return _put(target.clone(), index, value)


def incident_factor(demand: Demand, t: torch.Tensor, num_lanes: int) -> torch.Tensor:
    """Each lane's capacity factor at step `t` ``[B, L+1]``: 1 without an incident, the smallest
    factor of the incidents active on it otherwise (0 = closed). Column L is padding (1)."""
    batch = t.shape[0]
    factor = torch.ones(batch, num_lanes + 1, device=t.device)
    if demand.incident_lane is None:
        return factor
    now = t.unsqueeze(1)
    active = (demand.incident_lane >= 0) & (demand.incident_start <= now) & (now < demand.incident_end)
    lane = torch.where(active, demand.incident_lane, num_lanes)
    value = torch.where(active, demand.incident_factor, 1.0)
    return factor.scatter_reduce(1, lane, value, reduce="amin")


def _prefer_open(usable: torch.Tensor, closed: torch.Tensor) -> torch.Tensor:
    """Among usable lanes (last dim), keep the open ones when there is any; else all."""
    open_ok = usable & ~closed
    return torch.where(open_ok.any(-1, keepdim=True), open_ok, usable)


def signal_state(
    network: Network, params: EngineParams, phase, prev_phase, timer
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-movement ``green`` and ``yellow`` masks ``[B, M]`` for the given phase state."""
    batch = phase.shape[0]
    inter = torch.arange(network.num_intersections, device=phase.device)
    current = network.phase_green[inter, phase]  # [B, I, K]
    previous = network.phase_green[inter, prev_phase]
    intergreen = network.phase_removes_green[inter, prev_phase, phase] * (
        params.yellow_s + params.all_red_s
    )
    green = current & (previous | (timer >= intergreen).unsqueeze(-1))
    yellow = previous & ~current & (timer < params.yellow_s).unsqueeze(-1)
    return green.reshape(batch, -1), yellow.reshape(batch, -1)


def green_elapsed(network: Network, params: EngineParams, state: SimState) -> torch.Tensor:
    """Seconds the current phase has shown its green ``[B, I]`` (negative during intergreen)."""
    inter = torch.arange(network.num_intersections, device=state.phase.device)
    intergreen = network.phase_removes_green[inter, state.prev_phase, state.phase] * (
        params.yellow_s + params.all_red_s
    )
    return state.phase_timer - intergreen


def step(
    network: Network,
    demand: Demand,
    params: EngineParams,
    state: SimState,
    command: torch.Tensor,
    inplace: bool = False,
) -> SimState:
    """Advance every copy one second. ``command`` is ``[B, I]`` phase indices, -1 = keep.

    Pure by default: `state` is left untouched and a new state is returned. With
    ``inplace=True`` the per-vehicle, per-trip and free-slot arrays of `state` are updated in
    place (only the entries that change are written, instead of copying whole arrays) and the
    returned state shares them; `Simulator` steps this way and snapshots by cloning.
    """
    s = state
    # first write into one of the input state's arrays: in place, or on a copy when pure
    put_input = _put if inplace else _put_copy
    batch = s.t.shape[0]
    num_lanes = network.num_lanes
    scratch_slot = s.veh_lane.shape[1] - 1
    scratch_trip = s.trip_enter.shape[1] - 1
    device = s.t.device
    t_col = s.t.unsqueeze(1)

    # ---- 1. signals -------------------------------------------------------------------------
    elapsed = green_elapsed(network, params, s)
    switch = (command >= 0) & (command != s.phase) & (elapsed >= params.min_green_s)
    prev_phase = torch.where(switch, s.phase, s.prev_phase)
    phase = torch.where(switch, command, s.phase)
    timer = torch.where(switch, torch.zeros_like(s.phase_timer), s.phase_timer)
    green, yellow = signal_state(network, params, phase, prev_phase, timer)
    no_move = torch.zeros(batch, 1, dtype=torch.bool, device=device)
    green = torch.cat([green, no_move], 1)  # column M: "no movement"
    yellow = torch.cat([yellow, no_move], 1)
    no_movement = network.num_movements

    # ---- incidents: per-lane capacity factor now, 1 = normal, 0 = closed  [B, L+1] -----------
    # (a demand without incident tables skips all of it: the step is then exactly as before)
    incidents = demand.incident_lane is not None
    if incidents:
        lane_factor = incident_factor(demand, s.t, num_lanes)
        closed = lane_factor <= 0.0  # column L (padding) is never closed

    # ---- 2. heads: target lane and what they see ahead -------------------------------------
    lane_length = network.lane_length.unsqueeze(0)  # [1, L]
    head = s.lane_head[:, :num_lanes]
    has_head = head >= 0
    h = torch.where(has_head, head, scratch_slot)
    h_trip = _take(s.veh_trip, h)
    h_leg = _take(s.veh_leg, h)
    legs = demand.route_legs
    next_move = torch.where(has_head, _take(s.veh_move, h), -1)  # [B, L]
    after_move = _take(s.veh_next_move, h)
    h, h_trip, h_leg, next_move, after_move = _materialise(h, h_trip, h_leg, next_move, after_move)
    last_road = has_head & (next_move < 0)
    m1 = next_move.clamp(min=0)
    m2 = after_move.clamp(min=0)
    lane_in_road = network.lane_index.unsqueeze(0).expand(batch, -1)

    # room at each lane's start: rear of its last vehicle (FAR when empty)  [B, L+1]
    tail = s.lane_tail
    tail_c = torch.where(tail >= 0, tail, scratch_slot)
    tail_rear = torch.where(
        tail >= 0, _take(s.veh_pos, tail_c) - _take(s.veh_length, tail_c), FAR
    )
    tail_speed = torch.where(tail >= 0, _take(s.veh_speed, tail_c), 0.0)
    tail_rear, tail_speed = _materialise(tail_rear, tail_speed)

    candidates = network.road_lanes[network.movement_end_road[m1]]  # [B, L, E]
    reachable = network.movement_target[m1, lane_in_road]  # [B, L, E]
    serves_after = torch.where(
        (after_move >= 0).unsqueeze(-1), network.movement_from_lane[m2], True
    )
    usable = reachable & serves_after & (candidates >= 0)
    cand_c = torch.where(candidates >= 0, candidates, num_lanes)
    if incidents:
        usable = _prefer_open(usable, _take(closed, cand_c))
    cand_rear = _take(tail_rear, cand_c)
    score = torch.where(usable, cand_rear, -FAR)
    best = score.argmax(dim=-1, keepdim=True)  # lowest index among equals
    target = torch.gather(cand_c, 2, best).squeeze(-1)  # [B, L]
    target_rear = torch.gather(score, 2, best).squeeze(-1)
    target_speed = _take(tail_speed, target)
    through_length = network.link_length[m1, lane_in_road, best.squeeze(-1)]

    h_pos = _take(s.veh_pos, h)
    h_speed = _take(s.veh_speed, h)
    h_gap = _take(s.veh_min_gap, h)
    h_decel = _take(s.veh_decel, h)
    to_stop_line = lane_length - h_pos
    # Spillback: the target lane blocks its upstream movements when its last vehicle stands
    # near its start. A last vehicle that is still moving (in the box or just past it) does
    # not block: car following through the box keeps the head behind it.
    room = (target_rear - h_gap >= 0) | (target_speed >= MOVING_TAIL_SPEED)
    signal_green = _take(green, torch.where(next_move >= 0, next_move, no_movement))
    signal_yellow = _take(yellow, torch.where(next_move >= 0, next_move, no_movement))
    can_stop = h_speed * h_speed <= 2.0 * h_decel * to_stop_line
    may_cross = room & (signal_green | (signal_yellow & ~can_stop)) & ~last_road
    leaves_freely = last_road
    if incidents:  # a closed lane's head sees a stop line that never opens, exit lanes too
        may_cross = may_cross & ~closed[:, :num_lanes]
        leaves_freely = last_road & ~closed[:, :num_lanes]
    head_rear = torch.where(
        leaves_freely,
        FAR,
        torch.where(may_cross, lane_length + through_length + target_rear, lane_length + h_gap),
    )
    head_lead_speed = torch.where(may_cross, target_speed, 0.0)
    pad = torch.zeros(batch, 1, device=device)
    head_rear = torch.cat([head_rear, pad + FAR], 1)  # [B, L+1]
    head_lead_speed = torch.cat([head_lead_speed, pad], 1)

    # ---- 3. car following for every slot ---------------------------------------------------
    active = s.veh_lane >= 0
    lane_c = torch.where(active, s.veh_lane, num_lanes)
    leader = s.veh_leader
    has_leader = leader >= 0
    leader_c = torch.where(has_leader, leader, scratch_slot)
    lead_rear = torch.where(
        has_leader,
        _take(s.veh_pos, leader_c) - _take(s.veh_length, leader_c),
        _take(head_rear, lane_c),
    )
    lead_speed = torch.where(has_leader, _take(s.veh_speed, leader_c), _take(head_lead_speed, lane_c))
    lane_limit = torch.cat([network.lane_max_speed, network.lane_max_speed[:1]])[lane_c]
    free_limit = torch.minimum(s.veh_max_speed, lane_limit)  # delay is measured against this
    speed_limit = free_limit
    if incidents:  # a capacity drop scales the lane's limit; a closure stops traffic at its end
        drop = torch.where(lane_factor > 0.0, lane_factor.clamp(max=1.0), 1.0)
        speed_limit = torch.minimum(s.veh_max_speed, lane_limit * _take(drop, lane_c))
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
    new_pos = pos + 0.5 * (speed + new_speed) * DT
    limit = lead_rear - s.veh_min_gap  # never past the leader's current rear (or stop line)
    over = new_pos > limit
    new_pos = torch.where(over, torch.maximum(limit, pos), new_pos)
    new_speed = torch.where(
        over, torch.minimum(new_speed, (2.0 * (new_pos - pos) / DT - speed).clamp(min=0.0)), new_speed
    )
    new_pos = torch.where(active, new_pos, pos)
    new_speed = torch.where(active, new_speed, speed)

    # ---- 4. crossings ----------------------------------------------------------------------
    h_new_pos = _take(new_pos, h)
    crossing = has_head & (h_new_pos > lane_length)
    leaving_network = crossing & last_road
    moving = crossing & ~last_road
    h_new_pos, leaving_network, moving = _materialise(h_new_pos, leaving_network, moving)
    lane_ids = torch.arange(num_lanes, device=device).unsqueeze(0)
    overshoot_mm = ((h_new_pos - lane_length) * 1000.0).to(torch.int64)
    key = torch.where(moving, overshoot_mm * (num_lanes + 1) + (num_lanes - lane_ids), -1)
    target_c = torch.where(moving, target, num_lanes)
    best_key = torch.full((batch, num_lanes + 1), -1, dtype=torch.int64, device=device)
    best_key = best_key.scatter_reduce(1, target_c, key, reduce="amax")
    (wins,) = _materialise(moving & (key == _take(best_key, target_c)))
    blocked = moving & ~wins  # wait at the stop line
    blocked_slot = torch.where(blocked, h, scratch_slot)
    new_pos = _put(new_pos, blocked_slot, lane_length.expand(batch, -1))
    new_speed = _put(new_speed, blocked_slot, 0.0)
    # delay (time lost against driving at the speed limit), halting and stops, per vehicle
    lost = (DT - (new_pos - pos) / free_limit).clamp(min=0.0)
    veh_delay = s.veh_delay + torch.where(active, lost, 0.0)
    halted = active & (new_speed < params.halting_speed)
    veh_stops = s.veh_stops + (halted & ~s.veh_halted).to(s.veh_stops.dtype)

    # 4a. heads leave their lanes
    leaves = wins | leaving_network
    (follower,) = _materialise(_take(s.veh_follower, h))
    lane_head = s.lane_head.clone()
    lane_tail = s.lane_tail.clone()
    lane_head[:, :num_lanes] = torch.where(leaves, follower, head)
    lane_tail[:, :num_lanes] = torch.where(leaves & (follower < 0), -1, tail[:, :num_lanes])
    veh_leader = put_input(s.veh_leader, torch.where(leaves & (follower >= 0), follower, scratch_slot), -1)
    lane_count = s.lane_count - torch.cat(
        [leaves.to(torch.int64), torch.zeros(batch, 1, dtype=torch.int64, device=device)], 1
    )

    # 4b. winners join the tail of their target lane
    win_slot = torch.where(wins, h, scratch_slot)
    win_lane = torch.where(wins, target, num_lanes)
    old_tail = _take(lane_tail, win_lane)
    old_tail_c = torch.where(old_tail >= 0, old_tail, scratch_slot)
    behind = torch.where(
        old_tail >= 0, _take(new_pos, old_tail_c) - _take(s.veh_length, old_tail_c), FAR
    )
    entry_pos = torch.minimum(h_new_pos - lane_length - through_length, behind - h_gap)
    veh_lane = put_input(s.veh_lane, win_slot, win_lane)
    new_pos = _put(new_pos, win_slot, entry_pos)
    veh_leg = put_input(s.veh_leg, win_slot, h_leg + 1)
    # the route table is read only for the vehicles that change road (and, below, enter)
    after_next = _take(
        demand.route_movement,
        torch.where(wins, h_trip * legs + (h_leg + 2).clamp(max=legs - 1), scratch_trip * legs),
    )
    veh_move = put_input(s.veh_move, win_slot, after_move)
    veh_next_move = put_input(s.veh_next_move, win_slot, after_next)
    veh_leader = _put(veh_leader, win_slot, old_tail)
    veh_follower = put_input(s.veh_follower, torch.where(leaves & (follower >= 0), h, scratch_slot), -1)
    veh_follower = _put(veh_follower, win_slot, -1)
    veh_follower = _put(veh_follower, torch.where(wins & (old_tail >= 0), old_tail, scratch_slot), h)
    lane_head = _put(lane_head, torch.where(wins & (old_tail < 0), target, num_lanes), h)
    lane_tail = _put(lane_tail, win_lane, h)
    lane_count.scatter_add_(1, win_lane, wins.to(torch.int64))

    # 4c. trips that reach the end of their route leave the network
    done_slot = torch.where(leaving_network, h, scratch_slot)
    done_trip = torch.where(leaving_network, h_trip, scratch_trip)
    trip_finish = put_input(s.trip_finish, done_trip, t_col + 1)
    trip_stops = put_input(s.trip_stops, done_trip, _take(veh_stops, h))
    trip_delay = put_input(s.trip_delay, done_trip, _take(veh_delay, h))
    veh_lane = _put(veh_lane, done_slot, -1)
    freed = leaving_network.to(torch.int64)
    free_at = s.free_top.unsqueeze(1) + torch.cumsum(freed, 1) - 1
    free_stack = put_input(s.free_stack, torch.where(leaving_network, free_at, scratch_slot), h)
    free_top = s.free_top + freed.sum(1)

    # ---- 5. entries at origins -------------------------------------------------------------
    queue_pos = demand.origin_start + s.entry_ptr  # [B, R]
    queued = queue_pos < demand.origin_end
    trip = _take(demand.entry_order, torch.where(queued, queue_pos, scratch_trip))
    trip = torch.where(queued, trip, scratch_trip)
    due = queued & (_take(demand.depart, trip) <= t_col)
    first_move = _take(demand.route_movement, trip * legs)
    trip, due, first_move = _materialise(trip, due, first_move)
    origin_lanes = network.road_lanes.unsqueeze(0).expand(batch, -1, -1)  # [B, R, E]
    serves_first = torch.where(
        (first_move >= 0).unsqueeze(-1), network.movement_from_lane[first_move.clamp(min=0)], True
    )
    lane_ok = serves_first & (origin_lanes >= 0)
    origin_c = torch.where(origin_lanes >= 0, origin_lanes, num_lanes)
    if incidents:
        lane_ok = _prefer_open(lane_ok, _take(closed, origin_c))
    last = _take(lane_tail, origin_c)
    last_c = torch.where(last >= 0, last, scratch_slot)
    last_rear = torch.where(last >= 0, _take(new_pos, last_c) - _take(s.veh_length, last_c), FAR)
    entry_score = torch.where(lane_ok, last_rear, -FAR)
    pick = entry_score.argmax(dim=-1, keepdim=True)
    entry_lane = torch.gather(origin_c, 2, pick).squeeze(-1)  # [B, R]
    entry_room = torch.gather(entry_score, 2, pick).squeeze(-1)
    vehicle = demand.vehicle  # [B, T+1, F]
    trip_vehicle = torch.gather(vehicle, 1, trip.unsqueeze(-1).expand(-1, -1, vehicle.shape[2]))
    fits = due & (entry_room - trip_vehicle[..., 1] >= 0)
    rank = torch.cumsum(fits.to(torch.int64), 1) - 1
    has_slot = rank < free_top.unsqueeze(1)
    (enters,) = _materialise(fits & has_slot)
    pool_blocked = s.pool_blocked + (fits & ~has_slot).sum(1)
    slot = _take(free_stack, torch.where(enters, free_top.unsqueeze(1) - 1 - rank, scratch_slot))
    slot = torch.where(enters, slot, scratch_slot)
    free_top = free_top - enters.sum(1)
    enter_lane = torch.where(enters, entry_lane, num_lanes)
    prev_last = _take(lane_tail, enter_lane)

    veh_lane = _put(veh_lane, slot, enter_lane)
    new_pos = _put(new_pos, slot, 0.0)
    new_speed = _put(new_speed, slot, 0.0)
    veh_trip = put_input(s.veh_trip, slot, trip)
    veh_leg = _put(veh_leg, slot, 0)
    veh_move = _put(veh_move, slot, first_move)
    veh_next_move = _put(veh_next_move, slot, _take(demand.route_movement, trip * legs + 1))
    veh_leader = _put(veh_leader, slot, prev_last)
    veh_follower = _put(veh_follower, slot, -1)
    veh_follower = _put(veh_follower, torch.where(enters & (prev_last >= 0), prev_last, scratch_slot), slot)
    halted = _put(halted, slot, True)
    veh_stops = _put(veh_stops, slot, 0)
    veh_delay = _put(veh_delay, slot, 0.0)
    veh_length = put_input(s.veh_length, slot, trip_vehicle[..., 0])
    veh_min_gap = put_input(s.veh_min_gap, slot, trip_vehicle[..., 1])
    veh_max_speed = put_input(s.veh_max_speed, slot, trip_vehicle[..., 2])
    veh_accel = put_input(s.veh_accel, slot, trip_vehicle[..., 3])
    veh_decel = put_input(s.veh_decel, slot, trip_vehicle[..., 4])
    veh_headway = put_input(s.veh_headway, slot, trip_vehicle[..., 6])
    lane_head = _put(lane_head, torch.where(enters & (prev_last < 0), enter_lane, num_lanes), slot)
    lane_tail = _put(lane_tail, enter_lane, slot)
    lane_count.scatter_add_(1, enter_lane, enters.to(torch.int64))
    trip_enter = put_input(s.trip_enter, torch.where(enters, trip, scratch_trip), t_col)
    entry_ptr = s.entry_ptr + enters.to(torch.int64)

    # ---- accumulators ----------------------------------------------------------------------
    in_network = veh_lane[:, :scratch_slot] >= 0
    departed = _take(demand.departed_by, t_col.clamp(max=demand.horizon)).squeeze(1)
    waiting = departed - entry_ptr.sum(1)
    return SimState(
        t=s.t + 1,
        phase=phase,
        prev_phase=prev_phase,
        phase_timer=timer + 1,
        veh_lane=veh_lane,
        veh_pos=new_pos,
        veh_speed=new_speed,
        veh_trip=veh_trip,
        veh_leg=veh_leg,
        veh_move=veh_move,
        veh_next_move=veh_next_move,
        veh_leader=veh_leader,
        veh_follower=veh_follower,
        veh_halted=halted,
        veh_stops=veh_stops,
        veh_delay=veh_delay,
        veh_length=veh_length,
        veh_min_gap=veh_min_gap,
        veh_max_speed=veh_max_speed,
        veh_accel=veh_accel,
        veh_decel=veh_decel,
        veh_headway=veh_headway,
        lane_head=lane_head,
        lane_tail=lane_tail,
        lane_count=lane_count,
        free_stack=free_stack,
        free_top=free_top,
        entry_ptr=entry_ptr,
        trip_enter=trip_enter,
        trip_finish=trip_finish,
        trip_stops=trip_stops,
        trip_delay=trip_delay,
        halting_sum=s.halting_sum + (halted[:, :scratch_slot] & in_network).sum(1),
        active_sum=s.active_sum + in_network.sum(1),
        waiting_sum=s.waiting_sum + waiting,
        pool_blocked=pool_blocked,
    )
