"""Synthetic grid scenarios, written in CityFlow's own JSON format.

Generated scenarios are plain CityFlow ``roadnet.json`` / ``flow.json`` dicts so that they go
through exactly the same loader (`envs.scenario.cityflow`) and checks as the public datasets; the
generator never builds engine objects itself.

Conventions copied from the CityFlow datasets (not their code):

* signalised intersections are ``intersection_{x}_{y}`` for ``x`` in ``1..cols`` (eastward) and
  ``y`` in ``1..rows`` (northward); a ring of *virtual* intersections sits one step outside the grid
  at ``x = 0``, ``x = cols + 1``, ``y = 0`` and ``y = rows + 1`` (no corner ones), where vehicles
  enter and leave the network;
* ``road_{x}_{y}_{d}`` starts at ``intersection_{x}_{y}`` and heads in direction ``d``
  (0 = east, 1 = north, 2 = west, 3 = south); lane 0 is the innermost (leftmost) lane;
* ``roadLinks`` carry a ``type`` (go_straight / turn_left / turn_right) and ``laneLinks`` from
  every lane serving that movement to every lane of the destination road.

Demand generators return one flow entry per vehicle (``interval`` 1, ``startTime == endTime``),
like the real datasets, so a flow file is just a sorted list of departures.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from envs.errors import ScenarioError

DEMAND_SOURCE = "<generated:demand>"

# Headings, counter-clockwise so that a left turn is +1 and a right turn is -1 (mod 4).
EAST, NORTH, WEST, SOUTH = 0, 1, 2, 3
_UNIT_VECTOR = {EAST: (1.0, 0.0), NORTH: (0.0, 1.0), WEST: (-1.0, 0.0), SOUTH: (0.0, -1.0)}
_GRID_STEP = {EAST: (1, 0), NORTH: (0, 1), WEST: (-1, 0), SOUTH: (0, -1)}

# Movement letter -> (CityFlow roadLink type, change of heading in quarter turns).
# U-turns (+2) are deliberately absent: the grid never generates them.
MOVEMENTS = {"L": ("turn_left", 1), "S": ("go_straight", 0), "R": ("turn_right", 3)}

# The generated scenarios' vehicle: CityFlow's default block (the one every public flow file
# uses) except headwayTime. The engine honours headwayTime as CityFlow does, and it sets the
# queue discharge rate: CityFlow's 2.0 s gives about 1500 veh/h per lane here (1464 in
# CityFlow), below the 1800-1900 veh/h of field measurements (HCM's base saturation flow is
# 1900); 1.45 s gives about 1895 veh/h (tests/test_engine.py measures it).
DEFAULT_VEHICLE: dict[str, float] = {
    "length": 5.0,
    "width": 2.0,
    "maxPosAcc": 2.0,
    "maxNegAcc": 4.5,
    "usualPosAcc": 2.0,
    "usualNegAcc": 4.5,
    "minGap": 2.5,
    "maxSpeed": 11.111,
    "headwayTime": 1.45,
}

DEFAULT_TURN_RATIOS = (0.2, 0.6, 0.2)  # left, straight, right
_BEZIER_SAMPLES = 5  # points per lane-link polyline: enough to give turns a sensible length


# --------------------------------------------------------------------------------------------
# Roadnet
# --------------------------------------------------------------------------------------------


def intersection_id(x: int, y: int) -> str:
    return f"intersection_{x}_{y}"


def road_id(x: int, y: int, heading: int) -> str:
    return f"road_{x}_{y}_{heading}"


@dataclass(frozen=True)
class _GridGeometry:
    """Which grid cells hold intersections, and where they are."""

    rows: int
    cols: int
    road_length: float
    boundary_length: float

    def is_signalised(self, x: int, y: int) -> bool:
        return 1 <= x <= self.cols and 1 <= y <= self.rows

    def is_virtual(self, x: int, y: int) -> bool:
        # The boundary ring sits next to a grid row or column; corners have no road to them.
        on_side_columns = x in (0, self.cols + 1) and 1 <= y <= self.rows
        on_side_rows = y in (0, self.rows + 1) and 1 <= x <= self.cols
        return on_side_columns or on_side_rows

    def exists(self, x: int, y: int) -> bool:
        return self.is_signalised(x, y) or self.is_virtual(x, y)

    def cells(self) -> list[tuple[int, int]]:
        """Every intersection cell, x-major like the datasets' files."""
        return [
            (x, y)
            for x in range(self.cols + 2)
            for y in range(self.rows + 2)
            if self.exists(x, y)
        ]

    def _axis_coordinate(self, index: int, count: int) -> float:
        if index == 0:
            return -self.boundary_length
        if index == count + 1:
            return (count - 1) * self.road_length + self.boundary_length
        return (index - 1) * self.road_length

    def position(self, x: int, y: int) -> tuple[float, float]:
        return self._axis_coordinate(x, self.cols), self._axis_coordinate(y, self.rows)

    def neighbour(self, x: int, y: int, heading: int) -> tuple[int, int]:
        dx, dy = _GRID_STEP[heading]
        return x + dx, y + dy

    def has_road(self, x: int, y: int, heading: int) -> bool:
        """Whether a road leaves (x, y) in `heading`: boundary cells only connect to the grid."""
        to_x, to_y = self.neighbour(x, y, heading)
        both_exist = self.exists(x, y) and self.exists(to_x, to_y)
        return both_exist and (self.is_signalised(x, y) or self.is_signalised(to_x, to_y))

    def outgoing_headings(self, x: int, y: int) -> list[int]:
        return [h for h in (EAST, NORTH, WEST, SOUTH) if self.has_road(x, y, h)]

    def incoming_headings(self, x: int, y: int) -> list[int]:
        """Headings of the roads arriving at (x, y), i.e. travelling towards it."""
        return [
            h
            for h in (EAST, NORTH, WEST, SOUTH)
            if self.has_road(*self.neighbour(x, y, (h + 2) % 4), h)
        ]


