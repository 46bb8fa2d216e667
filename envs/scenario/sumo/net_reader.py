"""Read a SUMO ``.net.xml`` into plain records: junctions, edges and their lanes, lane-to-lane
connections (with the length of the internal lanes they drive through) and traffic-light
programs. Nothing is interpreted here beyond SUMO's own defaults; `to_cityflow` decides what
becomes of each record."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from envs.scenario.sumo.junction_kinds import DEAD_END_STATE, JUNCTION_TYPES, LINK_STATES
from envs.scenario.sumo.net_unread import (count_unread_connection, count_unread_edge, count_unread_elements,
                                           count_unread_junction, count_unread_lane, unread_of_static_program)
from envs.scenario.sumo.xml_fields import XmlFields, element_path, read_xml

# the vehicle class gridlight simulates; lanes that do not allow it are left out
PASSENGER = "passenger"
# edge functions that carry no vehicle traffic (SUMO's pedestrian areas) or only join lanes
# inside a junction (internal edges, id ':...': their lengths are kept as connection lengths)
PEDESTRIAN_FUNCTIONS = ("walkingarea", "crossing")
INTERNAL_FUNCTION = "internal"
# No road's speed limit comes near this (3600 km/h; these datasets' fastest lanes allow 83 m/s):
# a faster lane is refused as the lane's `speed` here, rather than later as a roadnet field, when
# a short road it feeds, lengthened to that speed x 1 s + 1 m (to_roadnet), ends beyond 1e9 m
MAX_LANE_SPEED_MS = 1000.0
# the program types SUMO 1.28 loads from a net (the import runs them all with their durations, counted);
# any other is refused, as SUMO refuses it
PROGRAM_TYPES = ("static", "actuated", "delay_based", "NEMA", "off")
# SUMO's spellings of a boolean attribute (`lefthand`), case aside
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on", "x"), ("false", "0", "no", "off", "-")


@dataclass(frozen=True)
class SumoLane:
    id: str
    index: int  # SUMO's lane index: 0 is the rightmost lane
    speed: float
    length: float
    shape: tuple[tuple[float, float], ...]
    passenger: bool  # passenger cars may drive on it


@dataclass(frozen=True)
class SumoEdge:
    id: str
    start: str  # junction ids
    end: str
    lanes: tuple[SumoLane, ...]  # by SUMO index


@dataclass(frozen=True)
class SumoJunction:
    id: str
    type: str
    point: tuple[float, float]
    # SUMO's right of way, per link index (the junction's `intLanes` order): which links this
    # one must give way to (its <request>'s `response` bits); empty without internal lanes
    int_lanes: tuple[str, ...] = ()
    yields_to: tuple[frozenset[int], ...] = ()


@dataclass(frozen=True)
class SumoConnection:
    from_edge: str
    to_edge: str
    from_lane: int  # SUMO lane indices
    to_lane: int
    direction: str  # s, l, r, t, L, R (SUMO's dir)
    tl: str | None  # the controlling traffic light, None when unsignalised
    link_index: int | None
    length: float  # metres driven inside the junction (its internal lanes), 0 without them
    where: str  # element path for error messages
    # the internal lanes it drives through, in order (one of them names its link in the
    # junction's `intLanes`: the first, or the one after an internal junction)
    via: tuple[str, ...] = ()
    state: str = ""  # SUMO's link state (junction_kinds), "" when not written
    passenger: bool = True  # passenger cars may drive through its internal lanes (their allow/disallow)


@dataclass(frozen=True)
class SumoPhase:
    duration: float
    state: str
    next: tuple[str, ...] = ()  # SUMO's `next` phase indices, when given (the import runs phases in order)


@dataclass(frozen=True)
class SumoProgram:
    id: str
    program_id: str
    type: str
    offset: float
    phases: tuple[SumoPhase, ...]
    unread: tuple[str, ...] = ()  # report keys of what a static program gives that is not followed (net_unread)


@dataclass
class SumoNet:
    source: str
    junctions: dict[str, SumoJunction]
    edges: dict[str, SumoEdge]  # normal edges only, in file order
    connections: list[SumoConnection]
    programs: dict[str, SumoProgram]  # each traffic light's last loaded program, as SUMO runs
    skipped: dict[str, int] = field(default_factory=dict)  # what was read but not kept, by kind


def passenger_allowed(allow: str | None, disallow: str | None) -> bool:
    """SUMO's permission rule: `allow` lists the classes when given, else `disallow` excludes."""
    if allow is not None:
        classes = allow.split()
        return PASSENGER in classes or "all" in classes
    if disallow is not None:
        classes = disallow.split()
        return PASSENGER not in classes and "all" not in classes
    return True


