"""Approaches: a road together with the roads that can only lead into it (or only come out of
it) through pass-through junctions, for detectors that cover the whole approach to a light.

Imported city networks split a road wherever its lane count or its shape changes: SUMO's
Ingolstadt nets join some lights to the junction before them with edges of 0.2 to a few metres.
A detector on such a stub sees one or two vehicles while the queue that belongs to the light
stands on the road before it, out of a lane count's sight. Counted over the approach, the queue
is seen wherever the network's drawing happens to split it.

- A **pass-through junction** is an intersection with a single phase (no signal: an uncontrolled
  junction) none of whose movements conflict: a node that only splits or joins roads.
- U-turns are no part of an approach: a road's opposite carriageway carries other traffic (at
  the network's edge, mostly vehicles leaving it), so a turnaround movement never links two roads
  below.
- Road U **feeds** road R when U ends at a pass-through junction where every movement from U,
  U-turns aside, goes to R: U's vehicles are on their way into R, unless they turn around or
  their trip ends on U (a detector cannot tell; those are counted too). Road S **continues** R
  when S starts at a pass-through junction at R's end where every movement into S, U-turns
  aside, comes from R.
- A road's **upstream approach** is the road, its feeders, their feeders, and so on; its
  **downstream approach** the road and its continuations, and theirs. Each further road's
  vehicles are spread evenly over the road's lanes (the lane they will take is not known), so
  an approach count can be fractional.

On a network without pass-through junctions (CityFlow's datasets, the generated grids, RESCO's
grids, Manhattan) both approaches of every road are the road itself.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from envs.scenario.network import Network

SENSING = ("lane", "approach")  # what a lane's count covers: the lane, or its approach


def pass_through_junctions(network: Network) -> torch.Tensor:
    """``[I]`` bool: single-phase intersections none of whose valid movements conflict."""
    inters, per = network.num_intersections, network.movements_per_intersection
    valid = network.movement_valid.reshape(inters, per)
    conflicting = (network.conflict & valid[:, :, None] & valid[:, None, :]).flatten(1).any(1)
    return (network.phase_valid.sum(1) == 1) & ~conflicting


def _chains(network: Network) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """Road -> the roads that feed it, and road -> the roads that continue it (module doc)."""
    through = pass_through_junctions(network).tolist()
    exits, entries = defaultdict(set), defaultdict(set)
    starts, ends = network.movement_start_road.tolist(), network.movement_end_road.tolist()
    links = network.movement_valid & ~network.movement_turnaround
    for m, valid in enumerate(links.tolist()):
        if valid:
            exits[starts[m]].add(ends[m])
            entries[ends[m]].add(starts[m])
    road_end, road_start = network.road_end.tolist(), network.road_start.tolist()
    feeders, continuations = defaultdict(set), defaultdict(set)
    for road, targets in exits.items():
        if road_end[road] >= 0 and through[road_end[road]] and len(targets) == 1:
            feeders[next(iter(targets))].add(road)
    for road, sources in entries.items():
        if road_start[road] >= 0 and through[road_start[road]] and len(sources) == 1:
            continuations[next(iter(sources))].add(road)
    return feeders, continuations


def _reach(road: int, links: dict[int, set[int]]) -> list[int]:
    """The roads reachable from `road` through `links`, without `road` (cycles are cut)."""
    seen, frontier = {road}, [road]
    while frontier:
        frontier = [nxt for here in frontier for nxt in sorted(links.get(here, ())) if nxt not in seen]
        seen.update(frontier)
    return sorted(seen - {road})


@dataclass(frozen=True)
class LaneSpread:
    """Per-lane additions: ``count[target] += share[target] * count[source]`` for each pair.

    The vehicles are summed before they are shared out: whole counts add up exactly in any
    order, so the result does not depend on the order of CUDA's atomic adds."""

    target: torch.Tensor  # [N] int64 lane ids
    source: torch.Tensor  # [N] int64 lane ids
    share: torch.Tensor  # [L] float32: the share of each addition a lane gets (1 / its road's lanes)

    @property
    def weight(self) -> torch.Tensor:
        """``[N]`` the weight of each pair's addition."""
        return self.share[self.target]

    def apply(self, per_lane: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` readings -> the same over the approaches, float32."""
        out = per_lane.to(torch.float32)
        if self.target.numel() == 0:
            return out
        added = torch.zeros_like(out).index_add_(1, self.target, out[:, self.source])
        return out + added * self.share


@dataclass(frozen=True)
class ApproachMap:
    upstream: LaneSpread  # for the incoming lanes of a movement
    downstream: LaneSpread  # for its outgoing lanes

    def road_pairs(self, network: Network, upstream: bool) -> dict[str, list[str]]:
        """Road id -> the road ids its approach adds (for reports and for other simulators)."""
        spread = self.upstream if upstream else self.downstream
        lane_road = network.lane_road.tolist()
        pairs: dict[str, set[str]] = defaultdict(set)
        for target, source in zip(spread.target.tolist(), spread.source.tolist()):
            pairs[network.road_ids[lane_road[target]]].add(network.road_ids[lane_road[source]])
        return {road: sorted(found) for road, found in pairs.items()}


def approach_map(network: Network) -> ApproachMap:
    """The lane spreads of every road's upstream and downstream approach (module doc)."""
    feeders, continuations = _chains(network)
    road_lanes = [[lane for lane in lanes if lane >= 0] for lanes in network.road_lanes.tolist()]

    # each lane's share of what its road's approach adds: 1 / the road's lanes
    share = 1.0 / (network.road_lanes >= 0).sum(1).to(torch.float32)[network.lane_road]

    def spread(links: dict[int, set[int]]) -> LaneSpread:
        target, source = [], []
        for road in sorted(links):
            for other in _reach(road, links):
                for lane in road_lanes[road]:
                    target.extend([lane] * len(road_lanes[other]))
                    source.extend(road_lanes[other])
        device = network.device
        return LaneSpread(torch.tensor(target, dtype=torch.int64, device=device),
                          torch.tensor(source, dtype=torch.int64, device=device), share)

    return ApproachMap(spread(feeders), spread(continuations))