def _point(xy: tuple[float, float]) -> dict[str, float]:
    return {"x": round(xy[0], 3), "y": round(xy[1], 3)}


def _right_normal(heading: int) -> tuple[float, float]:
    ux, uy = _UNIT_VECTOR[heading]
    return uy, -ux  # right-hand traffic: lanes lie to the right of the centre line


def _lane_endpoint(
    centre: tuple[float, float],
    heading: int,
    lane: int,
    lane_width: float,
    distance_along: float,
) -> tuple[float, float]:
    """Centre of `lane` of a road heading `heading`, `distance_along` from the box centre."""
    ux, uy = _UNIT_VECTOR[heading]
    nx, ny = _right_normal(heading)
    offset = (lane + 0.5) * lane_width
    return (
        centre[0] + ux * distance_along + nx * offset,
        centre[1] + uy * distance_along + ny * offset,
    )


def _lane_link_points(
    centre: tuple[float, float],
    in_heading: int,
    start_lane: int,
    out_heading: int,
    end_lane: int,
    lane_width: float,
    half_box: float,
) -> list[dict[str, float]]:
    """A polyline from the stop line of the incoming lane to the start of the outgoing lane.

    Turns follow a quadratic Bezier whose control point is where the two lane centre lines
    cross, so the path length (which the engine derives from these points) grows sensibly
    from right turns to left turns.
    """
    start = _lane_endpoint(centre, in_heading, start_lane, lane_width, -half_box)
    end = _lane_endpoint(centre, out_heading, end_lane, lane_width, half_box)
    if in_heading == out_heading:
        return [_point(start), _point(end)]
    # Perpendicular headings: the incoming line keeps one coordinate, the outgoing the other.
    if _UNIT_VECTOR[in_heading][1] == 0.0:
        control = (end[0], start[1])
    else:
        control = (start[0], end[1])
    points = []
    for i in range(_BEZIER_SAMPLES):
        t = i / (_BEZIER_SAMPLES - 1)
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t**2
        points.append(
            _point(
                (
                    a * start[0] + b * control[0] + c * end[0],
                    a * start[1] + b * control[1] + c * end[1],
                )
            )
        )
    return points


def _road(geometry: _GridGeometry, x: int, y: int, heading: int, lane_dicts: list) -> dict:
    end_x, end_y = geometry.neighbour(x, y, heading)
    return {
        "id": road_id(x, y, heading),
        "points": [_point(geometry.position(x, y)), _point(geometry.position(end_x, end_y))],
        "lanes": [dict(lane) for lane in lane_dicts],
        "startIntersection": intersection_id(x, y),
        "endIntersection": intersection_id(end_x, end_y),
    }


