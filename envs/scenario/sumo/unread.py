"""Counts what a route file's vTypes and vehicles give that the import does not follow: every
attribute and child element it does not read, so that nothing changes the simulation unreported
(a reaction time, lane-change or junction model parameters, a rerouting device, stops, ...).
Only what changes no vehicle's movement (colours, drawing shapes, an earlier run's outputs) goes
uncounted."""

from __future__ import annotations

from collections import Counter

# a vType's attributes the import reads (route_reader.vehicle_type; a <carFollowing-Krauss> child's
# attributes are merged into the vType's first)
VTYPE_READ = frozenset(("id", "vClass", "length", "width", "minGap", "accel", "decel", "emergencyDecel",
                        "maxSpeed", "tau", "sigma"))
# a <vehicle>'s, <trip>'s or <flow>'s attributes the import reads
VEHICLE_READ = frozenset(("id", "type", "depart", "route", "from", "to", "via", "begin", "end", "period",
                          "vehsPerHour", "perHour", "probability", "number"))
# only drawn, or what an earlier SUMO run wrote into its route output (its `arrival` time, the route's
# length), which SUMO does not read back: they change no vehicle's movement
COSMETIC = frozenset(("color", "guiShape", "imgFile", "osgFile", "arrival", "routeLength"))


CAR_FOLLOWING = "carFollowing-"  # a vType's child naming its car-following model: <carFollowing-IDM .../>


def count_unread_vtype(attributes, children, counts: Counter) -> None:
    """A vType's `attributes` (its car-following child's merged in) and `children`:
    ``vtype_<attribute>_ignored``, ``vtype_<child>_ignored``, and a car-following model other than
    Krauss as ``vtype_carFollowModel_<MODEL>_driven_as_Krauss``, once per vType whether the
    ``carFollowModel`` attribute, a ``<carFollowing-MODEL>`` child or both name it."""
    for attribute in attributes:
        if attribute not in VTYPE_READ and attribute not in COSMETIC and attribute != "carFollowModel":
            counts[f"vtype_{attribute}_ignored"] += 1
    models = [str(child.tag)[len(CAR_FOLLOWING):] for child in children if str(child.tag).startswith(CAR_FOLLOWING)]
    for child in children:
        if not str(child.tag).startswith(CAR_FOLLOWING):
            counts[f"vtype_{child.tag}_ignored"] += 1
    # the child's model first (its parameters are the ones merged); Krauss: the engine's model, SUMO's default
    other = [model for model in (*models, attributes.get("carFollowModel")) if model not in (None, "Krauss")]
    if other:  # named: a user learns which vehicles run as Krauss instead of their model
        counts[f"vtype_carFollowModel_{other[0]}_driven_as_Krauss"] += 1


def count_unread_vehicle(element, counts: Counter) -> None:
    """A vehicle's, trip's or flow's: ``vehicle_<attribute>_ignored``, its own and its route's
    stops (``vehicle_stops_ignored``), a route's ``repeat`` (``route_repeat_ignored``: the engine
    drives a route once) and other children (``vehicle_<child>_ignored``)."""
    for attribute in element.attrib:
        if attribute not in VEHICLE_READ and attribute not in COSMETIC:
            counts[f"vehicle_{attribute}_ignored"] += 1
    for child in element:
        if child.tag == "route":
            counts["route_repeat_ignored"] += "repeat" in child.attrib
            counts["vehicle_stops_ignored"] += sum(1 for stop in child if stop.tag == "stop")
        elif child.tag == "stop":
            counts["vehicle_stops_ignored"] += 1
        else:
            counts[f"vehicle_{child.tag}_ignored"] += 1


def count_unread_route(element, counts: Counter) -> None:
    """A named ``<route>``'s: its ``repeat`` (``route_repeat_ignored``: the engine drives a route once),
    its stops (``route_stops_ignored``, once per route however many vehicles take it) and other children
    (``route_<child>_ignored``)."""
    counts["route_repeat_ignored"] += "repeat" in element.attrib
    for child in element:
        counts["route_stops_ignored" if child.tag == "stop" else f"route_{child.tag}_ignored"] += 1
