"""Read, validate and write CityFlow-format scenarios (``roadnet.json`` + ``flow.json``).

The parsers turn the JSON dicts into the frozen dataclasses of `envs.scenario.spec`. Every problem
raises `ScenarioError(file, field, value, reason)` with a JSON path such as
``roads[12].lanes[1].maxSpeed`` (roadnet) or ``[17].route[2]`` (flow file, whose top level is a
list). Nothing is dropped, clamped or defaulted silently; the only defaults are CityFlow's own
(a flow without ``startTime`` starts at 0, one without ``endTime`` runs until the horizon).

`departure_steps` reproduces the vehicle generator of CityFlow (``Flow::nextStep``) so that the
number and timing of departures match what CityFlow would produce with a 1 s step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from envs.errors import ScenarioError
from envs.scenario.spec import (
    ROAD_LINK_TYPES,
    FlowFileSpec,
    FlowSpec,
    IntersectionSpec,
    LaneLinkSpec,
    LaneSpec,
    PhaseSpec,
    RoadLinkSpec,
    RoadnetSpec,
    RoadSpec,
    VehicleSpec,
    polyline_length,
)

ROADNET_FILE = "roadnet.json"
FLOW_FILE = "flow.json"

MISSING = "<missing>"  # the "value" shown for a required field that is absent

# CityFlow's default when a flow has no endTime: generate until the simulation stops.
NO_END_TIME = -1.0

# Vehicle fields in CityFlow's spelling -> (VehicleSpec attribute, zero allowed?). CityFlow requires
# all of them; a zero minGap is physically fine, every other quantity must be strictly positive.
_VEHICLE_FIELDS: dict[str, tuple[str, bool]] = {
    "length": ("length", False),
    "width": ("width", False),
    "maxPosAcc": ("max_pos_acc", False),
    "maxNegAcc": ("max_neg_acc", False),
    "usualPosAcc": ("usual_pos_acc", False),
    "usualNegAcc": ("usual_neg_acc", False),
    "minGap": ("min_gap", True),
    "maxSpeed": ("max_speed", False),
    "headwayTime": ("headway_time", False),
}

Point = tuple[float, float]


# --------------------------------------------------------------------------------------------
# JSON paths and typed field access
# --------------------------------------------------------------------------------------------


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _index_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


class _Fields:
    """Typed access to JSON members; every failure is a ScenarioError naming `source` and path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: Any, reason: str) -> NoReturn:
        raise ScenarioError(self.source, path, value, reason)

    def as_object(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, value, f"expected a JSON object, got {_json_type(value)}")
        return value

    def as_array(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, value, f"expected a JSON array, got {_json_type(value)}")
        return value

    def member(self, obj: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in obj:
            present = ", ".join(sorted(obj)) or "none"
            self.fail(_key_path(path, key), MISSING, f"missing required field (present: {present})")
        return obj[key]

    def object(self, obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        return self.as_object(self.member(obj, key, path), _key_path(path, key))

    def array(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
        return self.as_array(self.member(obj, key, path), _key_path(path, key))

    def string(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        value = self.member(obj, key, path)
        if not isinstance(value, str):
            self.fail(_key_path(path, key), value, f"expected a string, got {_json_type(value)}")
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: str) -> bool:
        value = self.member(obj, key, path)
        if not isinstance(value, bool):
            self.fail(_key_path(path, key), value, f"expected true/false, got {_json_type(value)}")
        return value

    def as_number(self, value: Any, path: str) -> float:
        # bool is an int subclass in Python, but `true` is not a number in JSON.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, value, f"expected a number, got {_json_type(value)}")
        # Python's json accepts NaN/Infinity literals; they would poison every later computation.
        if not math.isfinite(value):
            self.fail(path, value, "expected a finite number")
        return float(value)

    def number(self, obj: Mapping[str, Any], key: str, path: str) -> float:
        return self.as_number(self.member(obj, key, path), _key_path(path, key))

    def positive(self, obj: Mapping[str, Any], key: str, path: str) -> float:
        value = self.number(obj, key, path)
        if value <= 0:
            self.fail(_key_path(path, key), obj[key], "must be > 0")
        return value

    def non_negative(self, obj: Mapping[str, Any], key: str, path: str) -> float:
        value = self.number(obj, key, path)
        if value < 0:
            self.fail(_key_path(path, key), obj[key], "must be >= 0")
        return value

    def as_index(self, value: Any, path: str, size: int, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, value, f"expected an integer index, got {_json_type(value)}")
        if not 0 <= value < size:
            self.fail(path, value, f"index out of range: {what} has {size} (valid 0..{size - 1})")
        return value

    def index(self, obj: Mapping[str, Any], key: str, path: str, size: int, what: str) -> int:
        return self.as_index(self.member(obj, key, path), _key_path(path, key), size, what)

    def point(self, value: Any, path: str) -> Point:
        obj = self.as_object(value, path)
        return (self.number(obj, "x", path), self.number(obj, "y", path))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _read_json(path: str | Path) -> Any:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "<file>", source, "file not found") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(source, "<json>", err.start, f"not UTF-8 text: {err.reason}") from None
    except OSError as err:
        raise ScenarioError(source, "<file>", source, f"cannot read: {err.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        excerpt = text[max(0, err.pos - 30) : err.pos + 30]
        reason = (
            f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno} (char {err.pos})"
        )
        raise ScenarioError(source, "<json>", excerpt, reason) from None


def load_roadnet(path: str | Path) -> RoadnetSpec:
    return parse_roadnet(_read_json(path), str(path))


def load_flow(path: str | Path, roadnet: RoadnetSpec) -> FlowFileSpec:
    return parse_flow(_read_json(path), str(path), roadnet)


def write_cityflow(
    directory: str | Path, roadnet_obj: Mapping[str, Any], flow_obj: Sequence[Any]
) -> tuple[Path, Path]:
    """Write ``roadnet.json`` and ``flow.json`` into `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    roadnet_path = directory / ROADNET_FILE
    flow_path = directory / FLOW_FILE
    with roadnet_path.open("w", encoding="utf-8") as out:
        json.dump(roadnet_obj, out)
    with flow_path.open("w", encoding="utf-8") as out:
        json.dump(flow_obj, out)
    return roadnet_path, flow_path


# --------------------------------------------------------------------------------------------
# Roadnet
# --------------------------------------------------------------------------------------------


def parse_roadnet(obj: Any, source: str) -> RoadnetSpec:
    fields = _Fields(source)
    root = fields.as_object(obj, "<root>")
    raw_intersections = fields.array(root, "intersections", "")
    raw_roads = fields.array(root, "roads", "")
    # Roads name their end intersections and intersections name their roads, so the ids of the
    # intersections are collected first, then roads are parsed, then the intersections' links.
    intersection_ids = _intersection_ids(fields, raw_intersections)
    roads = _parse_roads(fields, raw_roads, intersection_ids)
    roads_by_id = {road.id: road for road in roads}
    intersections = tuple(
        _parse_intersection(fields, raw, f"intersections[{i}]", roads_by_id)
        for i, raw in enumerate(raw_intersections)
    )
    return RoadnetSpec(source=source, roads=roads, intersections=intersections)


def _intersection_ids(fields: _Fields, raw_intersections: list[Any]) -> set[str]:
    ids: dict[str, int] = {}
    for i, raw in enumerate(raw_intersections):
        path = f"intersections[{i}]"
        ident = fields.string(fields.as_object(raw, path), "id", path)
        if ident in ids:
            fields.fail(
                f"{path}.id", ident, f"duplicate intersection id (also intersections[{ids[ident]}])"
            )
        ids[ident] = i
    return set(ids)


def _parse_roads(
    fields: _Fields, raw_roads: list[Any], intersection_ids: set[str]
) -> tuple[RoadSpec, ...]:
    first_index: dict[str, int] = {}
    roads = []
    for i, raw in enumerate(raw_roads):
        path = f"roads[{i}]"
        road = _parse_road(fields, raw, path, intersection_ids)
        if road.id in first_index:
            fields.fail(
                f"{path}.id", road.id, f"duplicate road id (also roads[{first_index[road.id]}])"
            )
        first_index[road.id] = i
        roads.append(road)
    return tuple(roads)


def _parse_road(fields: _Fields, raw: Any, path: str, intersection_ids: set[str]) -> RoadSpec:
    obj = fields.as_object(raw, path)
    ident = fields.string(obj, "id", path)
    endpoints = []
    for key in ("startIntersection", "endIntersection"):
        name = fields.string(obj, key, path)
        if name not in intersection_ids:
            fields.fail(_key_path(path, key), name, "names an unknown intersection")
        endpoints.append(name)
    points = _parse_road_points(fields, obj, path)
    raw_lanes = fields.array(obj, "lanes", path)
    if not raw_lanes:
        fields.fail(f"{path}.lanes", raw_lanes, "a road needs at least one lane")
    lanes = tuple(
        _parse_lane(fields, lane, f"{path}.lanes[{k}]") for k, lane in enumerate(raw_lanes)
    )
    return RoadSpec(ident, endpoints[0], endpoints[1], points, lanes)


def _parse_road_points(fields: _Fields, obj: Mapping[str, Any], path: str) -> tuple[Point, ...]:
    raw_points = fields.array(obj, "points", path)
    points_path = f"{path}.points"
    if len(raw_points) < 2:
        fields.fail(points_path, raw_points, "a road needs at least 2 points")
    points = tuple(fields.point(p, f"{points_path}[{k}]") for k, p in enumerate(raw_points))
    if polyline_length(points) <= 0:
        fields.fail(points_path, raw_points, "road has zero length (all points coincide)")
    return points


def _parse_lane(fields: _Fields, raw: Any, path: str) -> LaneSpec:
    obj = fields.as_object(raw, path)
    return LaneSpec(
        width=fields.positive(obj, "width", path), max_speed=fields.positive(obj, "maxSpeed", path)
    )


def _parse_intersection(
    fields: _Fields, raw: Any, path: str, roads_by_id: Mapping[str, RoadSpec]
) -> IntersectionSpec:
    obj = fields.as_object(raw, path)
    ident = fields.string(obj, "id", path)
    point = fields.point(fields.member(obj, "point", path), f"{path}.point")
    width = fields.non_negative(obj, "width", path)
    virtual = fields.boolean(obj, "virtual", path)
    # The intersection's own "roads" list is redundant with the roads' start/endIntersection
    # (CityFlow derives connectivity from the roads too), so it is not read.
    raw_links = fields.array(obj, "roadLinks", path)
    road_links = tuple(
        _parse_road_link(fields, link, f"{path}.roadLinks[{k}]", ident, roads_by_id)
        for k, link in enumerate(raw_links)
    )
    # Virtual intersections are boundaries where vehicles enter and leave: no signal to run, and
    # CityFlow itself never reads their trafficLight block.
    phases = () if virtual else _parse_phases(fields, obj, path, len(road_links))
    return IntersectionSpec(ident, point, virtual, width, road_links, phases)


def _parse_road_link(
    fields: _Fields,
    raw: Any,
    path: str,
    intersection_id: str,
    roads_by_id: Mapping[str, RoadSpec],
) -> RoadLinkSpec:
    obj = fields.as_object(raw, path)
    link_type = fields.string(obj, "type", path)
    if link_type not in ROAD_LINK_TYPES:
        fields.fail(
            f"{path}.type", link_type, f"unknown roadLink type; expected one of {ROAD_LINK_TYPES}"
        )
    start_road = _linked_road(fields, obj, "startRoad", path, roads_by_id)
    end_road = _linked_road(fields, obj, "endRoad", path, roads_by_id)
    if start_road.end_intersection != intersection_id:
        fields.fail(
            f"{path}.startRoad",
            start_road.id,
            f"road ends at {start_road.end_intersection!r}, "
            f"not at this intersection {intersection_id!r}",
        )
    if end_road.start_intersection != intersection_id:
        fields.fail(
            f"{path}.endRoad",
            end_road.id,
            f"road starts at {end_road.start_intersection!r}, "
            f"not at this intersection {intersection_id!r}",
        )
    raw_lane_links = fields.array(obj, "laneLinks", path)
    if not raw_lane_links:
        fields.fail(f"{path}.laneLinks", raw_lane_links, "a roadLink needs at least one laneLink")
    lane_links = tuple(
        _parse_lane_link(fields, lane_link, f"{path}.laneLinks[{k}]", start_road, end_road)
        for k, lane_link in enumerate(raw_lane_links)
    )
    return RoadLinkSpec(link_type, start_road.id, end_road.id, lane_links)


def _linked_road(
    fields: _Fields,
    obj: Mapping[str, Any],
    key: str,
    path: str,
    roads_by_id: Mapping[str, RoadSpec],
) -> RoadSpec:
    name = fields.string(obj, key, path)
    road = roads_by_id.get(name)
    if road is None:
        fields.fail(_key_path(path, key), name, "names an unknown road")
    return road


def _parse_lane_link(
    fields: _Fields, raw: Any, path: str, start_road: RoadSpec, end_road: RoadSpec
) -> LaneLinkSpec:
    obj = fields.as_object(raw, path)
    start_lane = fields.index(
        obj, "startLaneIndex", path, len(start_road.lanes), f"road {start_road.id!r} lanes"
    )
    end_lane = fields.index(
        obj, "endLaneIndex", path, len(end_road.lanes), f"road {end_road.id!r} lanes"
    )
    raw_points = fields.as_array(obj.get("points", []), f"{path}.points")
    points = tuple(fields.point(p, f"{path}.points[{k}]") for k, p in enumerate(raw_points))
    if len(points) >= 2:
        length = polyline_length(points)
    else:
        # No drawn path through the junction: approximate it by the straight gap between the end of
        # the incoming road and the start of the outgoing one (road centre lines, not lane offsets).
        length = math.dist(start_road.points[-1], end_road.points[0])
    return LaneLinkSpec(start_lane=start_lane, end_lane=end_lane, length=float(length))


def _parse_phases(
    fields: _Fields, obj: Mapping[str, Any], path: str, road_link_count: int
) -> tuple[PhaseSpec, ...]:
    light = obj.get("trafficLight")
    light_path = f"{path}.trafficLight"
    if light is None:
        if road_link_count:
            fields.fail(
                light_path,
                MISSING,
                "a non-virtual intersection with roadLinks needs a trafficLight",
            )
        return ()
    light = fields.as_object(light, light_path)
    raw_phases = fields.array(light, "lightphases", light_path)
    if road_link_count and not raw_phases:
        fields.fail(
            f"{light_path}.lightphases",
            raw_phases,
            "a non-virtual intersection with roadLinks needs at least one light phase",
        )
    return tuple(
        _parse_phase(fields, raw, f"{light_path}.lightphases[{k}]", road_link_count)
        for k, raw in enumerate(raw_phases)
    )


def _parse_phase(fields: _Fields, raw: Any, path: str, road_link_count: int) -> PhaseSpec:
    obj = fields.as_object(raw, path)
    duration = fields.positive(obj, "time", path)
    raw_links = fields.array(obj, "availableRoadLinks", path)
    links: list[int] = []
    for k, value in enumerate(raw_links):
        link_path = f"{path}.availableRoadLinks[{k}]"
        index = fields.as_index(value, link_path, road_link_count, "the intersection's roadLinks")
        if index in links:
            fields.fail(link_path, index, "roadLink listed twice in the same phase")
        links.append(index)
    return PhaseSpec(duration=duration, road_links=tuple(links))


# --------------------------------------------------------------------------------------------
# Flow file
# --------------------------------------------------------------------------------------------


@dataclass
class _RouteChecker:
    """Checks routes against a roadnet; each distinct route is checked once (flows repeat them)."""

    fields: _Fields
    roads_by_id: dict[str, RoadSpec]
    # (from road, to road) -> (lanes of `from` that have a lane link, lanes of `to` reached)
    turn_lanes: dict[tuple[str, str], tuple[frozenset[int], frozenset[int]]]
    known_good: set[tuple[str, ...]] = field(default_factory=set)

    @classmethod
    def for_roadnet(cls, fields: _Fields, roadnet: RoadnetSpec) -> _RouteChecker:
        start_lanes: dict[tuple[str, str], set[int]] = {}
        end_lanes: dict[tuple[str, str], set[int]] = {}
        for intersection in roadnet.intersections:
            for link in intersection.road_links:
                key = (link.start_road, link.end_road)
                start_lanes.setdefault(key, set()).update(ll.start_lane for ll in link.lane_links)
                end_lanes.setdefault(key, set()).update(ll.end_lane for ll in link.lane_links)
        turn_lanes = {
            key: (frozenset(start_lanes[key]), frozenset(end_lanes[key])) for key in start_lanes
        }
        return cls(fields, {road.id: road for road in roadnet.roads}, turn_lanes)

    def check(self, route: tuple[str, ...], path: str) -> None:
        if route in self.known_good:
            return
        for k, name in enumerate(route):
            if name not in self.roads_by_id:
                self.fields.fail(f"{path}[{k}]", name, "route names an unknown road")
        for k in range(1, len(route)):
            self._check_turn(route[k - 1], route[k], f"{path}[{k}]")
        for k in range(2, len(route)):
            self._check_lanes_continue(route[k - 2], route[k - 1], route[k], f"{path}[{k}]")
        self.known_good.add(route)

    def _check_turn(self, from_road: str, to_road: str, path: str) -> None:
        junction = self.roads_by_id[from_road].end_intersection
        to_start = self.roads_by_id[to_road].start_intersection
        if junction != to_start:
            self.fields.fail(
                path,
                to_road,
                f"not connected: previous road {from_road!r} ends at {junction!r} "
                f"but this road starts at {to_start!r}",
            )
        if (from_road, to_road) not in self.turn_lanes:
            self.fields.fail(
                path,
                to_road,
                f"intersection {junction!r} has no roadLink from {from_road!r} to {to_road!r}",
            )

    def _check_lanes_continue(self, road_a: str, road_b: str, road_c: str, path: str) -> None:
        # A vehicle enters road_b on one of the lanes reached from road_a; without lane changes it
        # can only continue to road_c if at least one of those lanes has a lane link to road_c.
        _, entered = self.turn_lanes[(road_a, road_b)]
        leaving, _ = self.turn_lanes[(road_b, road_c)]
        if not entered & leaving:
            self.fields.fail(
                path,
                road_c,
                f"no lane of {road_b!r} entered from {road_a!r} (lanes {sorted(entered)}) "
                f"has a lane link to {road_c!r} (needs one of lanes {sorted(leaving)})",
            )


def parse_flow(obj: Any, source: str, roadnet: RoadnetSpec) -> FlowFileSpec:
    fields = _Fields(source)
    entries = fields.as_array(obj, "<root>")
    if not entries:
        fields.fail("<root>", entries, "flow file has no flows")
    routes = _RouteChecker.for_roadnet(fields, roadnet)
    flows = tuple(_parse_flow_entry(fields, raw, i, routes) for i, raw in enumerate(entries))
    return FlowFileSpec(source=source, flows=flows)


def _parse_flow_entry(fields: _Fields, raw: Any, index: int, routes: _RouteChecker) -> FlowSpec:
    path = f"[{index}]"
    obj = fields.as_object(raw, path)
    vehicle = _parse_vehicle(fields, fields.object(obj, "vehicle", path), f"{path}.vehicle")
    route = _parse_route(fields, obj, path)
    routes.check(route, f"{path}.route")
    interval = fields.positive(obj, "interval", path)
    start_time, end_time = _parse_time_window(fields, obj, path)
    return FlowSpec(index, vehicle, route, interval, start_time, end_time)


def _parse_vehicle(fields: _Fields, obj: Mapping[str, Any], path: str) -> VehicleSpec:
    values = {}
    for key, (attribute, zero_allowed) in _VEHICLE_FIELDS.items():
        read = fields.non_negative if zero_allowed else fields.positive
        values[attribute] = read(obj, key, path)
    return VehicleSpec(**values)


def _parse_route(fields: _Fields, obj: Mapping[str, Any], path: str) -> tuple[str, ...]:
    raw_route = fields.array(obj, "route", path)
    if not raw_route:
        fields.fail(f"{path}.route", raw_route, "route is empty")
    for k, name in enumerate(raw_route):
        if not isinstance(name, str):
            fields.fail(
                f"{path}.route[{k}]", name, f"expected a road id string, got {_json_type(name)}"
            )
    return tuple(raw_route)


def _parse_time_window(fields: _Fields, obj: Mapping[str, Any], path: str) -> tuple[float, float]:
    # CityFlow's defaults: startTime 0, endTime -1 (no end; departure_steps then needs a horizon).
    start = fields.number(obj, "startTime", path) if "startTime" in obj else 0.0
    end = fields.number(obj, "endTime", path) if "endTime" in obj else NO_END_TIME
    if start < 0:
        # CityFlow would silently start such a flow at 0; make the author say so.
        fields.fail(f"{path}.startTime", obj["startTime"], "must be >= 0")
    if end == NO_END_TIME:
        return start, end
    if end < start:
        fields.fail(
            f"{path}.endTime",
            obj["endTime"],
            f"endTime < startTime ({start:g}) (only -1 means 'no end')",
        )
    if math.ceil(start) > math.floor(end):
        # The generator only runs at whole seconds; such a flow would create no vehicle at all.
        fields.fail(
            f"{path}.endTime",
            obj["endTime"],
            f"no whole simulation second in [startTime={start:g}, endTime={end:g}]: "
            "flow would create no vehicle",
        )
    return start, end


# --------------------------------------------------------------------------------------------
# Departures (CityFlow Flow::nextStep emulation)
# --------------------------------------------------------------------------------------------

STEP_SECONDS = 1.0
_EXACT_FLOAT_LIMIT = 2**53  # integers below this are exact in a float64
_INT64_SAFE_LIMIT = 2**62


def departure_steps(
    flow: FlowSpec, horizon: int | None = None, *, source: str = "<flow>"
) -> np.ndarray:
    """Steps (0-based, 1 s each) at which CityFlow would create this flow's vehicles.

    CityFlow keeps an accumulator that starts at `interval`; at each step whose time t satisfies
    ``startTime <= t <= endTime`` (or no end when endTime == -1) it emits a vehicle while the
    accumulator >= interval (subtracting interval each time), then adds the step length. Steps
    >= `horizon` are excluded. Several vehicles can share a step when interval < 1.
    """
    first, last = _active_steps(flow, horizon, source)
    if last < first:
        return np.empty(0, dtype=np.int64)
    if first == last:
        # One active step (the per-vehicle form startTime == endTime): the accumulator starts full,
        # so exactly one vehicle leaves, whatever the interval.
        return np.array([first], dtype=np.int64)
    steps = _periodic_steps_exact(flow.interval, first, last)
    if steps is None:
        steps = _replay_accumulator(flow.interval, first, last)
    return steps


def _active_steps(flow: FlowSpec, horizon: int | None, source: str) -> tuple[int, int]:
    """First and last step (inclusive) at which the generator runs; last < first when none."""
    if horizon is not None and (
        isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer))
    ):
        raise ScenarioError(
            source, "horizon", horizon, "horizon must be an integer number of steps"
        )
    if flow.end_time == NO_END_TIME:
        if horizon is None:
            raise ScenarioError(
                source,
                f"[{flow.index}].endTime",
                flow.end_time,
                "endTime -1 (no end) needs a horizon to bound the departures",
            )
        last = int(horizon) - 1
    else:
        last = math.floor(flow.end_time)
        if horizon is not None:
            last = min(last, int(horizon) - 1)
    # The generator's clock starts at 0 and ticks whole seconds; it is active from startTime on.
    first = max(0, math.ceil(flow.start_time))
    return first, last


def _periodic_steps_exact(interval: float, first: int, last: int) -> np.ndarray | None:
    """Closed form of the accumulator, or None when float rounding could make it differ.

    In exact arithmetic vehicle n (0-based) leaves at active step ceil(n * interval). A float
    interval is num/den with den a power of two; while num + den < 2**53 every accumulator value
    CityFlow computes (a multiple of 1/den below interval + 1) is exact, so integer arithmetic on
    num/den reproduces it bit for bit.
    """
    num, den = interval.as_integer_ratio()
    if num + den >= _EXACT_FLOAT_LIMIT:
        return None
    span = last - first
    count = span * den // num + 1  # n with ceil(n * num / den) <= span
    if count * num >= _INT64_SAFE_LIMIT:
        return None
    n = np.arange(count, dtype=np.int64)
    return first + (-((-n * num) // den))  # ceil division in integers


def _replay_accumulator(interval: float, first: int, last: int) -> np.ndarray:
    """Step-by-step float replay of CityFlow's generator (used when the closed form may round)."""
    steps: list[int] = []
    accumulator = interval
    for step in range(first, last + 1):
        while accumulator >= interval:
            steps.append(step)
            accumulator -= interval
        accumulator += STEP_SECONDS
    return np.asarray(steps, dtype=np.int64)


def count_departures(
    flows: Iterable[FlowSpec], horizon: int | None = None, *, source: str = "<flow>"
) -> int:
    """Total vehicles the flows create before `horizon` (all of them when None)."""
    return sum(len(departure_steps(flow, horizon, source=source)) for flow in flows)