def _incoming_road_id(geometry: _GridGeometry, x: int, y: int, heading: int) -> str:
    """Id of the road arriving at (x, y) while travelling in `heading`."""
    from_x, from_y = geometry.neighbour(x, y, (heading + 2) % 4)
    return road_id(from_x, from_y, heading)


def _road_links(
    geometry: _GridGeometry,
    x: int,
    y: int,
    lanes: tuple[str, ...],
    lane_width: float,
    half_box: float,
) -> list[dict]:
    """All roadLinks of a signalised intersection: approaches E, N, W, S; movements L, S, R."""
    centre = geometry.position(x, y)
    outgoing = set(geometry.outgoing_headings(x, y))
    links = []
    for in_heading in geometry.incoming_headings(x, y):
        for letter, (link_type, quarter_turns) in MOVEMENTS.items():
            out_heading = (in_heading + quarter_turns) % 4
            if out_heading not in outgoing:
                continue
            serving_lanes = [i for i, movements in enumerate(lanes) if letter in movements]
            lane_links = [
                {
                    "startLaneIndex": start_lane,
                    "endLaneIndex": end_lane,
                    "points": _lane_link_points(
                        centre, in_heading, start_lane, out_heading, end_lane, lane_width, half_box
                    ),
                }
                for start_lane in serving_lanes
                for end_lane in range(len(lanes))
            ]
            links.append(
                {
                    "type": link_type,
                    "startRoad": _incoming_road_id(geometry, x, y, in_heading),
                    "endRoad": road_id(x, y, out_heading),
                    "direction": in_heading,
                    "laneLinks": lane_links,
                }
            )
    return links


def _four_phases(road_links: list[dict], phase_time: float) -> list[dict]:
    """[E-W straight, N-S straight, E-W left, N-S left], each with every right turn added.

    Rights never conflict with the protected movements of these phases in right-hand traffic,
    so they are allowed throughout; the engine inserts the yellow / all-red transitions itself.
    """
    east_west = (EAST, WEST)
    north_south = (NORTH, SOUTH)
    rights = [i for i, link in enumerate(road_links) if link["type"] == "turn_right"]

    def phase(link_type: str, headings: tuple[int, int]) -> dict:
        movers = [
            i
            for i, link in enumerate(road_links)
            if link["type"] == link_type and link["direction"] in headings
        ]
        return {"time": phase_time, "availableRoadLinks": sorted(movers + rights)}

    return [
        phase("go_straight", east_west),
        phase("go_straight", north_south),
        phase("turn_left", east_west),
        phase("turn_left", north_south),
    ]