def read_net(path: str | Path) -> SumoNet:
    source = str(path)
    fields = XmlFields(source)
    root = read_xml(path, "net")
    _check_right_hand(fields, root)
    skipped: Counter = Counter()  # what was read but not kept, and what SUMO simulates that the import does not

    def skip(kind: str) -> None:
        skipped[kind] += 1

    count_unread_elements(root, skipped)

    junctions = {}
    every_junction_id = set()  # internal junctions too: SUMO refuses a second junction of an id
    for element in root.iter("junction"):
        where = element_path(element)
        ident = fields.new_id(element, where, every_junction_id)
        kind = element.get("type", "priority")
        if kind == "internal":
            continue
        if kind not in JUNCTION_TYPES:  # SUMO refuses it; it was driven as a priority junction
            fields.fail(where, "type", kind, f"unknown junction type; SUMO's: {', '.join(JUNCTION_TYPES)}")
        count_unread_junction(element, skipped)
        point = (fields.number(element, "x", where), fields.number(element, "y", where))
        int_lanes = tuple(element.get("intLanes", "").split())
        junctions[ident] = SumoJunction(ident, kind, point, int_lanes,
                                        _read_requests(fields, element, where, len(int_lanes)))

    edges: dict[str, SumoEdge] = {}
    every_edge_id = set()  # internal and pedestrian edges too: a connection may name them
    every_lane_id: set[str] = set()  # one namespace for all lanes, as in SUMO
    internal_lane_length: dict[str, float] = {}
    internal_passenger: dict[str, bool] = {}  # a passage of the junction cars may not use (allow="bus") is not theirs
    for element in root.iter("edge"):
        where = element_path(element)
        ident = fields.new_id(element, where, every_edge_id)
        for lane in element.iter("lane"):  # SUMO: "Another lane with the id ... exists"
            if "id" in lane.attrib:  # a missing one is named where the lane is read
                fields.new_id(lane, element_path(lane, where), every_lane_id)
        function = element.get("function", "normal")
        if function == INTERNAL_FUNCTION:
            for lane in element.iter("lane"):
                lane_where = element_path(lane, where)
                internal_lane_length[fields.string(lane, "id", lane_where)] = fields.non_negative(
                    lane, "length", lane_where)
                internal_passenger[lane.get("id")] = passenger_allowed(lane.get("allow"), lane.get("disallow"))
            continue
        if function in PEDESTRIAN_FUNCTIONS:
            skip(f"{function}_edges_left_out")
            continue
        start, end = fields.string(element, "from", where), fields.string(element, "to", where)
        for attribute, junction in (("from", start), ("to", end)):
            if junction not in junctions:
                fields.fail(where, attribute, junction, "names an unknown junction")
        lanes = tuple(_read_lane(fields, lane, element_path(lane, where))
                      for lane in element.iter("lane"))
        if not lanes:
            fields.fail(where, None, ident, "an edge needs at least one <lane>")
        for lane, read in zip(element.iter("lane"), lanes):
            if read.passenger:  # what a left-out lane (or edge) gives changes nothing the engine drives
                count_unread_lane(lane, skipped)
        if any(lane.passenger for lane in lanes):
            count_unread_edge(element, skipped)
        if sorted(lane.index for lane in lanes) != list(range(len(lanes))):
            fields.fail(where, "lane@index", [lane.index for lane in lanes],
                        "lane indices must be 0..n-1")
        edges[ident] = SumoEdge(ident, start, end, tuple(sorted(lanes, key=lambda x: x.index)))

    connections, next_internal = [], {}
    raw_connections = list(root.iter("connection"))
    program_ids = {element.get("id") for element in root.iter("tlLogic")}
    links: dict[tuple, int] = {}  # (from, fromLane, to, toLane) -> its connection's position
    for element in raw_connections:  # internal lane -> the internal lane it continues on
        if element.get("from", "").startswith(":") and element.get("via"):
            next_internal[f"{element.get('from')}_{element.get('fromLane')}"] = element.get("via")
    for position, element in enumerate(raw_connections):
        where = f"connection[{position}]"
        from_edge = fields.string(element, "from", where)
        to_edge = fields.string(element, "to", where)
        for attribute, edge_id in (("from", from_edge), ("to", to_edge)):
            if edge_id not in every_edge_id:
                fields.fail(where, attribute, edge_id, "names no <edge> of the net")
        # SUMO refuses to load a net whose connection passes through a lane it does not have;
        # here the connection's internal length (and right of way) silently became 0 (none)
        if element.get("via") and element.get("via") not in internal_lane_length:
            fields.fail(where, "via", element.get("via"), "names no internal lane of the net")
        link = (from_edge, element.get("fromLane"), to_edge, element.get("toLane"))
        if link in links:  # netconvert writes one per lane pair: which signal and internal lanes would the link have?
            fields.fail(where, None, f"{link[0]}_{link[1]}->{link[2]}_{link[3]}",
                        f"repeats connection[{links[link]}] (the same from, fromLane, to and toLane): a link "
                        "needs one connection, with one signal and one way through the junction")
        links[link] = position
        if from_edge.startswith(":"):
            continue  # inside a junction: its length is counted through `via` below
        # pedestrian edges (walking areas, crossings) are left out, and so are their connections
        if from_edge not in edges or to_edge not in edges:
            skip("connections_of_left_out_edges")
            continue
        tl = element.get("tl")
        link_index = fields.integer(element, "linkIndex", where) if tl else None
        lanes = {}
        for attribute, edge_id in (("fromLane", from_edge), ("toLane", to_edge)):
            lanes[attribute] = fields.integer(element, attribute, where)
            if lanes[attribute] >= len(edges[edge_id].lanes):
                fields.fail(where, attribute, lanes[attribute],
                            f"edge {edge_id!r} has {len(edges[edge_id].lanes)} lanes")
        via = _via_chain(element.get("via"), internal_lane_length, next_internal)
        state = element.get("state", "")
        if len(state) > 1 or state not in LINK_STATES:  # SUMO refuses it
            fields.fail(where, "state", state, f"unknown link state; SUMO's: {' '.join(LINK_STATES)}")
        passenger = all(internal_passenger[lane] for lane in via)
        if edges[from_edge].lanes[lanes["fromLane"]].passenger and edges[to_edge].lanes[lanes["toLane"]].passenger:
            _check_kind(fields, junctions[edges[from_edge].end], where, tl, state)  # before its light is looked up
            # one between left-out lanes is left out too; with internal lanes, theirs are its allow/disallow
            count_unread_connection(element, skipped, ("allow", "disallow") if via else ())
        if tl is not None and tl not in program_ids:
            fields.fail(where, "tl", tl, "names no <tlLogic>")
        connections.append(SumoConnection(
            from_edge, to_edge, lanes["fromLane"], lanes["toLane"], element.get("dir", "s"), tl,
            link_index, sum(internal_lane_length[lane] for lane in via), where, via, state, passenger))

    programs: dict[str, SumoProgram] = {}
    read_programs(fields, root, programs, skip)
    used = {element.get("tl") for element in raw_connections}
    for ident in programs.keys() - used:  # it switches no link, in SUMO too
        skip("programs_without_connections_ignored")
    check_link_indices(fields, connections, programs)
    return SumoNet(source, junctions, edges, connections, programs, skipped)


