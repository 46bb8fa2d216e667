"""Invariant checks on a simulator state, shared by the engine tests (plain asserts)."""

from __future__ import annotations

import torch

from envs.engine import EngineParams, SimState, signal_state
from envs.scenario.demand import Demand
from envs.scenario.network import Network


def unequal_fields(a: SimState, b: SimState) -> list[str]:
    """The names of the state fields whose values differ between `a` and `b` ([] when equal)."""
    return [name for name, x, y in zip(a._fields, a, b) if not torch.equal(x, y)]


def check_conservation(demand: Demand, state: SimState) -> None:
    """generated = waiting to enter + in the network + finished, per copy, from trip records."""
    trips = demand.max_trips
    t = state.t.unsqueeze(1)
    depart = demand.per_copy(demand.depart)[:, :trips]
    generated = (depart < t).sum(1)
    waiting = ((depart < t) & (state.trip_enter[:, :trips] < 0)).sum(1)
    in_network = (state.veh_lane[:, :-1] >= 0).sum(1)
    finished = (state.trip_finish[:, :trips] >= 0).sum(1)
    assert torch.equal(generated, waiting + in_network + finished), (
        generated, waiting, in_network, finished)


def check_lanes(network: Network, state: SimState) -> None:
    """Lane counts, FIFO chains and gaps: every follower keeps its min gap behind its leader."""
    lanes = network.num_lanes
    lane = state.veh_lane[:, :-1]
    active = lane >= 0
    counts = torch.zeros(lane.shape[0], lanes + 1, dtype=torch.int64, device=lane.device)
    counts.scatter_add_(1, torch.where(active, lane, lanes), active.to(torch.int64))
    assert torch.equal(counts[:, :lanes], state.lane_count[:, :lanes])

    leader = state.veh_leader[:, :-1]
    has_leader = active & (leader >= 0)
    lc = leader.clamp(min=0)
    same_lane = torch.gather(lane, 1, lc) == lane
    assert bool((same_lane | ~has_leader).all()), "a leader is on another lane"
    back = torch.gather(state.veh_follower[:, :-1], 1, lc)
    slot_ids = torch.arange(lane.shape[1], device=lane.device).expand_as(lane)
    assert bool(((back == slot_ids) | ~has_leader).all()), "leader/follower links disagree"
    rear = torch.gather(state.veh_pos[:, :-1], 1, lc) - torch.gather(state.veh_length[:, :-1], 1, lc)
    gap = rear - state.veh_pos[:, :-1]
    bad = has_leader & (gap < state.veh_min_gap[:, :-1] - 1e-3)
    assert not bool(bad.any()), f"vehicles closer than their min gap: {gap[bad][:5]}"
    # vehicles without a leader are the heads of their lanes
    heads = active & (leader < 0)
    head_of_lane = torch.gather(state.lane_head, 1, torch.where(active, lane, lanes))
    assert bool(((head_of_lane == slot_ids) | ~heads).all()), "a leaderless vehicle is not its lane's head"
    assert torch.equal(heads.sum(1), (state.lane_count[:, :lanes] > 0).sum(1))
    # positions stay within the lane (or the box just before it)
    length = torch.cat([network.lane_length, network.lane_length.new_zeros(1)])[torch.where(active, lane, lanes)]
    assert bool((state.veh_pos[:, :-1] <= length + 1e-3)[active].all()), "a vehicle is past its lane end"
    assert bool((state.veh_speed[:, :-1] >= 0)[active].all())


def step_signals(network: Network, params: EngineParams, after: SimState):
    """Green and yellow masks [B, M] that were in force during the step that produced `after`."""
    return signal_state(network, params, after.phase, after.prev_phase, after.phase_timer - 1)


