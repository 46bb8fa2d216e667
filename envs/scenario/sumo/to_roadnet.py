"""A read `SumoNet` -> a CityFlow ``roadnet.json`` dict that gridlight's own parser validates.

- Roads are SUMO's normal edges, lanes the ones passenger cars may use (sidewalks, bicycle, tram
  and rail lanes are left out and counted), renumbered CityFlow's way: lane 0 is the leftmost
  (SUMO's highest index). A road's length is its lanes' mean ``length`` attribute (SUMO drives
  that, not the drawn shape): the shape is scaled about its end point to that length. Edges
  shorter than one step's travel are lengthened and counted (see `MIN_LENGTH_MARGIN_M`).
- Movements are the (from edge, to edge) pairs of SUMO's connections (not those whose internal lanes
  passenger cars may not use: left out and counted). Each reaches every lane
  of its target road: SUMO's vehicles change lanes along an edge to reach their next turn, the
  engine's pick their target lane as they cross the junction. A lane link's length is the length
  of the internal lanes the SUMO connection drives through (0 when the net has none).
- Every junction with a non-turnaround movement becomes an intersection (unsignalised ones too:
  one all-permissive phase, see `programs`; who must stop there: `junction_kinds`), and so does a
  boundary junction (turnarounds only) where some vehicle's route turns around; the others (dead
  ends, the rest of the boundary) are virtual, and their turnarounds are left out and counted.
- Phases come from `programs.junction_phases`. Two priority greens ('G') of one phase that
  gridlight's crossing test finds crossing (irregular geometry) keep flowing; the later one is
  marked permissive and counted (``crossing_priority_greens_relaxed``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from envs.errors import ScenarioError
from envs.scenario.network import _crossing_conflicts
from envs.scenario.departures import STEP_SECONDS
from envs.scenario.json_fields import BEYOND_MAX_MAGNITUDE, MAX_MAGNITUDE
from envs.scenario.roadnet_parser import PERMISSIVE_KEY, YIELD_KEY, parse_roadnet
from envs.scenario.sumo.junction_kinds import NO_LOGIC_TYPES, RAIL_OPEN, RAIL_TYPES, STOP_STATES
from envs.scenario.sumo.net_reader import SumoConnection, SumoEdge, SumoJunction, SumoNet
from envs.scenario.sumo.programs import LinkSignals, junction_phases

LINK_TYPES = {"s": "go_straight", "l": "turn_left", "L": "turn_left", "t": "turn_left",
              "r": "turn_right", "R": "turn_right"}
DEFAULT_LANE_WIDTH = 3.2  # SUMO's default; CityFlow only draws with it
# The engine moves a vehicle across at most one stop line per step, so a road must be longer
# than one step's travel at the fastest speed a vehicle can enter it with; SUMO's short edges
# (joins of a few metres) are lengthened to that, plus this margin, and counted.
MIN_LENGTH_MARGIN_M = 1.0


def turnaround_only_junctions(net: SumoNet) -> set[str]:
    """Junctions whose only connections are turnarounds (the network's boundary)."""
    directions: dict[str, set[str]] = {}
    for connection in net.connections:
        directions.setdefault(net.edges[connection.from_edge].end, set()).add(connection.direction)
    return {junction for junction, seen in directions.items() if seen == {"t"}}


def roadnet_from_sumo(net: SumoNet, counts: Counter, keep_turnarounds: frozenset = frozenset(),
                      sumo_lights: dict | None = None) -> dict:
    """`keep_turnarounds`: boundary junctions kept as (unsignalised) intersections because some
    vehicle turns around there; the other boundary junctions are virtual. `sumo_lights`, where given,
    gets each intersection's SUMO light and program phases (`junction_phases`)."""
    lane_order = {}  # edge id -> {SUMO lane index: gridlight lane index}
    roads = []
    lengths = simulated_road_lengths(net)
    for edge in net.edges.values():
        kept = [lane for lane in edge.lanes if lane.passenger]
        counts["non_passenger_lanes_left_out"] += len(edge.lanes) - len(kept)
        if not kept:
            counts["non_passenger_edges_left_out"] += 1
            continue
        lane_order[edge.id] = {lane.index: k for k, lane in enumerate(gridlight_lanes(edge))}
        roads.append(_road(net.source, edge, kept, lengths[edge.id], counts))

    by_junction: dict[str, dict[tuple[str, str], list[SumoConnection]]] = {}
    for connection in net.connections:
        if connection.from_edge not in lane_order or connection.to_edge not in lane_order:
            counts["connections_of_left_out_edges"] += 1
            continue
        if connection.from_lane not in lane_order[connection.from_edge] or \
                connection.to_lane not in lane_order[connection.to_edge]:
            counts["connections_of_non_passenger_lanes"] += 1
            continue
        if not connection.passenger:  # SUMO lets no car through its internal lanes: routes must not use it
            counts["connections_through_non_passenger_internal_lanes_left_out"] += 1
            continue
        junction = net.edges[connection.from_edge].end
        starts = net.edges[connection.to_edge].start
        if starts != junction:  # a movement leaves the junction it enters
            raise ScenarioError(net.source, f"{connection.where}@to", connection.to_edge,
                                f"edge {connection.to_edge!r} starts at junction {starts!r}, "
                                f"not at {junction!r} where {connection.from_edge!r} ends")
        by_junction.setdefault(junction, {}).setdefault(
            (connection.from_edge, connection.to_edge), []).append(connection)

    road_points = {road["id"]: road["points"] for road in roads}
    used = {j for road in roads for j in (road["startIntersection"], road["endIntersection"])}
    intersections = []
    for junction in net.junctions.values():
        if junction.id not in used:
            continue
        movements = by_junction.get(junction.id, {})
        if junction.id not in keep_turnarounds and \
                not any(c[0].direction != "t" for c in movements.values()):
            counts["turnarounds_at_boundary_left_out"] += len(movements)
            intersections.append(_intersection(junction, [], None, virtual=True))
            continue
        road_links, signals = [], []
        for (start, end), group in movements.items():
            road_links.append(_road_link(net, start, end, group, lane_order, road_points))
            turnaround = group[0].direction == "t"
            counts["turnarounds_permissive"] += turnaround
            signals.append(LinkSignals(
                tuple((c.tl, c.link_index) for c in group if c.tl is not None), turnaround))
            for c in group:  # a stop or a zipper merge the engine does not make (junction_kinds); a light sets its own
                if c.tl is None and c.state in STOP_STATES:
                    counts[STOP_STATES[c.state]] += 1
            if junction.type in RAIL_TYPES:  # open: no train is simulated to close it (junction_kinds)
                counts[RAIL_OPEN] += len(group)
        phases = junction_phases(junction.id, signals, net.programs, net.source, counts, sumo_lights)
        intersections.append(_intersection(junction, road_links, phases, virtual=False,
                                           yields=_yield_pairs(junction, movements, counts)))
        # approaches = incoming roads: 3 is a T, 4 a crossroads, 5+ irregular; all are represented
        approaches = len({start for start, _ in movements})
        lights = {net.programs[tl].type for s in signals for tl, _ in s.slots}
        kind = "signalised" if lights - {"off"} else "unsignalised"  # a light switched off signals nothing
        counts[f"{kind}_junctions_with_{approaches}_approaches"] += 1
    roadnet = {"intersections": intersections, "roads": roads}
    _relax_crossing_greens(roadnet, net.source, counts)
    return roadnet


def gridlight_lanes(edge: SumoEdge) -> list:
    """The edge's passenger lanes in gridlight's order (lane 0 the leftmost: SUMO's highest
    index); gridlight's lane ``k`` of the road is SUMO's lane ``gridlight_lanes(edge)[k]``."""
    return list(reversed([lane for lane in edge.lanes if lane.passenger]))


def simulated_road_lengths(net: SumoNet) -> dict[str, float]:
    """Edge id -> the length of the road gridlight simulates for it (edges without a passenger
    lane too): its passenger lanes' mean ``length``, at least one step's travel at the fastest
    speed a vehicle can enter it with (its own limit or that of an edge feeding it) plus
    `MIN_LENGTH_MARGIN_M`. benchmarks/sumo_max_pressure.py's road sensing reads this stretch in
    SUMO, so that max pressure can count the same stretch of road in both simulators."""
    entry_speed = {edge.id: max(lane.speed for lane in edge.lanes) for edge in net.edges.values()}
    for connection in net.connections:
        entry_speed[connection.to_edge] = max(entry_speed[connection.to_edge],
                                              entry_speed[connection.from_edge])
    lengths = {}
    for edge in net.edges.values():
        kept = [lane.length for lane in edge.lanes if lane.passenger] or [lane.length for lane in edge.lanes]
        shortest = entry_speed[edge.id] * STEP_SECONDS + MIN_LENGTH_MARGIN_M
        lengths[edge.id] = max(float(np.mean(kept)), shortest)
    return lengths


def _road(source: str, edge: SumoEdge, kept, length: float, counts: Counter) -> dict:
    """`length`: from `simulated_road_lengths`; `source`: the net file, for errors."""
    lanes_mean = float(np.mean([lane.length for lane in kept]))
    if length > lanes_mean:
        counts["short_edges_lengthened"] += 1
        counts["metres_added_to_short_edges"] += math.ceil(length - lanes_mean)
    drawn_lane = kept[len(kept) // 2]
    shape = drawn_lane.shape
    drawn = sum(math.dist(shape[i], shape[i + 1]) for i in range(len(shape) - 1))
    field = f"edge[id={edge.id}].lane[id={drawn_lane.id}]@shape"
    if not drawn > 0:
        raise ScenarioError(source, field, shape, "lane shape has zero length")
    if abs(drawn - length) > 0.01 * length:
        counts["edges_length_differs_from_shape"] += 1
    scale = length / drawn
    end = shape[-1]
    points = [{"x": end[0] + (x - end[0]) * scale, "y": end[1] + (y - end[1]) * scale}
              for x, y in shape]
    _within_limits(points, source, field, shape,
                   f"scaled about its end point to the road's length ({length:g} m)")
    lanes = [{"width": DEFAULT_LANE_WIDTH, "maxSpeed": lane.speed} for lane in reversed(kept)]
    return {"id": edge.id, "startIntersection": edge.start, "endIntersection": edge.end,
            "points": points, "lanes": lanes}


def _road_link(net: SumoNet, start: str, end: str, group: list[SumoConnection], lane_order,
               road_points) -> dict:
    first = group[0]
    if first.direction not in LINK_TYPES:
        raise ScenarioError(net.source, f"{first.where}@dir", first.direction,
                            f"unknown direction; expected one of {sorted(LINK_TYPES)}")
    from_lanes = sorted({lane_order[start][c.from_lane] for c in group})
    lengths = {(lane_order[start][c.from_lane], lane_order[end][c.to_lane]): c.length
               for c in group}
    mean_length = float(np.mean(list(lengths.values())))
    p0 = road_points[start][-1]
    p1 = road_points[end][0]
    gap = math.dist((p0["x"], p0["y"]), (p1["x"], p1["y"]))
    ux, uy = ((p1["x"] - p0["x"]) / gap, (p1["y"] - p0["y"]) / gap) if gap > 0 else (1.0, 0.0)
    longest = max(group, key=lambda c: c.length)
    if longest.length > 0:  # it drives through internal lanes, the first of which `via` names
        _within_limits([{"x": p0["x"] + ux * longest.length, "y": p0["y"] + uy * longest.length}],
                       net.source, f"{longest.where}@via", longest.via[0],
                       f"drawn from the end of road {start!r} for the connection's internal "
                       f"length ({longest.length:g} m)")
    lane_links = []
    for a in from_lanes:
        for b in range(len(lane_order[end])):
            length = lengths.get((a, b), mean_length)
            lane_links.append({"startLaneIndex": a, "endLaneIndex": b, "points": [
                p0, {"x": p0["x"] + ux * length, "y": p0["y"] + uy * length}]})
    return {"type": LINK_TYPES[first.direction], "startRoad": start, "endRoad": end,
            "direction": 0, "laneLinks": lane_links}


def _within_limits(points: list[dict], source: str, field: str, value, drawn: str) -> None:
    """A derived roadnet point beyond gridlight's limit, although every coordinate and length
    the net writes is within it, is refused under the SUMO field it is `drawn` from (the
    roadnet parser would name a roadnet point the author never wrote)."""
    if not all(abs(point[axis]) <= MAX_MAGNITUDE for point in points for axis in "xy"):
        raise ScenarioError(source, field, value, f"{drawn}, it reaches {BEYOND_MAX_MAGNITUDE}")


def _yield_pairs(junction: SumoJunction, movements: dict[tuple[str, str], list[SumoConnection]],
                 counts: Counter) -> list[list[int]]:
    """SUMO's right of way between the junction's movements: [minor, major] road-link index
    pairs, where some lane connection of the minor movement gives way to one of the major's
    (its <request>'s `response`). Whether the minor one yields at a step depends on its signal:
    only a permissive green does (SUMO's 'g' and unsignalised links; 'G' has priority)."""
    if len(movements) < 2 or junction.type in NO_LOGIC_TYPES:  # SUMO: no link there waits for another
        return []
    if not junction.yields_to:
        counts["junctions_without_right_of_way"] += 1
        return []
    link_of = {lane: k for k, lane in enumerate(junction.int_lanes)}
    links = []
    for group in movements.values():
        known = [next((link_of[lane] for lane in c.via if lane in link_of), None) for c in group]
        counts["connections_without_right_of_way"] += known.count(None)
        links.append(set(known) - {None})
    pairs = []
    for minor, own in enumerate(links):
        majors = set().union(*(junction.yields_to[link] for link in own))
        pairs += [[minor, major] for major, theirs in enumerate(links)
                  if major != minor and majors & theirs]
    counts["right_of_way_pairs"] += len(pairs)
    return pairs


def _intersection(junction, road_links, phases, virtual: bool, yields=()) -> dict:
    out = {"id": junction.id, "point": {"x": junction.point[0], "y": junction.point[1]},
           "width": 0.0, "roads": [], "roadLinks": road_links, "virtual": virtual}
    if not virtual:
        out["trafficLight"] = {"roadLinkIndices": list(range(len(road_links))),
                               "lightphases": phases}
    if yields:
        out[YIELD_KEY] = list(yields)
    return out


def _checked(roadnet: dict, source: str):
    """The roadnet parsed, its errors named by the net's junction or edge the failing entry was built
    from (``intersections[3].id`` -> ``junction[id= ]``): the roadnet is in no file a user has. The
    errors a net can reach here that a finer SUMO field names are refused earlier (`programs`, the
    connections above); this names the rest (a loop edge, a road of more than 32 lanes, a blank id)."""
    try:
        return parse_roadnet(roadnet, source)
    except ScenarioError as error:
        found = re.match(r"(intersections|roads)\[(\d+)\]", error.field)
        if found is None:
            raise
        kind = "junction" if found[1] == "intersections" else "edge"
        element = f"{kind}[id={roadnet[found[1]][int(found[2])]['id']}]"
        raise ScenarioError(source, element, error.value,
                            f"{error.reason} (the roadnet built from it: {error.field})") from None


def _relax_crossing_greens(roadnet: dict, source: str, counts: Counter) -> None:
    """Mark priority greens permissive where gridlight's geometry sees them cross another."""
    spec = _checked(roadnet, source)
    roads = spec.roads
    road_index = {road.id: r for r, road in enumerate(roads)}
    raw = {x["id"]: x for x in roadnet["intersections"]}
    for inter in spec.intersections:
        if inter.virtual or not inter.road_links:
            continue
        conflict = _crossing_conflicts(inter, roads, road_index)
        for phase in raw[inter.id]["trafficLight"]["lightphases"]:
            permissive = set(phase[PERMISSIVE_KEY])
            for u in phase["availableRoadLinks"]:
                for v in phase["availableRoadLinks"]:
                    if u < v and conflict[u, v] and not {u, v} & permissive:
                        permissive.add(v)
                        counts["crossing_priority_greens_relaxed"] += 1
            phase[PERMISSIVE_KEY] = sorted(permissive)