def _intersection(
    geometry: _GridGeometry,
    x: int,
    y: int,
    lanes: tuple[str, ...],
    lane_width: float,
    intersection_width: float,
    phase_time: float,
) -> dict:
    incoming = [_incoming_road_id(geometry, x, y, h) for h in geometry.incoming_headings(x, y)]
    outgoing = [road_id(x, y, h) for h in geometry.outgoing_headings(x, y)]
    virtual = geometry.is_virtual(x, y)
    if virtual:
        road_links: list[dict] = []
        light = {"roadLinkIndices": [], "lightphases": []}
    else:
        road_links = _road_links(geometry, x, y, lanes, lane_width, intersection_width)
        light = {
            "roadLinkIndices": list(range(len(road_links))),
            "lightphases": _four_phases(road_links, phase_time),
        }
    return {
        "id": intersection_id(x, y),
        "point": _point(geometry.position(x, y)),
        "width": 0.0 if virtual else intersection_width,
        "roads": incoming + outgoing,
        "roadLinks": road_links,
        "trafficLight": light,
        "virtual": virtual,
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require_positive_int(source: str, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ScenarioError(source, field, value, "must be an integer >= 1")
    return int(value)


def _require_positive(source: str, field: str, value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ScenarioError(source, field, value, "must be a finite number > 0")
    return float(value)


def _require_non_negative(source: str, field: str, value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ScenarioError(source, field, value, "must be a finite number >= 0")
    return float(value)


def _is_sequence(value: Any) -> bool:
    # A bare string is a Sequence too, but it would silently iterate letter by letter.
    return isinstance(value, Sequence) and not isinstance(value, str)


def _validate_lanes(source: str, lanes: Any) -> tuple[str, ...]:
    def fail(reason: str) -> NoReturn:
        raise ScenarioError(source, "lanes", lanes, reason)

    if not _is_sequence(lanes) or len(lanes) == 0:
        fail("must be a non-empty sequence of lane strings, e.g. ('L', 'S', 'R') or ('LSR',)")
    for index, movements in enumerate(lanes):
        if not isinstance(movements, str) or not movements:
            fail(f"lane {index} must be a non-empty string of L/S/R")
        unknown = sorted(set(movements) - set(MOVEMENTS))
        if unknown:
            fail(f"lane {index} ({movements!r}) has unknown movements {unknown}; use only L, S, R")
        if len(set(movements)) != len(movements):
            fail(f"lane {index} ({movements!r}) repeats a movement")
    unserved = [letter for letter in MOVEMENTS if not any(letter in m for m in lanes)]
    if unserved:
        fail(f"no lane serves movement(s) {unserved}")
    return tuple(lanes)


def grid_roadnet(
    rows: int,
    cols: int,
    *,
    lanes: Sequence[str] = ("L", "S", "R"),
    road_length: float = 300.0,
    boundary_length: float | None = None,
    speed_limit: float = 11.111,
    lane_width: float = 3.5,
    intersection_width: float = 20.0,
    phase_time: float = 30,
    name: str = "grid",
) -> dict:
    """CityFlow roadnet dict for a `rows` x `cols` grid of signalised intersections.

    Neighbours are joined by two-way roads of `road_length` metres; the outer intersections also
    connect to virtual boundary intersections `boundary_length` metres away. `lanes` lists each
    road's lanes from lane 0 (leftmost) outward as strings of the movements the lane serves.
    Each signalised intersection gets the 4-phase plan [E-W straight, N-S straight, E-W left,
    N-S left] with right turns permitted in every phase, each lasting `phase_time` seconds.
    `intersection_width` is CityFlow's ``width``: the distance from the centre to the stop line.
    """
    source = f"<generated:{name}>"
    rows = _require_positive_int(source, "rows", rows)
    cols = _require_positive_int(source, "cols", cols)
    lanes = _validate_lanes(source, lanes)
    road_length = _require_positive(source, "road_length", road_length)
    boundary_length = _require_positive(
        source, "boundary_length", road_length if boundary_length is None else boundary_length
    )
    speed_limit = _require_positive(source, "speed_limit", speed_limit)
    lane_width = _require_positive(source, "lane_width", lane_width)
    intersection_width = _require_positive(source, "intersection_width", intersection_width)
    phase_time = _require_positive(source, "phase_time", phase_time)
    # Geometry checks: roads must be longer than the boxes they join, and the lanes of an
    # approach must fit inside the box, or lane-link polylines would start outside it.
    if road_length <= 2 * intersection_width:
        raise ScenarioError(
            source, "road_length", road_length,
            f"must exceed 2 * intersection_width = {2 * intersection_width}",
        )
    if boundary_length <= intersection_width:
        raise ScenarioError(
            source, "boundary_length", boundary_length,
            f"must exceed intersection_width = {intersection_width}",
        )
    if len(lanes) * lane_width > intersection_width:
        raise ScenarioError(
            source, "intersection_width", intersection_width,
            f"too narrow for {len(lanes)} lanes of width {lane_width}",
        )
    if float(phase_time).is_integer():
        phase_time = int(phase_time)  # keep the datasets' integer "time" values

    geometry = _GridGeometry(rows, cols, road_length, boundary_length)
    lane_dicts = [{"width": lane_width, "maxSpeed": speed_limit} for _ in lanes]
    cells = geometry.cells()
    intersections = [
        _intersection(geometry, x, y, lanes, lane_width, intersection_width, phase_time)
        for x, y in cells
    ]
    roads = [
        _road(geometry, x, y, heading, lane_dicts)
        for x, y in cells
        for heading in geometry.outgoing_headings(x, y)
    ]
    return {"intersections": intersections, "roads": roads}


# --------------------------------------------------------------------------------------------
# Road graph, shared by the demand generators
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Successor:
    link_type: str
    road: str


@dataclass(frozen=True)
class RoadGraph:
    """The parts of a roadnet the demand generators need, keyed by road id."""

    road_ids: tuple[str, ...]  # in file order, so iteration is deterministic
    length: dict[str, float]
    successors: dict[str, tuple[_Successor, ...]]  # roadLinks leaving each road's end
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
        successors: dict[str, list[_Successor]] = {rid: [] for rid in road_ids}
        for intersection in roadnet["intersections"]:
            for link in intersection.get("roadLinks", []):
                successors[link["startRoad"]].append(_Successor(link["type"], link["endRoad"]))
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


def _hops_to_exit(graph: RoadGraph) -> dict[str, int]:
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


# --------------------------------------------------------------------------------------------
# Demand
# --------------------------------------------------------------------------------------------


def _demand_error(field: str, value: Any, reason: str) -> ScenarioError:
    return ScenarioError(DEMAND_SOURCE, field, value, reason)


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise _demand_error("seed", seed, "must be an integer >= 0")
    return np.random.default_rng(int(seed))


def _validate_horizon(horizon: Any) -> int:
    whole = _is_number(horizon) and float(horizon).is_integer()
    if not whole or horizon <= 0:
        raise _demand_error("horizon", horizon, "must be a whole number of seconds > 0")
    return int(horizon)


def _validate_turn_ratios(turn_ratios: Any) -> tuple[float, float, float]:
    if not _is_sequence(turn_ratios) or len(turn_ratios) != 3:
        raise _demand_error("turn_ratios", turn_ratios, "must be 3 numbers (left, straight, right)")
    if not all(_is_number(r) and math.isfinite(r) and r >= 0 for r in turn_ratios):
        raise _demand_error("turn_ratios", turn_ratios, "must all be finite and >= 0")
    if abs(sum(turn_ratios) - 1.0) > 1e-6:
        total = sum(turn_ratios)
        raise _demand_error("turn_ratios", turn_ratios, f"must sum to 1 (sum is {total})")
    left, straight, right = (float(r) for r in turn_ratios)
    return left, straight, right


def _validate_road(graph: RoadGraph, field: str, value: Any) -> str:
    if value not in graph.length:
        raise _demand_error(field, value, "is not a road id of the roadnet")
    return value


def _flow_entry(route: Sequence[str], departure_step: int) -> dict:
    return {
        "vehicle": dict(DEFAULT_VEHICLE),
        "route": list(route),
        "interval": 1.0,
        "startTime": departure_step,
        "endTime": departure_step,
    }


def _flows_by_departure(departures: list[tuple[int, Sequence[str]]]) -> list[dict]:
    # Stable sort: vehicles departing in the same second keep their generation order.
    departures.sort(key=lambda item: item[0])
    return [_flow_entry(route, step) for step, route in departures]


def _poisson_departure_steps(rng: np.random.Generator, rate_per_second: np.ndarray) -> np.ndarray:
    """Integer departure steps of a Poisson process with piecewise-constant per-second rates.

    Counting the arrivals of a Poisson process in each one-second bin gives independent
    Poisson counts, so this is exact for rates that are constant within a second.
    """
    counts = rng.poisson(rate_per_second)
    return np.repeat(np.arange(len(rate_per_second)), counts)


def _turn_table(
    graph: RoadGraph, turn_ratios: tuple[float, float, float]
) -> dict[str, tuple[list[float], tuple[_Successor, ...]]]:
    """Per road: cumulative choice probabilities over its successors, computed once.

    Ratios are renormalised over the movements that exist at the road's end; where only
    zero-ratio movements exist (not in a full grid) they are chosen with equal probability.
    """
    ratio_of = dict(zip(("turn_left", "go_straight", "turn_right"), turn_ratios))
    table = {}
    for rid, options in graph.successors.items():
        if not options:
            continue
        weights = [ratio_of.get(s.link_type, 0.0) for s in options]
        if sum(weights) <= 0:
            weights = [1.0] * len(options)
        total = sum(weights)
        cumulative = list(np.cumsum(weights) / total)
        cumulative[-1] = 1.0  # guard against rounding leaving a gap below 1
        table[rid] = (cumulative, options)
    return table


def _random_walk_route(
    graph: RoadGraph,
    origin: str,
    turn_table: dict[str, tuple[list[float], tuple[_Successor, ...]]],
    max_roads: int,
    hops_to_exit: dict[str, int],
    rng: np.random.Generator,
) -> list[str]:
    """Drive from `origin`, picking turns from `turn_table`, until a road ends at the boundary.

    Past `max_roads` roads the walk goes straight (or, where there is no straight link, takes the
    link closest to an exit) so that every route terminates.
    """
    route = [origin]
    # A walk that is forced towards the exit needs at most one road per road in the network.
    hard_limit = max_roads + len(graph.road_ids)
    while route[-1] not in graph.exit_roads:
        if route[-1] not in turn_table or len(route) > hard_limit:
            raise ScenarioError(
                DEMAND_SOURCE, "roadnet", origin,
                f"route {route[:8]}... cannot reach a boundary exit road",
            )
        cumulative, options = turn_table[route[-1]]
        if len(route) >= max_roads:
            route.append(_forced_successor(options, hops_to_exit).road)
        else:
            route.append(options[bisect.bisect_right(cumulative, rng.random())].road)
    return route


def _forced_successor(options: Sequence[_Successor], hops_to_exit: dict[str, int]) -> _Successor:
    straight = [s for s in options if s.link_type == "go_straight" and s.road in hops_to_exit]
    if straight:
        return straight[0]
    return min(options, key=lambda s: hops_to_exit.get(s.road, math.inf))


def _routed_demand(
    graph: RoadGraph,
    rate_per_second: np.ndarray,  # the same profile at every origin
    turn_ratios: tuple[float, float, float],
    max_route_roads: int | None,
    rng: np.random.Generator,
) -> list[dict]:
    max_roads = graph.default_route_cap if max_route_roads is None else max_route_roads
    max_roads = _require_positive_int(DEMAND_SOURCE, "max_route_roads", max_roads)
    hops = _hops_to_exit(graph)
    table = _turn_table(graph, turn_ratios)
    departures: list[tuple[int, Sequence[str]]] = []
    for origin in graph.entry_roads:
        for step in _poisson_departure_steps(rng, rate_per_second):
            route = _random_walk_route(graph, origin, table, max_roads, hops, rng)
            departures.append((int(step), route))
    return _flows_by_departure(departures)


def uniform_demand(
    roadnet: Mapping,
    *,
    rate_per_origin: float,
    horizon: int,
    turn_ratios: Sequence[float] = DEFAULT_TURN_RATIOS,
    seed: int = 0,
    max_route_roads: int | None = None,
) -> list[dict]:
    """Poisson arrivals at `rate_per_origin` veh/h on every boundary entry road over `horizon` s.

    Each vehicle's route is a random walk choosing (left, straight, right) by `turn_ratios`
    among the movements that exist, until it reaches a road ending at a virtual intersection.
    Routes are capped at `max_route_roads` roads (default rows + cols + 4), after which the walk
    goes straight.
    """
    rate = _require_non_negative(DEMAND_SOURCE, "rate_per_origin", rate_per_origin)
    horizon = _validate_horizon(horizon)
    ratios = _validate_turn_ratios(turn_ratios)
    rng = _rng(seed)
    graph = road_graph(roadnet)
    per_second = np.full(horizon, rate / 3600.0)
    return _routed_demand(graph, per_second, ratios, max_route_roads, rng)


def peak_rate_profile(
    horizon: int,
    base_rate: float,
    peak_rate: float,
    peak_times: Sequence[float],
    peak_width_s: float,
) -> np.ndarray:
    """Arrival rate (veh/h) for each second: base plus Gaussian rush-hour peaks.

    `peak_width_s` is the Gaussian's standard deviation. Overlapping peaks combine by maximum,
    not sum, so `peak_rate` is the true highest rate. Rates are taken at each second's midpoint.
    """
    t = np.arange(horizon) + 0.5
    bump = np.zeros(horizon)
    for centre in peak_times:
        bump = np.maximum(bump, np.exp(-0.5 * ((t - centre) / peak_width_s) ** 2))
    return base_rate + (peak_rate - base_rate) * bump


def peak_demand(
    roadnet: Mapping,
    *,
    base_rate: float,
    peak_rate: float,
    horizon: int,
    peak_times: Sequence[float] | None = None,
    peak_width_s: float = 600.0,
    turn_ratios: Sequence[float] = DEFAULT_TURN_RATIOS,
    seed: int = 0,
    max_route_roads: int | None = None,
) -> list[dict]:
    """Like `uniform_demand`, with a time-varying rate per origin (see `peak_rate_profile`).

    `peak_times` (s) defaults to one peak at ``horizon / 2``.
    """
    base = _require_non_negative(DEMAND_SOURCE, "base_rate", base_rate)
    peak = _require_non_negative(DEMAND_SOURCE, "peak_rate", peak_rate)
    horizon = _validate_horizon(horizon)
    peak_times = (horizon / 2,) if peak_times is None else peak_times
    finite_times = _is_sequence(peak_times) and all(
        _is_number(t) and math.isfinite(t) for t in peak_times
    )
    if not finite_times:
        raise _demand_error("peak_times", peak_times, "must be a sequence of finite times (s)")
    width = _require_positive(DEMAND_SOURCE, "peak_width_s", peak_width_s)
    ratios = _validate_turn_ratios(turn_ratios)
    rng = _rng(seed)
    graph = road_graph(roadnet)
    per_second = peak_rate_profile(horizon, base, peak, peak_times, width) / 3600.0
    return _routed_demand(graph, per_second, ratios, max_route_roads, rng)


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


def od_demand(
    roadnet: Mapping,
    *,
    od_rates: Mapping[tuple[str, str], float],
    horizon: int,
    seed: int = 0,
) -> list[dict]:
    """Poisson arrivals for each (origin road, destination road) pair at its rate (veh/h).

    Every vehicle of a pair takes the pair's shortest route by length (`shortest_route`).
    """
    horizon = _validate_horizon(horizon)
    rng = _rng(seed)
    graph = road_graph(roadnet)
    if not isinstance(od_rates, Mapping):
        raise _demand_error("od_rates", od_rates, "must be a dict {(origin, destination): veh/h}")
    routes: list[tuple[list[str], float]] = []
    for pair, rate in od_rates.items():
        field = f"od_rates[{pair!r}]"
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise _demand_error(field, pair, "key must be an (origin, destination) road id pair")
        origin = _validate_road(graph, f"{field} origin", pair[0])
        destination = _validate_road(graph, f"{field} destination", pair[1])
        rate = _require_non_negative(DEMAND_SOURCE, field, rate)
        route = shortest_route(graph, origin, destination)
        if route is None:
            raise _demand_error(field, pair, "destination is unreachable from origin")
        routes.append((route, rate))
    departures: list[tuple[int, Sequence[str]]] = []
    for route, rate in routes:
        for step in _poisson_departure_steps(rng, np.full(horizon, rate / 3600.0)):
            departures.append((int(step), route))
    return _flows_by_departure(departures)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def write_scenario(directory: str | Path, roadnet: dict, flow: list[dict]) -> None:
    """Write roadnet.json and flow.json, through the loader's writer when it is available."""
    try:
        from envs.scenario.cityflow import write_cityflow
    except ModuleNotFoundError as error:
        if error.name != "envs.scenario.cityflow":
            raise  # the writer exists but is broken: do not hide that
        write_cityflow = None
    if write_cityflow is not None:
        write_cityflow(directory, roadnet, flow)
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "roadnet.json").write_text(json.dumps(roadnet))
    (directory / "flow.json").write_text(json.dumps(flow))


def main(argv: Sequence[str] | None = None) -> int:
    from envs.scenario.presets import PRESETS  # late import: presets imports this module

    parser = argparse.ArgumentParser(description="Write a generated CityFlow scenario.")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="directory for roadnet.json and flow.json")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        roadnet, flow, info = PRESETS[args.preset](seed=args.seed)
    except ScenarioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    write_scenario(args.out, roadnet, flow)
    signals = sum(1 for i in roadnet["intersections"] if not i["virtual"])
    print(
        f"{args.preset} (seed {args.seed}): {signals} signalised intersections, "
        f"{len(roadnet['intersections']) - signals} virtual, {len(roadnet['roads'])} roads, "
        f"{len(flow)} vehicles; generated in {elapsed:.2f} s; wrote {args.out}"
    )
    print(json.dumps(info, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
