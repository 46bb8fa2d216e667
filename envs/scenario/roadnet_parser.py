"""Parse and check a CityFlow ``roadnet.json`` dict into a `RoadnetSpec`: roads, lanes,
intersections, roadLinks, laneLinks and light phases, each checked against the others."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from envs.scenario.json_fields import MISSING, Point, JsonFields, json_type, key_path
from envs.scenario.spec import (
    ROAD_LINK_TYPES,
    IntersectionSpec,
    LaneLinkSpec,
    LaneSpec,
    PhaseSpec,
    RoadLinkSpec,
    RoadnetSpec,
    RoadSpec,
    polyline_length,
)

# Lanes on one road: real roads have a handful (the CityFlow datasets at most 3); per-lane tables
# are padded to the widest road, so one road with thousands would allocate for every road.
MAX_LANES_PER_ROAD = 32


PERMISSIVE_KEY = "permissiveRoadLinks"  # optional in a light phase: green links that yield
# optional in an intersection: [minor, major] roadLink pairs, the minor link giving way to the
# major one whenever the minor is a permissive green (SUMO's right of way, from the importer)
YIELD_KEY = "yieldTo"

# The keys each object may carry: CityFlow's documented roadnet format (which is also exactly the
# set the datasets under shared/datasets use; `direction` and `roadLinkIndices` are documented but
# not read, an intersection's `roads` is only checked) plus gridlight's two extensions. A near miss
# of one is refused as a misspelling (CityFlow would silently ignore it); other keys are ignored,
# as CityFlow ignores them.
_ROOT_KEYS = frozenset({"intersections", "roads"})
_ROAD_KEYS = frozenset({"id", "startIntersection", "endIntersection", "points", "lanes"})
_LANE_KEYS = frozenset({"width", "maxSpeed"})
_INTERSECTION_KEYS = frozenset(
    {"id", "point", "width", "roads", "roadLinks", "trafficLight", "virtual", YIELD_KEY}
)
_ROAD_LINK_KEYS = frozenset({"type", "startRoad", "endRoad", "direction", "laneLinks"})
_LANE_LINK_KEYS = frozenset({"startLaneIndex", "endLaneIndex", "points"})
_TRAFFIC_LIGHT_KEYS = frozenset({"roadLinkIndices", "lightphases"})
_PHASE_KEYS = frozenset({"time", "availableRoadLinks", PERMISSIVE_KEY})


def parse_roadnet(obj: Any, source: str) -> RoadnetSpec:
    fields = JsonFields(source)
    root = fields.as_object(obj, "<root>")
    fields.refuse_misspelled_keys(root, _ROOT_KEYS, "")
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


def _intersection_ids(fields: JsonFields, raw_intersections: list[Any]) -> set[str]:
    ids: dict[str, int] = {}
    for i, raw in enumerate(raw_intersections):
        path = f"intersections[{i}]"
        ident = fields.identifier(fields.as_object(raw, path), "id", path)
        if ident in ids:
            fields.fail(
                f"{path}.id", ident, f"duplicate intersection id (also intersections[{ids[ident]}])"
            )
        ids[ident] = i
    return set(ids)


def _parse_roads(
    fields: JsonFields, raw_roads: list[Any], intersection_ids: set[str]
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


def _parse_road(fields: JsonFields, raw: Any, path: str, intersection_ids: set[str]) -> RoadSpec:
    obj = fields.as_object(raw, path)
    fields.refuse_misspelled_keys(obj, _ROAD_KEYS, path)
    ident = fields.identifier(obj, "id", path)
    endpoints = []
    for key in ("startIntersection", "endIntersection"):
        name = fields.string(obj, key, path)
        if name not in intersection_ids:
            fields.fail(key_path(path, key), name, "names an unknown intersection")
        endpoints.append(name)
    if endpoints[0] == endpoints[1]:
        # a road is one approach of its end intersection and one exit of its start: a loop would
        # be both at once, which the approach and movement tables cannot hold
        fields.fail(f"{path}.endIntersection", endpoints[1],
                    "road starts and ends at the same intersection")
    points = _parse_road_points(fields, obj, path)
    raw_lanes = fields.array(obj, "lanes", path)
    if not raw_lanes:
        fields.fail(f"{path}.lanes", raw_lanes, "a road needs at least one lane")
    if len(raw_lanes) > MAX_LANES_PER_ROAD:
        fields.fail(f"{path}.lanes", f"<{len(raw_lanes)} lanes>",
                    f"more than {MAX_LANES_PER_ROAD} lanes on one road (gridlight's limit: per-lane "
                    "tables are padded to the widest road)")
    lanes = tuple(
        _parse_lane(fields, lane, f"{path}.lanes[{k}]") for k, lane in enumerate(raw_lanes)
    )
    return RoadSpec(ident, endpoints[0], endpoints[1], points, lanes)


def _parse_road_points(fields: JsonFields, obj: Mapping[str, Any], path: str) -> tuple[Point, ...]:
    raw_points = fields.array(obj, "points", path)
    points_path = f"{path}.points"
    if len(raw_points) < 2:
        fields.fail(points_path, raw_points, "a road needs at least 2 points")
    points = tuple(fields.point(p, f"{points_path}[{k}]") for k, p in enumerate(raw_points))
    if polyline_length(points) <= 0:
        fields.fail(points_path, raw_points, "road has zero length (all points coincide)")
    return points


def _parse_lane(fields: JsonFields, raw: Any, path: str) -> LaneSpec:
    obj = fields.as_object(raw, path)
    fields.refuse_misspelled_keys(obj, _LANE_KEYS, path)
    return LaneSpec(
        width=fields.positive(obj, "width", path), max_speed=fields.positive(obj, "maxSpeed", path)
    )


def _parse_intersection(
    fields: JsonFields, raw: Any, path: str, roads_by_id: Mapping[str, RoadSpec]
) -> IntersectionSpec:
    obj = fields.as_object(raw, path)
    fields.refuse_misspelled_keys(obj, _INTERSECTION_KEYS, path)
    ident = fields.string(obj, "id", path)
    point = fields.point(fields.member(obj, "point", path), f"{path}.point")
    width = fields.non_negative(obj, "width", path)
    virtual = fields.boolean(obj, "virtual", path)
    # The intersection's own "roads" list is redundant with the roads' start/endIntersection, which
    # gridlight derives connectivity from; CityFlow refuses a name in it that is no road ("No such
    # road"), so it is checked where present (the SUMO importer writes it empty).
    _check_listed_roads(fields, obj, path, roads_by_id)
    raw_links = fields.array(obj, "roadLinks", path)
    road_links = tuple(
        _parse_road_link(fields, link, f"{path}.roadLinks[{k}]", ident, roads_by_id)
        for k, link in enumerate(raw_links)
    )
    # a second roadLink for the same turn would be merged with the first in the movement tables,
    # whatever phases name it
    repeat = _first_repeat([(link.start_road, link.end_road) for link in road_links])
    if repeat is not None:
        k, first = repeat
        fields.fail(f"{path}.roadLinks[{k}].endRoad", road_links[k].end_road,
                    f"duplicate roadLink from {road_links[k].start_road!r} (also roadLinks[{first}])")
    # every non-virtual intersection is an agent: without a roadLink it has no phase that greens one, so
    # no action (the env's action spaces cannot hold an agent with none, and its export no fallback plan)
    if not virtual and not road_links:
        fields.fail(f"{path}.roadLinks", raw_links,
                    "a non-virtual intersection without roadLinks has nothing to signal (an agent with no phase "
                    "to command): mark it virtual (a boundary, where routes may start and end)")
    # Virtual intersections are boundaries where vehicles enter and leave: no signal to run, and
    # CityFlow itself never reads their trafficLight block.
    phases = () if virtual else _parse_phases(fields, obj, path, len(road_links))
    if virtual and obj.get(YIELD_KEY):
        fields.fail(f"{path}.{YIELD_KEY}", obj[YIELD_KEY],
                    "a virtual intersection runs no movements, so none can yield")
    yields = _parse_yields(fields, obj, path, len(road_links))
    return IntersectionSpec(ident, point, virtual, width, road_links, phases, yields)


def _check_listed_roads(fields: JsonFields, obj: Mapping[str, Any], path: str,
                        roads_by_id: Mapping[str, RoadSpec]) -> None:
    for k, name in enumerate(fields.as_array(obj.get("roads", []), f"{path}.roads")):
        if not isinstance(name, str):
            fields.fail(f"{path}.roads[{k}]", name, f"expected a road id string, got {json_type(name)}")
        if name not in roads_by_id:
            fields.fail(f"{path}.roads[{k}]", name, "names an unknown road")


def _parse_yields(fields: JsonFields, obj: Mapping[str, Any], path: str, road_link_count: int
                  ) -> tuple[tuple[int, int], ...]:
    """gridlight's extension (written by the SUMO importer; CityFlow ignores the key)."""
    pairs: list[tuple[int, int]] = []
    raw_pairs = fields.as_array(obj.get(YIELD_KEY, []), f"{path}.{YIELD_KEY}")
    for k, raw in enumerate(raw_pairs):
        pair_path = f"{path}.{YIELD_KEY}[{k}]"
        pair = fields.as_array(raw, pair_path)
        if len(pair) != 2:
            fields.fail(pair_path, raw, "a yield is a [minor, major] pair of roadLink indices")
        minor, major = (fields.as_index(value, f"{pair_path}[{n}]", road_link_count,
                                        "the intersection's roadLinks")
                        for n, value in enumerate(pair))
        if minor == major:
            fields.fail(pair_path, raw, "a roadLink cannot yield to itself")
        if (minor, major) in pairs:
            fields.fail(pair_path, raw, "yield pair listed twice")
        pairs.append((minor, major))
    return tuple(pairs)