def check_no_conflicting_green(network: Network, params: EngineParams, after: SimState,
                               yielding: torch.Tensor | None = None) -> None:
    """No two crossing movements shown green/yellow together; `yielding` ``[I, K]`` marks
    permissive movements (SUMO's 'g'), which may cross the greens they yield to."""
    green, yellow = step_signals(network, params, after)
    shown = (green | yellow).reshape(green.shape[0], network.num_intersections, -1)
    if yielding is not None:
        shown = shown & ~yielding
    shown = shown.to(torch.int64)
    conflict = network.conflict.to(torch.int64)
    both = torch.einsum("bik,ikj,bij->bi", shown, conflict, shown)
    assert int(both.max()) == 0, "two conflicting movements were shown green/yellow together"


def permissive_movements(scenario) -> torch.Tensor:
    """``[I, K]``: the movements some phase of their intersection shows as permissive (SUMO's
    'g'; none in a CityFlow dataset), for `check_no_conflicting_green`'s `yielding`."""
    network = scenario.network
    signalised = [x for x in scenario.roadnet.intersections if not x.virtual]
    yielding = torch.zeros(network.num_intersections, network.movements_per_intersection,
                           dtype=torch.bool)
    for i, inter in enumerate(signalised):
        for phase in inter.phases:
            yielding[i, list(phase.permissive)] = True
    return yielding


def check_red_discharges_nothing(
    network: Network, demand: Demand, params: EngineParams, before: SimState, after: SimState
) -> None:
    """Every vehicle that crossed a stop line did so on a green or yellow movement."""
    slots = min(before.num_slots, after.num_slots)
    was = before.veh_lane[:, :slots]
    now = after.veh_lane[:, :slots]
    same_trip = before.veh_trip[:, :slots] == after.veh_trip[:, :slots]
    crossed = (was >= 0) & (now >= 0) & (now != was) & same_trip
    legs = demand.route_legs
    movement = torch.gather(
        demand.per_copy(demand.route_movement).to(torch.int64), 1,
        before.veh_trip[:, :slots] * legs + before.veh_leg[:, :slots]
    )
    green, yellow = step_signals(network, params, after)
    open_ = torch.cat([green | yellow, torch.zeros(green.shape[0], 1, dtype=torch.bool, device=green.device)], 1)
    allowed = torch.gather(open_, 1, torch.where(movement >= 0, movement, network.num_movements))
    assert not bool((crossed & ~allowed).any()), "a vehicle crossed on red"


def check_no_passing(before: SimState, after: SimState) -> None:
    """A vehicle keeps its leader while both stay on the same lane (FIFO lanes). A slot holds the
    same vehicle only while it holds the same trip: a leader that left the network can hand its
    slot, in the same step, to a trip entering its lane behind the vehicle (resco_cologne3)."""
    slots = min(before.num_slots, after.num_slots)
    lane0, lane1 = before.veh_lane[:, :slots], after.veh_lane[:, :slots]
    same_trip = before.veh_trip[:, :slots] == after.veh_trip[:, :slots]
    lead0 = before.veh_leader[:, :slots]
    has = (lane0 >= 0) & (lane1 == lane0) & same_trip & (lead0 >= 0) & (lead0 < slots)
    lead_c = lead0.clamp(min=0)
    lead_lane1 = torch.gather(lane1, 1, lead_c)
    leader_stayed = has & (lead_lane1 == lane0) & torch.gather(same_trip, 1, lead_c)
    kept = after.veh_leader[:, :slots] == lead0
    assert bool((kept | ~leader_stayed).all()), "a vehicle passed its leader"


def check_all(network, demand, params, before: SimState, after: SimState,
              yielding: torch.Tensor | None = None) -> None:
    check_conservation(demand, after)
    check_lanes(network, after)
    check_no_conflicting_green(network, params, after, yielding)
    check_red_discharges_nothing(network, demand, params, before, after)
    check_no_passing(before, after)


def run_controller_checked(sim, controller, steps: int) -> None:
    """Reset `controller` on `sim` and run it `steps` seconds, checking every invariant at each step."""
    controller.reset(sim)
    for _ in range(steps):
        before = sim.snapshot()
        sim.step(controller.act(sim))
        check_all(sim.network, sim.demand, sim.params, before, sim.state)
