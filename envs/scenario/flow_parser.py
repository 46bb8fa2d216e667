"""Parse and check a CityFlow ``flow.json`` list into a `FlowFileSpec`: vehicles, routes (each
turn and lane continuation checked against the roadnet) and time windows."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envs.scenario.json_fields import JsonFields, json_type, key_path
from envs.scenario.spec import FlowFileSpec, FlowSpec, RoadnetSpec, RoadSpec, VehicleSpec

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
# gridlight's one addition to the vehicle block: the driver imperfection (`VehicleSpec.sigma`)
SIGMA_KEY = "sigma"
# The keys a flow entry or its vehicle may carry: CityFlow's documented format (which is also
# exactly what the datasets under shared/datasets use) plus sigma. A near miss of one is refused as
# a misspelling (CityFlow would silently ignore `endtime`); other keys are ignored, as by CityFlow.
_VEHICLE_KEYS = frozenset(_VEHICLE_FIELDS) | {SIGMA_KEY}
_FLOW_KEYS = frozenset({"vehicle", "route", "interval", "startTime", "endTime"})


@dataclass
class _RouteChecker:
    """Checks routes against a roadnet; each distinct route is checked once (flows repeat them)."""

    fields: JsonFields
    roads_by_id: dict[str, RoadSpec]
    # (from road, to road) -> lane of `from` -> the lanes of `to` its lane links reach
    turn_lanes: dict[tuple[str, str], dict[int, frozenset[int]]]
    virtual: frozenset[str] = frozenset()  # ids of the virtual intersections
    # (from road, to road) -> the roadLink's index, for the links that no light phase greens
    never_green: dict[tuple[str, str], int] = field(default_factory=dict)
    known_good: set[tuple[str, ...]] = field(default_factory=set)

    @classmethod
    def for_roadnet(cls, fields: JsonFields, roadnet: RoadnetSpec) -> _RouteChecker:
        lanes: dict[tuple[str, str], dict[int, set[int]]] = {}
        never_green: dict[tuple[str, str], int] = {}
        for intersection in roadnet.intersections:
            if intersection.virtual:  # the network's edge: its roadLinks are not simulated (network.py)
                continue
            green = {k for phase in intersection.phases for k in phase.road_links}
            for k, link in enumerate(intersection.road_links):
                key = (link.start_road, link.end_road)
                if k not in green:
                    never_green[key] = k
                for lane_link in link.lane_links:
                    lanes.setdefault(key, {}).setdefault(lane_link.start_lane, set()).add(lane_link.end_lane)
        turn_lanes = {key: {lane: frozenset(ends) for lane, ends in by_lane.items()} for key, by_lane in lanes.items()}
        virtual = frozenset(i.id for i in roadnet.intersections if i.virtual)
        return cls(fields, {road.id: road for road in roadnet.roads}, turn_lanes, virtual, never_green)

    def check(self, route: tuple[str, ...], path: str) -> None:
        if route in self.known_good:
            return
        for k, name in enumerate(route):
            if name not in self.roads_by_id:
                self.fields.fail(f"{path}[{k}]", name, "route names an unknown road")
        for k in range(1, len(route)):
            self._check_turn(route[k - 1], route[k], f"{path}[{k}]")
        self._check_lanes_continue(route, path)
        self.known_good.add(route)

    def _check_turn(self, from_road: str, to_road: str, path: str) -> None:
        junction = self.roads_by_id[from_road].end_intersection
        to_start = self.roads_by_id[to_road].start_intersection
        if junction != to_start:
            self.fields.fail(
                path,
                to_road,
                f"not connected: previous road {from_road!r} ends at {junction!r} "
                f"but this road starts at {to_start!r} (CityFlow reads a route as anchor points and drives the "
                "shortest path between them; gridlight needs every road of the route listed)",
            )
        if (from_road, to_road) not in self.turn_lanes:
            self.fields.fail(
                path,
                to_road,
                f"intersection {junction!r} has no roadLink from {from_road!r} to {to_road!r}"
                if junction not in self.virtual else
                f"the route passes through virtual intersection {junction!r}: a virtual intersection is the "
                "network's edge, where routes begin and end; its roadLinks are not simulated",
            )
        if (from_road, to_road) in self.never_green:
            # the engine has no turn on red: every vehicle of the flow would wait at the line for good
            self.fields.fail(path, to_road,
                             f"no phase of intersection {junction!r} greens roadLinks"
                             f"[{self.never_green[(from_road, to_road)]}] ({from_road!r} -> {to_road!r}): "
                             "the flow's vehicles could never cross; add it to a phase's availableRoadLinks")

    def _check_lanes_continue(self, route: tuple[str, ...], path: str) -> None:
        # No lane changes: the engine puts a vehicle on a lane of the first road that has a lane link
        # to the second, and at each junction on a lane it reaches that has one to the road after
        # next. Every lane it can so be on must reach such a lane, or its vehicle waits there for good
        # (one lane that continues is not enough).
        if len(route) < 3:
            return
        on = set(self.turn_lanes[(route[0], route[1])])
        for k in range(len(route) - 2):
            reach = self.turn_lanes[(route[k], route[k + 1])]
            onward = self.turn_lanes[(route[k + 1], route[k + 2])].keys()
            entered: set[int] = set()
            for lane in sorted(on):
                usable = reach[lane] & onward
                if not usable:
                    self.fields.fail(
                        f"{path}[{k + 2}]", route[k + 2],
                        f"a vehicle on lane {lane} of {route[k]!r} can only enter lanes {sorted(reach[lane])} of "
                        f"{route[k + 1]!r}, none of which has a laneLink to {route[k + 2]!r} (lanes "
                        f"{sorted(onward)} have): with no lane changes it would wait there for good",
                    )
                entered |= usable
            on = entered


def parse_flow(obj: Any, source: str, roadnet: RoadnetSpec) -> FlowFileSpec:
    fields = JsonFields(source)
    entries = fields.as_array(obj, "<root>")
    if not entries:
        fields.fail("<root>", entries, "flow file has no flows")
    routes = _RouteChecker.for_roadnet(fields, roadnet)
    flows = tuple(_parse_flow_entry(fields, raw, i, routes) for i, raw in enumerate(entries))
    return FlowFileSpec(source=source, flows=flows)


def _parse_flow_entry(fields: JsonFields, raw: Any, index: int, routes: _RouteChecker) -> FlowSpec:
    path = f"[{index}]"
    obj = fields.as_object(raw, path)
    fields.refuse_misspelled_keys(obj, _FLOW_KEYS, path)
    vehicle = _parse_vehicle(fields, fields.object(obj, "vehicle", path), f"{path}.vehicle")
    route = _parse_route(fields, obj, path)
    routes.check(route, f"{path}.route")
    interval = fields.positive(obj, "interval", path)
    start_time, end_time = _parse_time_window(fields, obj, path)
    return FlowSpec(index, vehicle, route, interval, start_time, end_time)


def _parse_vehicle(fields: JsonFields, obj: Mapping[str, Any], path: str) -> VehicleSpec:
    fields.refuse_misspelled_keys(obj, _VEHICLE_KEYS, path)
    values = {}
    for key, (attribute, zero_allowed) in _VEHICLE_FIELDS.items():
        read = fields.non_negative if zero_allowed else fields.positive
        values[attribute] = read(obj, key, path)
    if SIGMA_KEY in obj:  # optional: CityFlow's own files have no imperfection
        sigma = fields.non_negative(obj, SIGMA_KEY, path)
        if sigma > 1.0:
            fields.fail(key_path(path, SIGMA_KEY), sigma, "driver imperfection must be within [0, 1]")
        values["sigma"] = sigma
    return VehicleSpec(**values)


def _parse_route(fields: JsonFields, obj: Mapping[str, Any], path: str) -> tuple[str, ...]:
    raw_route = fields.array(obj, "route", path)
    if not raw_route:
        fields.fail(f"{path}.route", raw_route, "route is empty")
    for k, name in enumerate(raw_route):
        if not isinstance(name, str):
            fields.fail(
                f"{path}.route[{k}]", name, f"expected a road id string, got {json_type(name)}"
            )
    return tuple(raw_route)


def _parse_time_window(fields: JsonFields, obj: Mapping[str, Any], path: str) -> tuple[float, float]:
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
