"""Per-intersection views of a `Network`: the static index tables agents see the network through.

Every signalised intersection becomes one agent. Intersections differ (a T-junction has fewer
incoming lanes and phases than a crossroads), so each table is padded to the largest
intersection with -1 and comes with a validity mask; observation features pad with zeros and
actions past an intersection's own phase count are masked.

An agent's *actions* are its signal phases (phases that give green to at least one movement
other than a right turn), in roadnet order: action ``a`` of intersection ``i`` commands phase
``action_phase[i, a]``. Transition phases (CityFlow's all-right-turn phase 0) are never chosen:
the engine inserts yellow and all-red itself. A phase that greens a right turn no other signal
phase greens is a signal phase too (else that turn would never be green again once the
intersection left it): so a junction whose only movement turns right has its phase as its action,
and every intersection (each has a roadLink some phase greens) has at least one action.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from envs.engine.state import SimState
from envs.scenario.network import Network


@dataclass(frozen=True, eq=False)
class IntersectionLayout:
    ids: tuple[str, ...]  # roadnet ids of the signalised intersections (the agents)
    in_lanes: torch.Tensor  # [I, Lin] incoming lane ids (road by road, lane 0 first), -1 pad
    out_lanes: torch.Tensor  # [I, Lout] outgoing lane ids, -1 pad
    action_phase: torch.Tensor  # [I, A] phase index of each action, -1 pad
    action_mask: torch.Tensor  # [I, A] bool: the action exists at this intersection
    num_actions: torch.Tensor  # [I] int64
    movements: int = 0  # K: movement slots per intersection (movement m = i * K + k)

    @property
    def num_intersections(self) -> int:
        return len(self.ids)

    @property
    def max_in_lanes(self) -> int:
        return int(self.in_lanes.shape[1])

    @property
    def max_actions(self) -> int:
        return int(self.action_phase.shape[1])


def deciding_intersections(action_phase: torch.Tensor) -> torch.Tensor:
    """``[I]`` bool: the intersections with two or more signal phases, which have a decision to make
    (a SUMO scenario's unsignalised junctions have one). `action_phase`: the layout's ``[I, A]``
    table (-1 past an intersection's phases). The one rule for the rewards' reach (`reward_lanes`)
    and for what training counts and learns from (`agents.ppo.deciding`)."""
    return (action_phase >= 0).sum(-1) >= 2


def _pad_rows(rows: list[list[int]], device) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0) or 1
    out = torch.full((len(rows), width), -1, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return out.to(device)


def intersection_layout(network: Network) -> IntersectionLayout:
    road_end = network.road_end.tolist()
    road_start = network.road_start.tolist()
    road_lanes = network.road_lanes.tolist()
    num_inter = network.num_intersections
    incoming: list[list[int]] = [[] for _ in range(num_inter)]
    outgoing: list[list[int]] = [[] for _ in range(num_inter)]
    for r, lanes in enumerate(road_lanes):
        real = [lane for lane in lanes if lane >= 0]
        if road_end[r] >= 0:
            incoming[road_end[r]].extend(real)
        if road_start[r] >= 0:
            outgoing[road_start[r]].extend(real)
    signal = network.signal_phase.tolist()
    actions = [[p for p, is_signal in enumerate(row) if is_signal] for row in signal]
    action_phase = _pad_rows(actions, network.device)
    return IntersectionLayout(
        ids=network.intersection_ids,
        in_lanes=_pad_rows(incoming, network.device),
        out_lanes=_pad_rows(outgoing, network.device),
        action_phase=action_phase,
        action_mask=action_phase >= 0,
        num_actions=(action_phase >= 0).sum(1),
        movements=network.movements_per_intersection,
    )


def always_green(network: Network) -> torch.Tensor:
    """``[I, K]`` movements green in every signal phase of their intersection (the datasets'
    free right turns): no phase switch stops them. (Every intersection has a signal phase, see above.)"""
    signal = network.signal_phase  # [I, P]
    green = network.phase_green & signal.unsqueeze(-1)
    return green.sum(1) == signal.sum(1, keepdim=True)


def lane_movements(network: Network) -> torch.Tensor:
    """``[L, M]`` bool: movement m starts from lane l (the lane feeds it)."""
    lanes = torch.arange(network.num_lanes, device=network.lane_road.device)
    road, index = network.lane_road[lanes], network.lane_index[lanes]
    starts = network.movement_start_road.unsqueeze(0) == road.unsqueeze(1)  # [L, M]
    from_lane = network.movement_from_lane[:, index].T  # [L, M]: lane index e of its road in m
    return starts & from_lane & network.movement_valid.unsqueeze(0)


def gather_lanes(per_lane: torch.Tensor, lanes: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` per-lane values -> ``[B, I, W]`` for a padded lane table ``[I, W]`` (pad = 0)."""
    pad = torch.zeros_like(per_lane[:, :1])
    values = torch.cat([per_lane, pad], 1)  # column L holds the padding value
    index = torch.where(lanes >= 0, lanes, per_lane.shape[1])
    return values[:, index]


def action_commands(layout: IntersectionLayout, actions: torch.Tensor) -> torch.Tensor:
    """Phase commands ``[B, I]`` for action indices ``[B, I]``: action ``a`` of intersection ``i``
    commands phase ``action_phase[i, a]``; -1 (keep the current phase) stays -1. The actions must
    be valid (-1 or below the intersection's action count); callers check user input."""
    table = layout.action_phase.unsqueeze(0).expand(actions.shape[0], -1, -1)
    chosen = torch.gather(table, 2, actions.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(actions >= 0, chosen, -1)


def current_action(layout: IntersectionLayout, state: SimState) -> torch.Tensor:
    """The action index of each intersection's commanded phase ``[B, I]`` (-1: a phase that is
    not an action, e.g. the roadnet's transition phase at reset)."""
    match = layout.action_phase.unsqueeze(0) == state.phase.unsqueeze(-1)  # [B, I, A]
    return torch.where(match.any(-1), match.to(torch.int64).argmax(-1), -1)


def next_action_phase(layout: IntersectionLayout, state: SimState) -> torch.Tensor:
    """The phase of each intersection's next action after its current one, cyclically ``[B, I]``
    (the first action's phase where the current phase is not an action)."""
    current = current_action(layout, state)
    following = torch.where(current >= 0, (current + 1) % layout.num_actions.clamp(min=1), 0)
    return action_commands(layout, following)



# how far before a light's stop line its lane-based rewards count a queue that backs up over a
# junction with one phase: the reach of the default observations' approach features (100 m)
REWARD_REACH_M = 100.0


def reward_lanes(network: Network, layout: IntersectionLayout, reach_m: float = REWARD_REACH_M) -> torch.Tensor:
    """``[I, W]`` the lanes whose vehicles count in each intersection's lane-based rewards, -1 pad.

    An intersection that decides (more than one signal phase) counts its incoming lanes and the
    lanes of every road that leads into them through junctions that decide nothing (one phase: a
    SUMO scenario's unsignalised junctions) and ends less than `reach_m` before its stop line
    (the road lengths in between summed). A queue at a light backs up over such a junction, and
    where the light's own approach is short (resco_ingolstadt1's phase 2 is served from 14.9 m,
    two cars) the queue it leaves standing lay almost all beyond it: a light counting its own
    lanes alone was rewarded for never serving that approach. A road the light itself sends traffic
    out on never counts (a turnaround or a loop past such junctions leads some of it back: counted,
    the light was penalised for what it released). A junction that decides nothing counts its own
    incoming lanes. On a network of lights alone this is `layout.in_lanes`."""
    decides = deciding_intersections(layout.action_phase).tolist()
    if all(decides):
        return layout.in_lanes
    road_start, road_end = network.road_start.tolist(), network.road_end.tolist()
    road_lanes = [[lane for lane in lanes if lane >= 0] for lanes in network.road_lanes.tolist()]
    length = [max(float(network.lane_length[lane]) for lane in lanes) if lanes else 0.0 for lanes in road_lanes]
    feeders: dict[int, set[int]] = {}  # road -> the roads with a movement into it
    for m in torch.nonzero(network.movement_valid).flatten().tolist():
        feeders.setdefault(int(network.movement_end_road[m]), set()).add(int(network.movement_start_road[m]))
    rows = [[lane for lane in row if lane >= 0] for row in layout.in_lanes.tolist()]
    for light, row in enumerate(rows):
        if not decides[light]:
            continue
        # shortest distance from each road's end to the light's stop line, over one-phase junctions
        ends_at = {road: 0.0 for road, end in enumerate(road_end) if end == light}
        frontier = sorted(ends_at)
        while frontier:
            road = frontier.pop()
            junction = road_start[road]
            if junction < 0 or decides[junction]:
                continue
            for feeder in sorted(feeders.get(road, ())):
                if road_start[feeder] == light:  # its own outflow, back through a turnaround or a loop: not its queue
                    continue
                distance = ends_at[road] + length[road]
                if distance < reach_m and distance < ends_at.get(feeder, float("inf")):
                    ends_at[feeder] = distance
                    frontier.append(feeder)
        row.extend(lane for road in sorted(ends_at) for lane in road_lanes[road] if lane not in row)
    return _pad_rows(rows, network.device)