def _parse_road_link(
    fields: JsonFields,
    raw: Any,
    path: str,
    intersection_id: str,
    roads_by_id: Mapping[str, RoadSpec],
) -> RoadLinkSpec:
    obj = fields.as_object(raw, path)
    fields.refuse_misspelled_keys(obj, _ROAD_LINK_KEYS, path)
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
    # the network keeps one path per lane pair: a repeat would silently overwrite the first's length
    repeat = _first_repeat([(link.start_lane, link.end_lane) for link in lane_links])
    if repeat is not None:
        k, first = repeat
        fields.fail(f"{path}.laneLinks[{k}].endLaneIndex", lane_links[k].end_lane,
                    f"duplicate laneLink from lane {lane_links[k].start_lane} (also laneLinks[{first}])")
    return RoadLinkSpec(link_type, start_road.id, end_road.id, lane_links)


def _first_repeat(keys: list[Any]) -> tuple[int, int] | None:
    """(index, index of its first occurrence) of the first key that occurs twice, else None."""
    first: dict[Any, int] = {}
    for k, key in enumerate(keys):
        if key in first:
            return k, first[key]
        first[key] = k
    return None


def _linked_road(
    fields: JsonFields,
    obj: Mapping[str, Any],
    key: str,
    path: str,
    roads_by_id: Mapping[str, RoadSpec],
) -> RoadSpec:
    name = fields.string(obj, key, path)
    road = roads_by_id.get(name)
    if road is None:
        fields.fail(key_path(path, key), name, "names an unknown road")
    return road


