"""Read a SUMO ``.rou.xml``: vehicle types, named routes, and every vehicle (``<vehicle>``,
``<trip>``, and each vehicle a ``<flow>`` generates) with its scheduled departure and either
its route's edges or its origin/destination (routed later by `routing`)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from envs.scenario.departures import MAX_VEHICLES
from envs.scenario.json_fields import MISSING
from envs.scenario.spec import VehicleSpec
from envs.scenario.sumo.unread import count_unread_route, count_unread_vehicle, count_unread_vtype
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
NON_ROAD_CLASSES = ("pedestrian", "bicycle", "tram", "rail", "rail_urban", "rail_electric", "rail_fast",
                    "subway", "cable_car", "ship", "aircraft", "wheelchair", "scooter", "drone", "container")
# SUMO's other vehicle classes (driven with passenger defaults, counted), and the deprecated names it
# still reads as the class they name; any other name is refused, as SUMO refuses it
OTHER_CLASSES = ("passenger", "ignoring", "private", "emergency", "authority", "army", "vip", "hov", "taxi",
                 "coach", "trailer", "motorcycle", "moped", "evehicle", "custom1", "custom2")
DEPRECATED_CLASSES = {"public_transport": "bus", "public_emergency": "emergency", "public_authority": "authority",
                      "public_army": "army", "lightrail": "tram", "cityrail": "rail_urban", "rail_slow": "rail"}
DEFAULT_TAU = 1.0  # SUMO's default desired time headway (s)
# a trip's or flow's origin and destination other than edges: from/to + Junction, Taz, XY, LonLat
OTHER_ORIGINS = ("Junction", "Taz", "XY", "LonLat")
FLOW_RATES = ("period", "vehsPerHour", "perHour", "probability")  # a <flow>'s rate attributes: one at most
# SUMO's default driver imperfection (Krauss' dawdling), which the engine models (`following.dawdle`)
DEFAULT_SIGMA = 0.5


@dataclass(frozen=True, slots=True)  # slots: a dense flow makes millions of them
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
    defined: dict[str, set[str]] = field(default_factory=lambda: {"vType": set(), "route": set(), "vehicle": set()})


def vehicle_type(fields: XmlFields, element, where: str, counts: Counter
                 ) -> tuple[VehicleSpec, str]:
    """A ``<vType>``'s parameters in gridlight's fields (SUMO's defaults for its class); those of
    a ``<carFollowing-MODEL>`` child override the vType's own, as in SUMO."""
    children = list(element)
    element, where = _with_car_following(fields, element, where)
    count_unread_vtype(element.attrib, children, counts)
    v_class = element.get("vClass", "passenger")
    v_class = DEPRECATED_CLASSES.get(v_class, v_class)
    if v_class not in (*_CLASS_DEFAULTS, *NON_ROAD_CLASSES, *OTHER_CLASSES):  # a misspelling drove as a car
        fields.fail(where, "vClass", element.get("vClass"), "not a SUMO vehicle class (SUMO refuses it too)")
    if v_class not in _CLASS_DEFAULTS and v_class not in NON_ROAD_CLASSES:
        counts[f"vclass_{v_class}_with_passenger_defaults"] += 1
    length, gap, accel, decel, emergency, speed, width = _CLASS_DEFAULTS.get(
        v_class, _CLASS_DEFAULTS["passenger"])
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


def _with_car_following(fields: XmlFields, element, where: str):
    """The vType with its ``<carFollowing-MODEL>`` child's attributes merged in (a model other
    than Krauss, the engine's, is counted by `count_unread_vtype`, once with the attribute's)."""
    children = [child for child in element if str(child.tag).startswith("carFollowing-")]
    if not children:
        return element, where
    if len(children) > 1:
        fields.fail(where, None, children[1].tag, "a vType takes one car-following model element")
    child = children[0]
    return element.makeelement("vType", {**element.attrib, **child.attrib}), f"{where}.{child.tag}"


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


def read_routes(path: str | Path, counts: Counter, window: tuple[float, float],
                earlier: SumoRoutes | None = None, root=None) -> SumoRoutes:
    """The vTypes, named routes and vehicles of a route file, after those of the `earlier` route
    files of the scenario: SUMO reads them into one namespace, so a file may use the types and
    routes of the files before it but not define their ids again. A flow's vehicles outside the
    config's `window` (begin, end) are counted, not built. `root`: the file's elements when already
    read (an additional file's route elements), else the file is read."""
    source = str(path)
    fields = XmlFields(source)
    root = read_xml(path, "routes") if root is None else root
    if earlier is None:
        default = vehicle_type(fields, root.makeelement("vType", {}), "", counts)[0]
        earlier = SumoRoutes(source, {DEFAULT_VTYPE: (default, "passenger")}, [])
    vtypes, routes = dict(earlier.vtypes), dict(earlier.routes)
    defined = {tag: set(ids) for tag, ids in earlier.defined.items()}
    vehicles: list[SumoVehicle] = []
    room = MAX_VEHICLES - len(earlier.vehicles)  # vehicles the scenario may still hold
    for element in root:
        where = element_path(element)
        if element.tag == "vType":
            ident = fields.new_id(element, where, defined["vType"])
            vtypes[ident] = vehicle_type(fields, element, where, counts)
        elif element.tag == "route":
            ident = fields.new_id(element, where, defined["route"])
            routes[ident] = _edges(fields, element, where)
            count_unread_route(element, counts)
        elif element.tag in ("vehicle", "trip"):
            ident = fields.new_id(element, where, defined["vehicle"])
            count_unread_vehicle(element, counts)
            vehicles.append(_vehicle(fields, element, where, routes, _depart(fields, element, where), ident))
        elif element.tag in ("flow", "interval"):
            # <interval begin end> groups flows and gives them its begin and end
            group = [element] if element.tag == "flow" else list(element)
            for flow in group:
                flow_where = where if flow is element else element_path(flow, where)
                if flow.tag != "flow":
                    fields.fail(flow_where, None, flow.tag, "an <interval> of a route file may hold <flow>s only")
                fields.new_id(flow, flow_where, defined["vehicle"])
                count_unread_vehicle(flow, counts)
                vehicles += _flow(fields, flow, flow_where, routes, counts, window,
                                  room - len(vehicles), None if flow is element else (element, where))
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


def _edges(fields: XmlFields, element, where: str) -> tuple[str, ...]:
    edges = tuple(fields.string(element, "edges", where).split())
    if not edges:
        fields.fail(where, "edges", "", "a route needs at least one edge")
    return edges


def _depart(fields: XmlFields, element, where: str) -> float:
    raw = fields.string(element, "depart", where)
    if ":" in raw:  # SUMO's [days:]hours:minutes:seconds
        return fields.time(element, "depart", where)
    try:
        value = float(raw)
    except ValueError:
        fields.fail(where, "depart", raw, "only departure times are supported (seconds or "
                    "[days:]hours:minutes:seconds; not 'triggered', 'now', ...)")
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
    if element.find("routeDistribution") is not None:
        fields.fail(f"{where}.routeDistribution", None, "routeDistribution",
                    "<routeDistribution> is not supported by the importer")
    if element.tag == "vehicle":
        fields.fail(where, "route", MISSING, "a <vehicle> needs a route attribute or <route>")
    for end in ("from", "to"):  # SUMO routes these only with --junction-taz or a TAZ file
        other = next((f"{end}{kind}" for kind in OTHER_ORIGINS if f"{end}{kind}" in element.attrib), None)
        if end not in element.attrib and other is not None:
            fields.fail(where, other, element.get(other), "trips between junctions or TAZs are not supported, nor "
                        "from or to coordinates: give the 'from' and 'to' edges")
    return SumoVehicle(where, depart, vtype, None, fields.string(element, "from", where),
                       fields.string(element, "to", where), tuple(element.get("via", "").split()),
                       ident, fields.source)


def _flow(fields: XmlFields, element, where: str, routes, counts: Counter, window: tuple[float, float],
          room: int, interval: tuple | None) -> list[SumoVehicle]:
    """The vehicles of a ``<flow>`` within the config's `window`: at begin, begin + period, ...
    while before end (SUMO's rule); ``probability`` flows are approximated by their mean period
    (counted). As in SUMO, an end before begin is refused and an end at begin leaves a ``number``
    flow's vehicles all at begin and other flows without any (counted). Its begin and end default
    to its <interval>'s, else, as SUMO's, to the config's (it took 0 and no end: a flow with only
    an end and a number departed from 0, before the config's begin, and one with a period but no
    end was refused). Refused, before any is built, when its vehicles in the window would take the
    scenario past `MAX_VEHICLES` (`room` more). Begin, period and departures run on SUMO's
    millisecond clock."""
    begin = _time(fields, element, where, "begin", interval, window[0])
    end = _time(fields, element, where, "end", interval, window[1])
    if not end >= begin:
        ended = _holder(element, where, "end", interval)
        if ended is not None:  # its own end or its interval's
            fields.fail(ended[1], "end", ended[0].get("end"), f"the flow ends before its begin ({begin:g})")
        # its end is the config's (SUMO's default too, which refuses the flow as well): name the begin past it
        begun, begun_where = _holder(element, where, "begin", interval)
        fields.fail(begun_where, "begin", begun.get("begin"), f"the flow ends before its begin ({begin:g}): "
                    f"without an end of its own it ends at the config's end ({end:g})")
    rates = [name for name in FLOW_RATES if name in element.attrib]
    if len(rates) > 1:  # SUMO refuses these too
        fields.fail(where, rates[1], element.get(rates[1]), f"a flow takes at most one of {', '.join(FLOW_RATES)} "
                    f"(it also gives {rates[0]})")
    if rates and "number" in element.attrib and "end" in element.attrib:
        fields.fail(where, "number", element.get("number"), f"beside '{rates[0]}' a flow takes at most one of "
                    "'end' and 'number' (SUMO refuses both)")
    # the period on SUMO's millisecond clock, as SUMO counts: departures begin + n * period exactly
    begin_ms = sumo_ms(begin)
    if "period" in element.attrib:
        period_ms = _period_ms(fields, element, where, "period", _period(fields, element, where, counts))
    elif rates and rates[0] in ("vehsPerHour", "perHour"):  # perHour: SUMO's newer name
        period_ms = _period_ms(fields, element, where, rates[0], 3600.0 / fields.positive(element, rates[0], where))
    elif "probability" in element.attrib:
        counts["probability_flows_as_mean_period"] += 1
        period_ms = sumo_ms(1.0 / _probability(fields, element, where))
    elif "number" in element.attrib:
        if not math.isfinite(end):
            fields.fail(where, "end", None, "a flow with 'number' needs an 'end' (its own, its <interval>'s or the "
                        "sumocfg's)")
        # the span over number, floored to the ms; 0 only for a flow ending at its begin: its count is `number`
        period_ms = (sumo_ms(end) - begin_ms) // max(fields.integer(element, "number", where), 1)
    else:
        fields.fail(where, "period", None,
                    "a <flow> needs one of period, vehsPerHour, perHour, probability or number")
    count = -(-(sumo_ms(end) - begin_ms) // period_ms) if math.isfinite(end) and period_ms > 0 else None
    if "number" in element.attrib:
        count = fields.integer(element, "number", where) if count is None else min(
            count, fields.integer(element, "number", where))
    if count is None:
        fields.fail(where, "end", None, "a flow needs an 'end' (its own, its <interval>'s or the sumocfg's) or a "
                    "'number' to be finite")
    if count == 0:
        counts["flows_without_vehicles"] += 1
    first = _first_at_or_after(begin_ms, period_ms, count, window[0])
    stop = _first_at_or_after(begin_ms, period_ms, count, window[1])  # SUMO never inserts one at or after end
    counts["vehicles_before_begin_left_out"] += first
    counts["vehicles_after_end_left_out"] += count - max(stop, first)
    if stop - first > room:
        fields.fail(where, None, stop - first, f"the flow departs this many vehicles within the config's "
                    f"[{window[0]:g}, {window[1]:g}), more than gridlight's limit of {MAX_VEHICLES:,} a scenario "
                    f"(with the vehicles before it: {room:,} more)")
    shaped = _vehicle(fields, element, where, routes, begin, "")
    flow_id = element.get("id", "")
    return [SumoVehicle(f"{where}#{n}", (begin_ms + n * period_ms) / 1000, shaped.vtype, shaped.edges,
                        shaped.origin, shaped.destination, shaped.via,
                        f"{flow_id}.{n}", fields.source) for n in range(first, stop)]


def _time(fields: XmlFields, element, where: str, attribute: str, interval: tuple | None,
          default: float) -> float:
    """A flow's begin or end: its own, else its <interval>'s (`interval`: the element and its
    path), else `default`."""
    element, where = _holder(element, where, attribute, interval) or (element, where)
    value = fields.time(element, attribute, where, default)
    if attribute == "begin" and not value >= 0:
        fields.fail(where, attribute, element.get(attribute), "must be >= 0")
    return value


def _holder(element, where: str, attribute: str, interval: tuple | None) -> tuple | None:
    """The flow (`element` at `where`) or its `interval` (element, path) whose `attribute` the
    flow takes: its own first; None when neither gives it."""
    if attribute in element.attrib:
        return element, where
    if interval is not None and attribute in interval[0].attrib:
        return interval
    return None


def _period(fields: XmlFields, element, where: str, counts: Counter) -> float:
    """A flow's ``period`` in seconds; ``exp(X)`` (SUMO's exponentially distributed gaps, X departures a
    second on average) is approximated by its mean gap 1/X and counted, as a probability flow is."""
    raw = element.get("period").strip()
    if not raw.startswith("exp"):
        return fields.positive(element, "period", where)
    try:
        rate = float(raw[4:-1]) if raw.startswith("exp(") and raw.endswith(")") else math.nan
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        fields.fail(where, "period", element.get("period"), "expected seconds > 0 or exp(X) with a rate X > 0")
    counts["exponential_flows_as_mean_period"] += 1
    return 1.0 / rate


def _period_ms(fields: XmlFields, element, where: str, attribute: str, period: float) -> int:
    """A flow's period on SUMO's millisecond clock, refused when that is 0."""
    rounded = sumo_ms(period)
    if rounded <= 0:
        fields.fail(where, attribute, element.get(attribute), "gives a period under SUMO's 1 ms clock")
    return rounded


def sumo_ms(seconds: float) -> int:
    """`seconds` on SUMO's millisecond clock (TIME2STEPS rounds)."""
    return round(seconds * 1000)


def _first_at_or_after(begin_ms: int, period_ms: int, count: int, time: float) -> int:
    """The first n < count whose departure ``begin_ms + n * period_ms`` is at or after `time` (s;
    `count` if none), in whole milliseconds."""
    if not math.isfinite(time):
        return count
    if period_ms <= 0:
        return 0 if begin_ms >= sumo_ms(time) else count
    return min(max(-(-(sumo_ms(time) - begin_ms) // period_ms), 0), count)


def _probability(fields: XmlFields, element, where: str) -> float:
    """A flow's ``probability`` (of a departure each second): within (0, 1], as SUMO requires."""
    probability = fields.positive(element, "probability", where)
    if probability > 1.0:
        fields.fail(where, "probability", element.get("probability"),
                    "a departure probability per second must be within (0, 1]")
    return probability
