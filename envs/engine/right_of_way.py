"""Right of way inside a junction (step phase 2, with the heads; opt-in through
``EngineParams.junction_yielding``): a head whose movement must give way waits at its stop line
while a vehicle of a movement it yields to is about to cross.

The network's ``yield_minor``/``yield_major`` pairs are SUMO's right of way (a minor road gives
way to the major one; a left turn on a permissive green to the oncoming traffic). A pair applies
while its minor movement shows a *permissive* green (SUMO's 'g', every link of an unsignalised
junction; a priority green 'G' never waits; through a switch's intergreen, a movement green in
both phases keeps the previous phase's kind, as SUMO's transition steps show it). The major
movement is *coming* when the head of one of its lanes (the vehicle nearest the stop line whose
next movement it is) may cross (green, or yellow it can no longer stop for; no closure on its
lane; room on its target lane: a vehicle that must stop for a full lane ahead will not pass,
SUMO's ``willPass``), drives at `COMING_SPEED` (2 m/s) or more, and reaches its stop line
within ``yield_gap_s`` at its current speed. A head that stands or creeps out of a queue holds
nobody: two movements that yield to each other (a right-before-left junction) cannot lock each
other out, and a minor road merging into a queue takes turns with it instead of waiting until
the queue clears (SUMO's minor drivers get there through impatience, which grows with their
waiting time; gridlight keeps no per-vehicle waiting time). Only the heads count: a major lane
whose head turns elsewhere shows nothing of the vehicles behind it. Vehicles in the junction box
are not modelled (a vehicle is on a lane or past its stop line), so the gap is measured to the
stop line, not to the conflict point.
"""

from __future__ import annotations

import torch

from envs.engine.ops import take
from envs.engine.signals import Signals, intergreen_s
from envs.engine.state import EngineParams
from envs.scenario.network import Network


# m/s: a major vehicle slower than this (standing, or starting out of a queue) holds no minor
# one, so mutual yields cannot lock and a minor road merging into a queue takes turns with it
COMING_SPEED = 2.0


def has_right_of_way_rules(network: Network) -> bool:
    """Whether the network has any yield pair (static: CityFlow and generated networks do not)."""
    return network.yield_minor.numel() > 0


def permissive_greens(network: Network, params: EngineParams, signals: Signals) -> torch.Tensor:
    """``[B, M]`` bool: movements whose green yields now: permissive in the commanded phase, or
    in the previous one while the switch's intergreen lasts (a movement green in both phases
    keeps flowing through the intergreen as it did before the switch: SUMO's transition steps
    show its old 'g')."""
    batch = signals.phase.shape[0]
    inter = torch.arange(network.num_intersections, device=signals.phase.device)
    switching = signals.timer < intergreen_s(network, params, signals.prev_phase, signals.phase)
    previous = network.phase_permissive[inter, signals.prev_phase] & switching.unsqueeze(-1)
    return (network.phase_permissive[inter, signals.phase] | previous).reshape(batch, -1)


def gives_way(
    network: Network,
    params: EngineParams,
    signals: Signals,
    next_move: torch.Tensor,
    may_cross: torch.Tensor,
    speed: torch.Tensor,
    to_stop_line: torch.Tensor,
) -> torch.Tensor:
    """``[B, L]`` bool: the lane's head must wait at its stop line this step.

    Per lane head ``[B, L]``: `next_move` its next movement (-1 none), `may_cross` whether its
    signal, its lane (no closure) and the room on its target lane let it cross, `speed`,
    `to_stop_line`."""
    batch = next_move.shape[0]
    num_movements = network.num_movements
    move_c = torch.where(next_move >= 0, next_move, num_movements)
    coming = may_cross & (speed >= COMING_SPEED) & (to_stop_line <= speed * params.yield_gap_s)
    coming_by_move = torch.zeros(batch, num_movements + 1, dtype=torch.int32, device=speed.device)
    coming_by_move = coming_by_move.scatter_add(1, move_c, coming.to(torch.int32))
    major_coming = coming_by_move[:, :num_movements] > 0
    permissive = permissive_greens(network, params, signals)
    pair_holds = major_coming[:, network.yield_major] & permissive[:, network.yield_minor]
    held = torch.zeros(batch, num_movements + 1, dtype=torch.int32, device=speed.device)
    held = held.scatter_add(1, network.yield_minor.expand(batch, -1), pair_holds.to(torch.int32))
    return take(held > 0, move_c)
