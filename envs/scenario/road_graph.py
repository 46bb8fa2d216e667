"""The roadnet as a routing graph for the demand generators: road lengths, the roadLinks leaving
each road, entry and exit roads, fewest hops to an exit and shortest routes."""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass

from envs.errors import ScenarioError

DEMAND_SOURCE = "<generated:demand>"


@dataclass(frozen=True)
class Successor:
    link_type: str
    road: str


@dataclass(frozen=True)
class RoadGraph:
    """The parts of a roadnet the demand generators need, keyed by road id."""

    road_ids: tuple[str, ...]  # in file order, so iteration is deterministic
    length: dict[str, float]
    successors: dict[str, tuple[Successor, ...]]  # roadLinks leaving each road's end
    entry_roads: tuple[str, ...]  # start at a virtual intersection
    exit_roads: frozenset[str]  # end at a virtual intersection
    default_route_cap: int  # rows + cols + 4 for a grid


def _polyline_length(points: list[dict]) -> float:
    return float(
        sum(
            math.hypot(b["x"] - a["x"], b["y"] - a["y"])
            for a, b in zip(points[:-1], points[1:])
        )
    )


def road_graph(roadnet: Mapping) -> RoadGraph:
    """Index a CityFlow roadnet dict for routing (raises ScenarioError if it is malformed)."""
    try:
        virtual = {i["id"] for i in roadnet["intersections"] if i.get("virtual", False)}
        roads = list(roadnet["roads"])
        road_ids = tuple(r["id"] for r in roads)
        length = {r["id"]: _polyline_length(r["points"]) for r in roads}
        successors: dict[str, list[Successor]] = {rid: [] for rid in road_ids}
        for intersection in roadnet["intersections"]:
            for link in intersection.get("roadLinks", []):
                successors[link["startRoad"]].append(Successor(link["type"], link["endRoad"]))
        entry = tuple(r["id"] for r in roads if r["startIntersection"] in virtual)
        exits = frozenset(r["id"] for r in roads if r["endIntersection"] in virtual)
        signalised = [i["point"] for i in roadnet["intersections"] if not i.get("virtual", False)]
    except (KeyError, TypeError) as error:
        raise ScenarioError(
            DEMAND_SOURCE, "roadnet", type(roadnet).__name__,
            f"is not a CityFlow roadnet dict ({type(error).__name__}: {error})",
        ) from error
    # For a grid the distinct x / y coordinates of the signals are its columns / rows.
    cols = len({round(p["x"], 3) for p in signalised})
    rows = len({round(p["y"], 3) for p in signalised})
    return RoadGraph(
        road_ids=road_ids,
        length=length,
        successors={rid: tuple(s) for rid, s in successors.items()},
        entry_roads=entry,
        exit_roads=exits,
        default_route_cap=rows + cols + 4,
    )


def exit_distances(graph: RoadGraph) -> dict[str, int]:
    """Fewest further roads from each road to an exit road (reverse BFS); unreachable = absent."""
    predecessors: dict[str, list[str]] = {rid: [] for rid in graph.road_ids}
    for rid, successors in graph.successors.items():
        for successor in successors:
            predecessors[successor.road].append(rid)
    hops = {rid: 0 for rid in graph.exit_roads}
    frontier = list(graph.exit_roads)
    while frontier:
        next_frontier = []
        for rid in frontier:
            for previous in predecessors[rid]:
                if previous not in hops:
                    hops[previous] = hops[rid] + 1
                    next_frontier.append(previous)
        frontier = next_frontier
    return hops


def shortest_route(graph: RoadGraph, origin: str, destination: str) -> list[str] | None:
    """Shortest route by length from `origin` to `destination` following roadLinks (Dijkstra).

    The cost of a route is the summed length of its roads; ties go to the lexicographically
    smaller road id so the result is deterministic. Returns None if unreachable.
    """
    distance = {origin: 0.0}
    previous: dict[str, str] = {}
    queue = [(0.0, origin)]
    while queue:
        dist, rid = heapq.heappop(queue)
        if rid == destination:
            break
        if dist > distance[rid]:
            continue  # stale queue entry
        for successor in graph.successors[rid]:
            candidate = dist + graph.length[successor.road]
            if candidate < distance.get(successor.road, math.inf):
                distance[successor.road] = candidate
                previous[successor.road] = rid
                heapq.heappush(queue, (candidate, successor.road))
    if destination not in distance:
        return None
    route = [destination]
    while route[-1] != origin:
        route.append(previous[route[-1]])
    return route[::-1]