def _parse_lane_link(
    fields: JsonFields, raw: Any, path: str, start_road: RoadSpec, end_road: RoadSpec
) -> LaneLinkSpec:
    obj = fields.as_object(raw, path)
    fields.refuse_misspelled_keys(obj, _LANE_LINK_KEYS, path)
    start_lane = fields.index(
        obj, "startLaneIndex", path, len(start_road.lanes), f"road {start_road.id!r} lanes"
    )
    end_lane = fields.index(
        obj, "endLaneIndex", path, len(end_road.lanes), f"road {end_road.id!r} lanes"
    )
    raw_points = fields.as_array(obj.get("points", []), f"{path}.points")
    if len(raw_points) == 1:
        # one point draws no path; the fallback below would silently ignore it
        fields.fail(f"{path}.points", raw_points,
                    "a path through the junction needs at least 2 points (or none: the straight "
                    "gap between the two roads is then used)")
    points = tuple(fields.point(p, f"{path}.points[{k}]") for k, p in enumerate(raw_points))
    if len(points) >= 2:
        length = polyline_length(points)
    else:
        # No drawn path through the junction: approximate it by the straight gap between the end of
        # the incoming road and the start of the outgoing one (road centre lines, not lane offsets).
        length = math.dist(start_road.points[-1], end_road.points[0])
    return LaneLinkSpec(start_lane=start_lane, end_lane=end_lane, length=float(length))


def _parse_phases(
    fields: JsonFields, obj: Mapping[str, Any], path: str, road_link_count: int
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
    fields.refuse_misspelled_keys(light, _TRAFFIC_LIGHT_KEYS, light_path)
    raw_phases = fields.array(light, "lightphases", light_path)
    if road_link_count and not raw_phases:
        fields.fail(
            f"{light_path}.lightphases",
            raw_phases,
            "a non-virtual intersection with roadLinks needs at least one light phase",
        )
    phases = tuple(
        _parse_phase(fields, raw, f"{light_path}.lightphases[{k}]", road_link_count)
        for k, raw in enumerate(raw_phases)
    )
    if road_link_count and not any(phase.road_links for phase in phases):
        fields.fail(f"{light_path}.lightphases", raw_phases,
                    "no phase gives any roadLink a green: no vehicle could ever cross")
    return phases


def _parse_phase(fields: JsonFields, raw: Any, path: str, road_link_count: int) -> PhaseSpec:
    obj = fields.as_object(raw, path)
    fields.refuse_misspelled_keys(obj, _PHASE_KEYS, path)
    duration = fields.positive(obj, "time", path)
    raw_links = fields.array(obj, "availableRoadLinks", path)
    links: list[int] = []
    for k, value in enumerate(raw_links):
        link_path = f"{path}.availableRoadLinks[{k}]"
        index = fields.as_index(value, link_path, road_link_count, "the intersection's roadLinks")
        if index in links:
            fields.fail(link_path, index, "roadLink listed twice in the same phase")
        links.append(index)
    # gridlight's extension (written by the SUMO importer; CityFlow ignores the key): green links
    # of this phase that yield inside the box, so they may cross another green
    permissive: list[int] = []
    raw_permissive = fields.as_array(obj.get(PERMISSIVE_KEY, []), f"{path}.{PERMISSIVE_KEY}")
    for k, value in enumerate(raw_permissive):
        link_path = f"{path}.{PERMISSIVE_KEY}[{k}]"
        index = fields.as_index(value, link_path, road_link_count, "the intersection's roadLinks")
        if index not in links:
            fields.fail(link_path, index, "a permissive roadLink must be in availableRoadLinks")
        if index in permissive:
            fields.fail(link_path, index, "roadLink listed twice as permissive")
        permissive.append(index)
    return PhaseSpec(duration=duration, road_links=tuple(links), permissive=tuple(permissive))
