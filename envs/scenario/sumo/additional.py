"""SUMO additional files (the sumocfg's ``additional-files``), read as SUMO loads them: after the
net and before the route files. Their traffic-light programs replace the net's program of the
same light (SUMO runs a light's last loaded program); their vTypes, routes and vehicles join the
route files' namespace (a route file may use a vType they define); everything else (detectors,
stops, polygons, rerouters, speed signs, ...) is counted as ``additional_<tag>_ignored``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from envs.scenario.sumo.net_reader import SumoNet, read_programs
from envs.scenario.sumo.route_reader import SumoRoutes, read_routes
from envs.scenario.sumo.xml_fields import XmlFields, read_xml

# what a route file holds (route_reader reads or refuses each)
ROUTE_TAGS = ("vType", "route", "vehicle", "trip", "flow", "interval", "routeDistribution", "vTypeDistribution",
              "person", "personFlow", "container", "containerFlow")


def read_additional(path: str | Path, net: SumoNet, counts: Counter, window: tuple[float, float],
                    earlier: SumoRoutes | None) -> SumoRoutes | None:
    """Applies the file's programs to `net` and returns the route namespace with its route
    elements added (`earlier` unchanged when it has none)."""
    fields = XmlFields(str(path))
    root = read_xml(path, ("additional", "routes"))  # a route file may be listed too, to load its vTypes first
    programs: dict = {}
    skipped: Counter = Counter()
    # each light once: a second program of it in this file is counted by read_programs, as replacing the first
    for ident in dict.fromkeys(read_programs(fields, root, programs, lambda kind: skipped.update([kind]))):
        if ident not in net.programs:  # it would control no link: a misspelt id
            fields.fail(f"tlLogic[id={ident}]", "id", ident, "names no traffic light of the net")
        signals = len(programs[ident].phases[0].state)
        used = max((c.link_index for c in net.connections if c.tl == ident), default=-1)
        if used >= signals:
            fields.fail(f"tlLogic[id={ident}].phase[0]", "state", programs[ident].phases[0].state,
                        f"{signals} signals; the net's connections of light {ident!r} use linkIndex {used}")
        counts["earlier_programs_replaced"] += 1  # the net's program of the light
    counts.update(skipped)
    net.programs.update(programs)
    routes = root.makeelement("routes", {})
    for element in root:
        if element.tag in ROUTE_TAGS:
            routes.append(element)
        elif element.tag != "tlLogic":
            counts[f"additional_{element.tag}_ignored"] += 1
    if not len(routes):
        return earlier
    return read_routes(path, counts, window, earlier, routes)
