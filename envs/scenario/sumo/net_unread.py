"""Counts what a net file gives that the import does not follow, as `unread` does for route files:
every attribute and child of a normal edge with a passenger lane, its passenger lanes, a junction and a
connection between passenger lanes that SUMO's simulation acts on and the import does not read (what is
left out, a sidewalk or a bus-only road, changes nothing the engine drives), and the net's other
elements (``<roundabout>``, ``<prohibition>``, ...). Keys: ``lane_<attribute>_ignored``,
``lane_<child>_ignored``, ``edge_...``, ``junction_...``, ``connection_...``, ``net_<tag>_ignored``,
``type_<child>_ignored``; and a static light program's (``program_...``, ``phase_...``).

Not counted: what only draws or names (shapes, a street's name, a lane's width: SUMO's default
lane changer does not use it, its sublane model does, and the sumocfg option that turns that on is
counted), and what netconvert records that it already built into what the import reads (a lane's
``endOffset`` shortened the lane, whose ``length`` is read; a connection's ``pass`` is in its
junction's ``<request>`` bits, its ``uncontrolled`` in its missing ``tl``, its ``length`` in its
internal lanes'); SUMO's simulation (its NLHandler) does not read those records either."""

from __future__ import annotations

from collections import Counter

# read by net_reader (a lane's allow/disallow decide whether it is a passenger lane)
LANE_READ = frozenset(("id", "index", "speed", "length", "shape", "allow", "disallow"))
EDGE_READ = frozenset(("id", "from", "to", "function"))
JUNCTION_READ = frozenset(("id", "type", "x", "y", "intLanes"))
# `state`: who must stop (junction_kinds; the right of way itself the import takes from the junction's <request>s)
CONNECTION_READ = frozenset(("from", "to", "fromLane", "toLane", "via", "tl", "linkIndex", "dir", "state"))
# drawn or named only, or built by netconvert into what is read (see the module's docstring)
LANE_NOT_SIMULATED = frozenset(("width", "type", "customShape", "endOffset"))
# `priority` SUMO keeps "only for visualization"; `length`: the lanes' lengths hold it; `distance`: kilometrage
EDGE_NOT_SIMULATED = frozenset(("priority", "type", "name", "spreadType", "shape", "length", "distance"))
# `incLanes`: the edges' ends give them; `z`: an elevation (the engine's network is flat); the rest
# netconvert's inputs, already built into the junction's requests, internal lanes and connections (keepClear)
JUNCTION_NOT_SIMULATED = frozenset(("incLanes", "shape", "customShape", "z", "name", "radius", "rightOfWay",
                                    "fringe", "keepClear"))
CONNECTION_NOT_SIMULATED = frozenset(("pass", "uncontrolled", "length", "shape", "customShape", "type"))
# the net's elements the import reads; <location> (the map projection) changes no vehicle's movement, a
# <type>'s own attributes describe the edges built from it (its children, vClass speed limits, are counted)
NET_READ = frozenset(("edge", "junction", "connection", "tlLogic", "location", "type"))


def _count(element, prefix: str, read: frozenset, not_simulated: frozenset, counts: Counter,
           children_read: tuple[str, ...] = ()) -> None:
    for attribute in element.attrib:
        if attribute not in read and attribute not in not_simulated:
            counts[f"{prefix}_{attribute}_ignored"] += 1
    for child in element:
        if child.tag not in children_read:
            counts[f"{prefix}_{child.tag}_ignored"] += 1


def count_unread_edge(element, counts: Counter) -> None:
    """A normal edge's: ``edge_<attribute>_ignored`` (``bidi``, ...), ``edge_<child>_ignored``
    (``stopOffset``, ``param``; its lanes are read)."""
    _count(element, "edge", EDGE_READ, EDGE_NOT_SIMULATED, counts, ("lane",))


def count_unread_lane(element, counts: Counter) -> None:
    """A passenger lane's: ``lane_<attribute>_ignored`` (``changeLeft``, ``changeRight``, ``acceleration``,
    ``friction``, ...) and ``lane_<child>_ignored`` (``neigh``, ``stopOffset``, ``param``)."""
    _count(element, "lane", LANE_READ, LANE_NOT_SIMULATED, counts)


def count_unread_junction(element, counts: Counter) -> None:
    """A junction's (not an internal one's): ``junction_<attribute>_ignored``, ``junction_<child>_ignored``
    (``param``; its requests are read)."""
    _count(element, "junction", JUNCTION_READ, JUNCTION_NOT_SIMULATED, counts, ("request",))


def count_unread_connection(element, counts: Counter, also_read: tuple[str, ...] = ()) -> None:
    """A connection's between passenger lanes: ``connection_<attribute>_ignored`` (``keepClear``,
    ``visibility``, ``contPos``, ``speed``, ``indirect``, ...) and ``connection_<child>_ignored``;
    `also_read`: attributes read through another element (``allow``: its internal lanes')."""
    _count(element, "connection", CONNECTION_READ | frozenset(also_read), CONNECTION_NOT_SIMULATED, counts)


def count_unread_elements(root, counts: Counter) -> None:
    """The net's elements other than those read: ``net_<tag>_ignored`` (``roundabout``: SUMO's lane
    changers use it; ``prohibition``: SUMO's simulation does not read it either, netconvert built it into
    the junction's ``<request>`` bits, which the import reads),
    and the children of edge types (``type_<child>_ignored``: ``restriction``, a vClass's speed limit)."""
    for element in root:
        if element.tag not in NET_READ:
            counts[f"net_{element.tag}_ignored"] += 1
        elif element.tag == "type":
            _count(element, "type", frozenset(element.attrib), frozenset(), counts)


# a <tlLogic>'s and its <phase>s' attributes the import reads (a phase's `next`: counted where it is not the
# following phase, in `programs`); `name`s label; what SUMO's static logic (MSSimpleTrafficLightLogic, which
# switches by `duration` and `next` alone) does not use either: the actuated, NEMA and coordinated timings
PROGRAM_READ = frozenset(("id", "type", "programID", "offset"))
PHASE_READ = frozenset(("duration", "state", "next"))
PHASE_NOT_SIMULATED_STATIC = frozenset(("name", "minDur", "maxDur", "earliestEnd", "latestEnd", "vehext",
                                        "yellow", "red"))


def unread_of_static_program(element) -> tuple[str, ...]:
    """What a static ``<tlLogic>`` gives that the import does not follow, one key per occurrence:
    ``program_<attribute or child>_ignored`` (``<param>``: parameters of the light) and
    ``phase_<attribute or child>_ignored``. A program of another type is run static and counted as a whole
    (``<type>_programs_run_static``): its timings and parameters are what it is not run by."""
    counts: Counter = Counter()
    _count(element, "program", PROGRAM_READ, frozenset(), counts, ("phase",))
    for phase in element.iter("phase"):
        _count(phase, "phase", PHASE_READ, PHASE_NOT_SIMULATED_STATIC, counts)
    return tuple(counts.elements())
