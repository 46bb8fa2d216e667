"""SUMO vehicles -> a CityFlow ``flow.json`` list, one entry per vehicle.

SUMO time is shifted so the scenario starts at 0: a vehicle scheduled at ``depart`` leaves at
step ``ceil(depart - begin)`` (SUMO with a 1 s step inserts it at the first step not before its
departure; fractional departures are counted). Vehicles scheduled before the sumocfg's
``begin``, or whose step is at or after its ``end``, are left out and counted, as SUMO never
inserts them in that run. Origin/destination trips are routed by shortest free-flow travel time
(`Router`).
Vehicles of classes that never drive on roads (pedestrians, bicycles, trams, ...) are left out
and counted; buses and trucks keep their size but drive on the passenger lanes.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter

from envs.errors import ScenarioError
from envs.scenario.flow_parser import SIGMA_KEY
from envs.scenario.sumo.route_reader import NON_ROAD_CLASSES, SumoRoutes, SumoVehicle, sumo_ms

# CityFlow's flow-file vehicle fields, from VehicleSpec attributes
_FLOW_VEHICLE_KEYS = {"length": "length", "width": "width", "maxPosAcc": "max_pos_acc",
                      "maxNegAcc": "max_neg_acc", "usualPosAcc": "usual_pos_acc",
                      "usualNegAcc": "usual_neg_acc", "minGap": "min_gap",
                      "maxSpeed": "max_speed", "headwayTime": "headway_time",
                      SIGMA_KEY: "sigma"}


class Router:
    """Shortest free-flow travel time routes over the roadnet's movements (Dijkstra, cached)."""

    def __init__(self, roadnet: dict) -> None:
        self.time = {  # free-flow seconds along each road
            road["id"]: _road_length(road) / max(lane["maxSpeed"] for lane in road["lanes"])
            for road in roadnet["roads"]}
        self.next: dict[str, list[str]] = {road: [] for road in self.time}
        for inter in roadnet["intersections"]:
            if inter["virtual"]:
                continue
            for link in inter["roadLinks"]:
                self.next[link["startRoad"]].append(link["endRoad"])
        self._cache: dict[tuple[str, str], tuple[str, ...] | None] = {}

    def route(self, origin: str, destination: str) -> tuple[str, ...] | None:
        key = (origin, destination)
        if key not in self._cache:
            self._cache[key] = self._search(origin, destination)
        return self._cache[key]

    def _search(self, origin: str, destination: str) -> tuple[str, ...] | None:
        best = {origin: 0.0}
        previous: dict[str, str] = {}
        queue = [(0.0, origin)]
        while queue:
            cost, road = heapq.heappop(queue)
            if road == destination:
                path = [road]
                while path[-1] != origin:
                    path.append(previous[path[-1]])
                return tuple(reversed(path))
            if cost > best[road]:
                continue
            for following in self.next[road]:
                reached = cost + self.time[following]
                if reached < best.get(following, math.inf):
                    best[following] = reached
                    previous[following] = road
                    heapq.heappush(queue, (reached, following))
        return None


def turned_around_at(flow: list[dict], roadnet: dict, candidates: set[str]) -> set[str]:
    """The `candidates` junctions some route of `flow` turns around at."""
    road_end = {road["id"]: road["endIntersection"] for road in roadnet["roads"]}
    return {road_end[a] for entry in flow for a in entry["route"][:-1]
            if road_end[a] in candidates}


def _road_length(road: dict) -> float:
    points = road["points"]
    return sum(math.dist((a["x"], a["y"]), (b["x"], b["y"])) for a, b in zip(points, points[1:]))