def read_programs(fields: XmlFields, root, programs: dict[str, SumoProgram], skip) -> list[str]:
    """The ``<tlLogic>``s under `root` into `programs` (a light's later program replaces its
    earlier one, `skip`ped as ``earlier_programs_replaced``: SUMO runs the last loaded); returns
    the ids read, in order."""
    read = []
    for element in root.iter("tlLogic"):
        where = element_path(element)
        ident = fields.string(element, "id", where)
        if ident in programs:  # SUMO runs a light's last loaded program (no WAUT switches between them)
            skip("earlier_programs_replaced")
        phases = tuple(
            SumoPhase(_duration(fields, phase, f"{where}.phase[{k}]"),
                      fields.string(phase, "state", f"{where}.phase[{k}]"), tuple(phase.get("next", "").split()))
            for k, phase in enumerate(element.iter("phase")))
        if not phases:
            fields.fail(where, None, ident, "a traffic light program needs at least one <phase>")
        for k, phase in enumerate(phases):  # SUMO: "Mismatching phase state length"
            if len(phase.state) != len(phases[0].state):
                fields.fail(f"{where}.phase[{k}]", "state", phase.state, f"{len(phase.state)} signals; the "
                            f"program's first phase has {len(phases[0].state)} (every phase needs one per link)")
        kind = element.get("type", "static")
        if kind not in PROGRAM_TYPES:  # "statc" ran as a static program
            fields.fail(where, "type", kind, f"unknown traffic light type; SUMO's: {', '.join(PROGRAM_TYPES)}")
        programs[ident] = SumoProgram(ident, element.get("programID", "0"), kind,
                                      fields.time(element, "offset", where, 0.0), phases,
                                      unread_of_static_program(element) if kind == "static" else ())
        read.append(ident)
    return read


