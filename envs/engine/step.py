"""The pure, batched simulation step: ``state' = step(network, demand, params, state, command)``.

One call advances all B copies by one second. There is no Python loop over vehicles, lanes,
intersections or copies, no ``.item()`` and no data-dependent control flow, so the same code
runs eagerly on the CPU or a GPU and `torch.compile` can take it whole.

Order of events inside a step at time t, one module per phase:

1. Signals (`signals`): a command to switch phase is accepted once the current green has lasted
   ``min_green_s``; the switch starts ``yellow_s`` of yellow on the movements that lose green,
   then ``all_red_s`` of red, then the new phase's green. Movements green in both phases stay
   green.
2. Heads (`heads`): the vehicle nearest each stop line picks its target lane on the next road
   (a lane its next turn reaches and that serves the turn after, with the most room; lowest
   index on a tie) and sees either the stop line (red; yellow when it can stop comfortably; or
   spillback: the target lane's last vehicle stands within a minimum gap of its start) or the
   target lane's last vehicle through the box. With ``params.junction_yielding``, a head on a
   permissive green that can still stop also sees the stop line while a movement it yields to
   (the network's ``yield_minor``/``yield_major`` pairs) is about to cross (`right_of_way`).
3. Car following (`following`) for every vehicle: the fastest speed that lets it stop behind its
   leader if the leader brakes (ballistic update) and keeps its time headway (the flow's
   ``headwayTime``), capped by acceleration and the speed limit; and never past the leader's
   current rear minus the minimum gap, nor past a closed stop line. A flow with a driver
   imperfection (``sigma``, SUMO's Krauss dawdling) then loses a random share of that speed
   (`following.dawdle`; the draw is a hash of the trip and the second, so runs repeat exactly).
4. Crossings (`crossings`): heads past the stop line move to their target lane (at most one
   vehicle enters a lane per step: the one furthest past its stop line, then the lowest lane
   id; the others wait at the stop line) or, on their last road, leave the network.
5. Entries (`entries`): the first waiting trip of each origin road enters the lane of that road
   that serves its first turn and has the most room, if the vehicle fits behind the lane's last
   vehicle and a vehicle slot is free. Vehicles that cannot enter wait in the origin's queue.

Incidents (the demand's ``incident_*`` tables, per copy; `envs.engine.incident_rules`), at a
lane's stop line or at a place along it (``incident_pos``, metres from the lane's start):

- a *closure at the stop line* lets nothing leave the lane (its head sees a stop line that never
  opens, so the vehicles behind it queue);
- a *closure at a place* is a blockage there: a vehicle whose front is at or before it follows it
  as a standing obstacle (the first stops at the place minus its minimum gap, at any colour of
  the light; in car following, phase 3), vehicles already past it drive on and cross as usual;
  to vehicles entering the lane (lane choice, entries, spillback) the blockage is a standing
  vehicle with its rear at the place;
- a *capacity drop* scales the speed limit by its factor: on the whole lane at the stop line, or
  for the vehicles whose front is at or past the place (the rest of the lane) at a place; delay
  is still measured against the normal limit;
- lane choice — a head picking its target lane, an entry picking its lane — avoids a lane with
  an active closure (either kind) whenever another lane serves the same turns.
"""

from __future__ import annotations

import torch

from envs.engine.crossings import change_lanes, cross_stop_lines, finish_trips, tally
from envs.engine.entries import choose_entries, enter
from envs.engine.following import follow
from envs.engine.heads import lane_incidents, look_ahead
from envs.engine.ops import put, put_copy, take_sample
from envs.engine.signals import Signals, switch_signals
from envs.engine.state import EngineParams, SimState, with_fields
from envs.scenario.demand import Demand
from envs.scenario.network import Network

__all__ = ["step"]


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
    # first write into one of the input state's arrays: in place, or on a copy when pure
    put_first = put if inplace else put_copy
    signals = switch_signals(network, params, state, command)
    incidents = lane_incidents(demand, state.t, network.num_lanes)
    heads = look_ahead(network, params, state, signals, incidents)
    sigma = None if demand.sigma is None else take_sample(demand.sigma, demand.sample_of_copy, state.veh_trip)
    motion = follow(network, state, heads, incidents, sigma)
    crossing = cross_stop_lines(network, heads, motion)
    counts = tally(params, state, motion, crossing)
    new = with_fields(state,
        veh_pos=crossing.pos, veh_speed=crossing.speed, veh_halted=counts.halted,
        veh_stops=counts.stops, veh_delay=counts.delay,
    )
    new = change_lanes(network, demand, new, heads, crossing, put_first)
    new = finish_trips(new, heads, crossing, put_first)
    new = enter(network, demand, new, choose_entries(network, demand, new, incidents), put_first)
    return _tick(demand, state, new, signals)


def _tick(demand: Demand, state: SimState, new: SimState, signals: Signals) -> SimState:
    """The clock, the phase timers and the accumulators: this second added."""
    slots = new.veh_lane.shape[1] - 1
    in_network = new.veh_lane[:, :slots] >= 0
    t_col = state.t.unsqueeze(1)
    at = t_col.clamp(max=demand.horizon)
    departed = take_sample(demand.departed_by, demand.sample_of_copy, at).squeeze(1)
    waiting = departed - new.entry_ptr.sum(1)
    return with_fields(new,
        t=state.t + 1,
        phase=signals.phase,
        prev_phase=signals.prev_phase,
        phase_timer=signals.timer + 1,
        halting_sum=state.halting_sum + (new.veh_halted[:, :slots] & in_network).sum(1),
        active_sum=state.active_sum + in_network.sum(1),
        waiting_sum=state.waiting_sum + waiting,
    )