def flow_from_sumo(routes: SumoRoutes, roadnet: dict, begin: float, end: float,
                   counts: Counter, connected: set[tuple[str, str]], net_roads: frozenset[str] = frozenset(),
                   made: list | None = None) -> list[dict]:
    """`connected`: the (from edge, to edge) pairs of the net's connections; a route that turns
    where the net has none is refused (SUMO refuses it), one through a turn the import left out
    is left out and counted. `net_roads`: the net's normal edges; a vehicle of a class other than
    passenger (a bus) whose route uses one the import left out (no passenger lane: a bus-only
    road) is left out and counted; a passenger car's is refused, as SUMO refuses it. `made`, where
    given, gets the `SumoVehicle` of each entry, in order (for `refuse_never_green`)."""
    router = Router(roadnet)
    without_passenger_lanes = net_roads - router.time.keys()
    shared_specs: dict[str, dict] = {}  # one vehicle object per vType: a dense flow has millions
    entries = []
    for vehicle in sorted(routes.vehicles, key=lambda v: v.depart):
        spec, v_class = routes.vtypes[vehicle.vtype]
        if v_class in NON_ROAD_CLASSES:
            counts[f"{v_class}_vehicles_left_out"] += 1
            continue
        since_ms = sumo_ms(vehicle.depart) - sumo_ms(begin)
        if since_ms < 0:
            counts["vehicles_before_begin_left_out"] += 1
            continue
        step = -(-since_ms // 1000)  # inserted at the first whole step at or after its departure
        if step * 1000 >= sumo_ms(end) - sumo_ms(begin):  # SUMO inserts it at a step >= end: never
            counts["vehicles_after_end_left_out"] += 1
            continue
        counts["fractional_departures_rounded_up"] += step * 1000 != since_ms
        if v_class != "passenger" and without_passenger_lanes.intersection(
                vehicle.edges or (vehicle.origin, *vehicle.via, vehicle.destination)):
            counts["vehicles_on_roads_without_passenger_lanes_left_out"] += 1
            continue
        for k, edge in enumerate(vehicle.edges or ()):
            if edge not in router.time:
                raise ScenarioError(vehicle.source, f"{vehicle.where}@edges", edge,
                                    f"route edge {k} {_why_not_a_road(edge, net_roads)}")
        route = vehicle.edges or _route_trip(router, vehicle, counts, net_roads)
        if route is None:
            continue
        if any(b not in router.next[a] for a, b in zip(route, route[1:])):
            for k, (a, b) in enumerate(zip(route, route[1:])):
                if (a, b) not in connected:
                    raise ScenarioError(vehicle.source, f"{vehicle.where}@edges", f"{a} {b}",
                                        f"route edges {k} and {k + 1} are not connected: the net has no "
                                        f"<connection> from {a!r} to {b!r}")
            # a turn the import left out (a turnaround at the network's boundary)
            counts["routes_through_left_out_turns_left_out"] += 1
            continue
        if vehicle.vtype not in shared_specs:
            shared_specs[vehicle.vtype] = {key: getattr(spec, name) for key, name in _FLOW_VEHICLE_KEYS.items()}
        vehicle_obj = shared_specs[vehicle.vtype]
        counts[f"vehicles_{v_class}"] += 1
        entries.append({"vehicle": vehicle_obj, "route": list(route), "interval": 1.0,
                        "startTime": step, "endTime": step})
        if made is not None:
            made.append(vehicle)
    if not entries:
        raise ScenarioError(routes.source, "<routes>", len(routes.vehicles),
                            f"no vehicle departs in [begin={begin:g}, end={end:g})")
    return entries


def refuse_never_green(flow: list[dict], made: list[SumoVehicle], roadnet: dict, lights: dict) -> None:
    """A route through a movement no phase of its junction greens is refused under the vehicle's route
    or trip (`made`: the vehicle of each flow entry; `lights`: `junction_phases`' light per junction):
    the engine has no turn on red, the vehicle would wait at the line for good. Checked on the flow the
    import keeps (a trip routed another way in a trial roadnet is not refused for that route); the flow
    checks would refuse it too, under a flow.json path no user has ('[1].route[1]')."""
    never: dict[tuple[str, str], str] = {}  # (from road, to road) -> its junction
    for inter in roadnet["intersections"]:
        if inter["virtual"]:
            continue
        green = {k for phase in inter["trafficLight"]["lightphases"] for k in phase["availableRoadLinks"]}
        never.update({(link["startRoad"], link["endRoad"]): inter["id"]
                      for k, link in enumerate(inter["roadLinks"]) if k not in green})
    if not never:
        return
    for entry, vehicle in zip(flow, made):
        turn = next((pair for pair in zip(entry["route"], entry["route"][1:]) if pair in never), None)
        if turn is None:
            continue
        junction = never[turn]
        why = (f"turns {turn[0]!r} -> {turn[1]!r} at junction {junction!r}, which no phase of its light "
               f"(tlLogic[id={lights[junction]['tls_id']}]) greens: the vehicle would wait at the line for good")
        if vehicle.edges:
            raise ScenarioError(vehicle.source, f"{vehicle.where}@edges", " ".join(turn), f"the route {why}")
        raise ScenarioError(vehicle.source, f"{vehicle.where}@to", vehicle.destination,
                            f"its shortest route ({' '.join(entry['route'])}) {why}")


def _why_not_a_road(edge: str, net_roads: frozenset[str]) -> str:
    """Why a route's `edge` is none of the roadnet's roads, for the error naming it."""
    if edge in net_roads:
        return "is a road without passenger lanes (left out; SUMO does not let a passenger car drive there either)"
    if edge.startswith(":"):
        return "is an internal edge (inside a junction): a route lists the edges between junctions"
    return "names no edge of the net"


def _route_trip(router: Router, vehicle: SumoVehicle, counts: Counter, net_roads: frozenset[str]):
    stops = (vehicle.origin, *vehicle.via, vehicle.destination)
    attributes = ("from", *("via",) * len(vehicle.via), "to")
    for stop, attribute in zip(stops, attributes):
        if stop not in router.time:
            raise ScenarioError(vehicle.source, f"{vehicle.where}@{attribute}", stop, _why_not_a_road(stop, net_roads))
    route = [vehicle.origin]
    for a, b in zip(stops, stops[1:]):
        leg = router.route(a, b)
        if leg is None:  # e.g. only through a turnaround the import left out
            counts["trips_without_route_left_out"] += 1
            return None
        route += leg[1:]
    counts["trips_routed_shortest_free_flow"] += 1
    return tuple(route)
