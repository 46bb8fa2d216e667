"""The grid generator: a CityFlow roadnet dict for a rows x cols grid of signalised
intersections, with its roadLinks, laneLinks and 4-phase signal plans (conventions in
`envs.scenario.generate`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from envs.errors import ScenarioError
from envs.scenario.arg_checks import is_sequence, require_positive, require_positive_int
from envs.scenario.grid_geometry import (
    EAST,
    NORTH,
    SOUTH,
    WEST,
    GridGeometry,
    incoming_road_id,
    lane_link_points,
    grid_point,
    grid_road,
    intersection_id,
    road_id,
)

# Movement letter -> (CityFlow roadLink type, change of heading in quarter turns).
# U-turns (+2) are deliberately absent: the grid never generates them.
MOVEMENTS = {"L": ("turn_left", 1), "S": ("go_straight", 0), "R": ("turn_right", 3)}


def _road_links(
    geometry: GridGeometry,
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
                    "points": lane_link_points(
                        centre, in_heading, start_lane, out_heading, end_lane, lane_width, half_box
                    ),
                }
                for start_lane in serving_lanes
                for end_lane in range(len(lanes))
            ]
            links.append(
                {
                    "type": link_type,
                    "startRoad": incoming_road_id(geometry, x, y, in_heading),
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
    geometry: GridGeometry,
    x: int,
    y: int,
    lanes: tuple[str, ...],
    lane_width: float,
    intersection_width: float,
    phase_time: float,
) -> dict:
    incoming = [incoming_road_id(geometry, x, y, h) for h in geometry.incoming_headings(x, y)]
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
        "point": grid_point(geometry.position(x, y)),
        "width": 0.0 if virtual else intersection_width,
        "roads": incoming + outgoing,
        "roadLinks": road_links,
        "trafficLight": light,
        "virtual": virtual,
    }


def _validate_lanes(source: str, lanes: Any) -> tuple[str, ...]:
    def fail(reason: str) -> NoReturn:
        raise ScenarioError(source, "lanes", lanes, reason)

    if not is_sequence(lanes) or len(lanes) == 0:
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
    rows = require_positive_int(source, "rows", rows)
    cols = require_positive_int(source, "cols", cols)
    lanes = _validate_lanes(source, lanes)
    road_length = require_positive(source, "road_length", road_length)
    boundary_length = require_positive(
        source, "boundary_length", road_length if boundary_length is None else boundary_length
    )
    speed_limit = require_positive(source, "speed_limit", speed_limit)
    lane_width = require_positive(source, "lane_width", lane_width)
    intersection_width = require_positive(source, "intersection_width", intersection_width)
    phase_time = require_positive(source, "phase_time", phase_time)
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

    geometry = GridGeometry(rows, cols, road_length, boundary_length)
    lane_dicts = [{"width": lane_width, "maxSpeed": speed_limit} for _ in lanes]
    cells = geometry.cells()
    intersections = [
        _intersection(geometry, x, y, lanes, lane_width, intersection_width, phase_time)
        for x, y in cells
    ]
    roads = [
        grid_road(geometry, x, y, heading, lane_dicts)
        for x, y in cells
        for heading in geometry.outgoing_headings(x, y)
    ]
    return {"intersections": intersections, "roads": roads}