def _check_right_hand(fields: XmlFields, root) -> None:
    """A left-hand net (``lefthand="true"``) is refused: gridlight's crossing test (`network._crossing_conflicts`)
    places a leg's incoming lanes counter-clockwise of its outgoing ones, as right-hand traffic drives; on the left,
    a left turn would be found crossing the oncoming straight and a right turn not (the import would relax or
    refuse the wrong greens)."""
    written = root.get("lefthand")
    if written is None or written.lower() in FALSE_WORDS:
        return
    if written.lower() not in TRUE_WORDS:
        fields.fail("net", "lefthand", written, "expected true or false")
    fields.fail("net", "lefthand", written, "a left-hand traffic net is not supported: gridlight's junctions "
                "(which movements cross) are modelled for right-hand traffic")


def _check_kind(fields: XmlFields, junction: SumoJunction, where: str, tl: str | None, state: str) -> None:
    """A connection passenger cars drive at a junction the engine cannot model is refused (`junction_kinds`)."""
    if tl is None and state == DEAD_END_STATE:
        fields.fail(where, "state", state, "a dead-end link: SUMO lets no vehicle through it")


def _duration(fields: XmlFields, phase, where: str) -> float:
    """A phase's ``duration``: seconds or, as SUMO reads times, [days:]hours:minutes:seconds; > 0."""
    duration = fields.time(phase, "duration", where)
    if not duration > 0:
        fields.fail(where, "duration", phase.get("duration"), "must be > 0")
    return duration


def check_link_indices(fields: XmlFields, connections, programs: dict[str, SumoProgram]) -> None:
    """Every signalised connection's ``linkIndex`` within its light's program."""
    for connection in connections:
        if connection.tl is None:
            continue
        states = {len(phase.state) for phase in programs[connection.tl].phases}
        if connection.link_index >= min(states):
            fields.fail(connection.where, "linkIndex", connection.link_index,
                        f"traffic light {connection.tl!r} has only {min(states)} signal states")


def _read_lane(fields: XmlFields, element, where: str) -> SumoLane:
    speed = fields.positive(element, "speed", where)
    if not speed <= MAX_LANE_SPEED_MS:
        fields.fail(where, "speed", element.get("speed"),
                    f"beyond {MAX_LANE_SPEED_MS:g} m/s: no road's speed limit")
    return SumoLane(
        id=fields.string(element, "id", where),
        index=fields.integer(element, "index", where),
        speed=speed,
        length=fields.positive(element, "length", where),
        shape=fields.shape(element, "shape", where),
        passenger=passenger_allowed(element.get("allow"), element.get("disallow")),
    )


def _read_requests(fields: XmlFields, element, where: str, links: int
                   ) -> tuple[frozenset[int], ...]:
    """Per link index, the links it yields to: bit j of a <request>'s `response` (written with
    link 0 last) set means this link gives way to link j."""
    requests = list(element.iter("request"))
    if not links or not requests:
        return ()
    yields: list[frozenset[int] | None] = [None] * links
    for k, request in enumerate(requests):
        request_where = f"{where}.request[{k}]"
        index = fields.integer(request, "index", request_where)
        if not 0 <= index < links or yields[index] is not None:
            fields.fail(request_where, "index", index,
                        f"must be a new link index below the junction's {links} intLanes")
        response = fields.string(request, "response", request_where)
        if len(response) != links or set(response) - {"0", "1"}:
            fields.fail(request_where, "response", response,
                        f"must be {links} bits, one per link of the junction")
        yields[index] = frozenset(j for j, bit in enumerate(reversed(response)) if bit == "1")
    if any(y is None for y in yields):
        fields.fail(where, "request", len(requests),
                    f"a junction with {links} intLanes needs a <request> per link")
    return tuple(yields)


def _via_chain(via: str | None, internal_lane_length: dict[str, float],
               next_internal: dict[str, str]) -> tuple[str, ...]:
    """The chain of internal lanes a connection drives through (empty without any)."""
    chain: list[str] = []
    while via and via not in chain and via in internal_lane_length:
        chain.append(via)
        via = next_internal.get(via)
    return tuple(chain)
