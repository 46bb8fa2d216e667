"""Read a SUMO ``.rou.xml``: vehicle types, named routes, and every vehicle (``<vehicle>``,
``<trip>``, and each vehicle a ``<flow>`` generates) with its scheduled departure and either
its route's edges or its origin/destination (routed later by `routing`)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from envs.scenario.spec import VehicleSpec
from envs.scenario.json_fields import MISSING
from envs.scenario.sumo.xml_fields import XmlFields, element_path, read_xml

DEFAULT_VTYPE = "DEFAULT_VEHTYPE"
# SUMO's defaults by vehicle class (sumo.dlr.de/docs/Vehicle_Type_Parameter_Defaults.html):
# length, minGap, accel, decel, emergencyDecel, maxSpeed (m/s), width
_CLASS_DEFAULTS = {
    "passenger": (5.0, 2.5, 2.6, 4.5, 9.0, 55.56, 1.8),
    "bus": (12.0, 2.5, 1.2, 4.0, 7.0, 27.78, 2.5),
    "truck": (7.1, 2.5, 1.3, 4.0, 7.0, 36.11, 2.4),
    "delivery": (6.5, 2.5, 2.6, 4.5, 9.0, 55.56, 2.16),
}
# classes that never use a road lane; their vehicles are left out and counted
NON_ROAD_CLASSES = ("pedestrian", "bicycle", "tram", "rail", "rail_urban", "rail_electric",
                    "ship")
DEFAULT_TAU = 1.0  # SUMO's default desired time headway (s)
# SUMO's default driver imperfection (Krauss' dawdling), which the engine models (`following.dawdle`)
DEFAULT_SIGMA = 0.5


@dataclass(frozen=True)
class SumoVehicle:
    where: str  # element path for error messages
    depart: float  # SUMO seconds
    vtype: str
    edges: tuple[str, ...] | None  # the route, or None for an origin/destination trip
    origin: str | None = None
    destination: str | None = None
    via: tuple[str, ...] = ()
    id: str = ""  # SUMO's vehicle id (a flow's n-th vehicle: "<flow id>.<n>")
    source: str = ""  # its route file, for error messages


@dataclass
class SumoRoutes:
    source: str  # the route file read last
    vtypes: dict[str, tuple[VehicleSpec, str]]  # id -> (parameters, vClass)
    vehicles: list[SumoVehicle]
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # named <route>s
    # the vType and route ids the files define (DEFAULT_VEHTYPE starts out undefined: SUMO lets
    # the files redefine the default type once)
    defined: dict[str, set[str]] = field(default_factory=lambda: {"vType": set(), "route": set()})


def vehicle_type(fields: XmlFields, element, where: str, counts: Counter
                 ) -> tuple[VehicleSpec, str]:
    """A ``<vType>``'s parameters in gridlight's fields (SUMO's defaults for its class)."""
    v_class = element.get("vClass", "passenger")
    if v_class not in _CLASS_DEFAULTS and v_class not in NON_ROAD_CLASSES:
        counts[f"vclass_{v_class}_with_passenger_defaults"] += 1
    length, gap, accel, decel, emergency, speed, width = _CLASS_DEFAULTS.get(
        v_class, _CLASS_DEFAULTS["passenger"])
    ignored = [a for a in ("speedFactor", "speedDev", "carFollowModel", "laneChangeModel")
               if a in element.attrib]
    for attribute in ignored:
        counts[f"vtype_{attribute}_ignored"] += 1
    decel = fields.positive(element, "decel", where, decel)
    return VehicleSpec(
        length=fields.positive(element, "length", where, length),
        width=fields.positive(element, "width", where, width),
        max_pos_acc=fields.positive(element, "accel", where, accel),
        usual_pos_acc=fields.positive(element, "accel", where, accel),
        usual_neg_acc=decel,
        max_neg_acc=_emergency_decel(fields, element, where, decel, emergency),
        min_gap=fields.non_negative(element, "minGap", where, gap),
        max_speed=fields.positive(element, "maxSpeed", where, speed),
        headway_time=fields.positive(element, "tau", where, DEFAULT_TAU),
        sigma=_sigma(fields, element, where),
    ), v_class


def _emergency_decel(fields: XmlFields, element, where: str, decel: float,
                     class_default: float) -> float:
    """The vType's ``emergencyDecel``: when absent SUMO's class default, raised to ``decel`` when
    that is higher (SUMO's own default rule); when given, at least ``decel`` (SUMO would keep a
    lower one and warn: a vehicle whose emergency braking is weaker than its usual braking)."""
    if "emergencyDecel" not in element.attrib:
        return max(decel, class_default)
    emergency = fields.positive(element, "emergencyDecel", where)
    if not emergency >= decel:
        fields.fail(where, "emergencyDecel", element.get("emergencyDecel"),
                    f"must be >= decel ({decel:g}): emergency braking is the hardest braking")
    return emergency


def _sigma(fields: XmlFields, element, where: str) -> float:
    """The vType's driver imperfection (``sigma``, SUMO's default 0.5), within [0, 1]."""
    sigma = fields.non_negative(element, "sigma", where, DEFAULT_SIGMA)
    if sigma > 1.0:
        fields.fail(where, "sigma", sigma, "driver imperfection must be within [0, 1]")
    return sigma


def read_routes(path: str | Path, counts: Counter, earlier: SumoRoutes | None = None
                ) -> SumoRoutes:
    """The vTypes, named routes and vehicles of a route file, after those of the `earlier` route
    files of the scenario: SUMO reads them into one namespace, so a file may use the types and
    routes of the files before it but not define their ids again."""
    source = str(path)
    fields = XmlFields(source)
    root = read_xml(path, "routes")
    if earlier is None:
        default = vehicle_type(fields, root.makeelement("vType", {}), "", counts)[0]
        earlier = SumoRoutes(source, {DEFAULT_VTYPE: (default, "passenger")}, [])
    vtypes, routes = dict(earlier.vtypes), dict(earlier.routes)
    defined = {tag: set(ids) for tag, ids in earlier.defined.items()}
    vehicles: list[SumoVehicle] = []
    for element in root:
        where = element_path(element)
        if element.tag == "vType":
            ident = _new_id(fields, element, where, defined["vType"])
            vtypes[ident] = vehicle_type(fields, element, where, counts)
        elif element.tag == "route":
            ident = _new_id(fields, element, where, defined["route"])
            routes[ident] = _edges(fields, element, where)
        elif element.tag in ("vehicle", "trip"):
            vehicles.append(_vehicle(fields, element, where, routes,
                                     _depart(fields, element, where), element.get("id", "")))
        elif element.tag == "flow":
            vehicles += _flow(fields, element, where, routes, counts)
        elif element.tag in ("routeDistribution", "vTypeDistribution", "person", "personFlow",
                             "container", "containerFlow"):
            fields.fail(where, None, element.tag,
                        f"<{element.tag}> is not supported by the importer")
        else:
            counts[f"unknown_element_{element.tag}_ignored"] += 1
    for vehicle in vehicles:
        if vehicle.vtype not in vtypes:
            fields.fail(vehicle.where, "type", vehicle.vtype, "names an unknown <vType>")
    return SumoRoutes(source, vtypes, earlier.vehicles + vehicles, routes, defined)


def _new_id(fields: XmlFields, element, where: str, seen: set[str]) -> str:
    """The element's id, refused when an earlier element of its kind has it (SUMO refuses that
    too; keeping either definition would silently change the other's vehicles)."""
    ident = fields.string(element, "id", where)
    if ident in seen:
        fields.fail(where, "id", ident, f"another <{element.tag}> has this id")
    seen.add(ident)
    return ident


def _edges(fields: XmlFields, element, where: str) -> tuple[str, ...]:
    edges = tuple(fields.string(element, "edges", where).split())
    if not edges:
        fields.fail(where, "edges", "", "a route needs at least one edge")
    return edges


def _depart(fields: XmlFields, element, where: str) -> float:
    raw = fields.string(element, "depart", where)
    try:
        value = float(raw)
    except ValueError:
        fields.fail(where, "depart", raw, "only numeric departure times are supported "
                    "(not 'triggered', 'now', ...)")
    if not math.isfinite(value) or value < 0:
        fields.fail(where, "depart", raw, "must be a finite time >= 0")
    return fields.within_limits(value, where, "depart", raw)


def _vehicle(fields: XmlFields, element, where: str, routes, depart: float,
             ident: str) -> SumoVehicle:
    """A vehicle, trip or flow's route: an inline <route>, a named one, or from/to(/via)."""
    vtype = element.get("type", DEFAULT_VTYPE)
    inline = element.find("route")
    if inline is not None:
        return SumoVehicle(where, depart, vtype, _edges(fields, inline, f"{where}.route"),
                           id=ident, source=fields.source)
    if "route" in element.attrib:
        name = element.get("route")
        if name not in routes:
            fields.fail(where, "route", name, "names an unknown <route> (define it first)")
        return SumoVehicle(where, depart, vtype, routes[name], id=ident, source=fields.source)
    if element.tag == "vehicle":
        fields.fail(where, "route", MISSING, "a <vehicle> needs a route attribute or <route>")
    return SumoVehicle(where, depart, vtype, None, fields.string(element, "from", where),
                       fields.string(element, "to", where), tuple(element.get("via", "").split()),
                       ident, fields.source)


def _flow(fields: XmlFields, element, where: str, routes, counts: Counter) -> list[SumoVehicle]:
    """The vehicles of a ``<flow>``: at begin, begin + period, ... while before end (SUMO's
    rule); ``probability`` flows are approximated by their mean period (counted). As in SUMO,
    an end before begin is refused and an end at begin leaves a ``number`` flow's vehicles all
    at begin and other flows without any (counted)."""
    begin = fields.non_negative(element, "begin", where, 0.0)
    end = fields.number(element, "end", where, math.inf)
    if not end >= begin:
        fields.fail(where, "end", element.get("end"), f"the flow ends before its begin ({begin:g})")
    if "period" in element.attrib:
        period = fields.positive(element, "period", where)
    elif "vehsPerHour" in element.attrib:
        period = 3600.0 / fields.positive(element, "vehsPerHour", where)
    elif "probability" in element.attrib:
        counts["probability_flows_as_mean_period"] += 1
        period = 1.0 / _probability(fields, element, where)
    elif "number" in element.attrib:
        if not math.isfinite(end):
            fields.fail(where, "end", None, "a flow with 'number' needs an 'end'")
        period = (end - begin) / max(fields.integer(element, "number", where), 1)
    else:
        fields.fail(where, "period", None,
                    "a <flow> needs one of period, vehsPerHour, probability or number")
    # period is 0 only for a `number` flow ending at its begin: its count is `number`
    count = math.ceil((end - begin) / period) if math.isfinite(end) and period > 0 else None
    if "number" in element.attrib:
        count = fields.integer(element, "number", where) if count is None else min(
            count, fields.integer(element, "number", where))
    if count is None:
        fields.fail(where, "end", None, "a flow needs an 'end' or a 'number' to be finite")
    if count == 0:
        counts["flows_without_vehicles"] += 1
    shaped = _vehicle(fields, element, where, routes, begin, "")
    return [SumoVehicle(f"{where}#{n}", begin + n * period, shaped.vtype, shaped.edges,
                        shaped.origin, shaped.destination, shaped.via,
                        f"{element.get('id', '')}.{n}", fields.source) for n in range(count)]


def _probability(fields: XmlFields, element, where: str) -> float:
    """A flow's ``probability`` (of a departure each second): within (0, 1], as SUMO requires."""
    probability = fields.positive(element, "probability", where)
    if probability > 1.0:
        fields.fail(where, "probability", element.get("probability"),
                    "a departure probability per second must be within (0, 1]")
    return probability
