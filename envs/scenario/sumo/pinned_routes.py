"""A copy of a SUMO scenario whose origin/destination trips carry given routes.

The importer routes a ``<trip>`` once, by free-flow travel time (`to_flow.Router`); SUMO routes it
at insertion by the travel times it observes, and tools such as SUMO's ``duaiterate`` compute
equilibrium routes. `pin_routes` takes the routes from a SUMO ``--vehroute-output`` file and
writes the scenario again with each listed trip turned into a vehicle with that route, so
``scenario_from_sumo`` imports the routes as given. Trips the file does not list stay trips.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr
from pathlib import Path

from envs.errors import ConfigError, ScenarioError
from envs.scenario.sumo.config import SumoConfig, read_config
from envs.scenario.sumo.xml_fields import read_xml

_TRIP_ONLY_ATTRIBUTES = ("from", "to", "via", "fromTaz", "toTaz", "fromJunction", "toJunction")


def routes_driven(vehroutes: str | Path) -> dict[str, str]:
    """Vehicle id -> the edges of the route it drove, from a SUMO ``--vehroute-output`` file.

    A vehicle rerouted before or after insertion lists every route it was given; it drove the
    last one."""
    out = {}
    for vehicle in read_xml(vehroutes, "routes").iter("vehicle"):
        routes = list(vehicle.iter("route"))
        if not routes or not routes[-1].get("edges"):
            raise ScenarioError(str(vehroutes), f"vehicle[id={vehicle.get('id')}]/route@edges",
                                None, "a vehroute vehicle needs a route with edges")
        out[vehicle.get("id")] = routes[-1].get("edges")
    return out


def pin_routes(config: SumoConfig, routes: dict[str, str], workdir: str | Path) -> tuple[SumoConfig, dict]:
    """Write `config`'s scenario into `workdir` with the trips in `routes` pinned to their routes.

    Returns the new config and counts: trips pinned, trips left as trips, origin/destination
    pairs among the pinned trips and how many of them `routes` sends along more than one path.
    `workdir` is created if needed; one that cannot be (a file on its path) is a ConfigError."""
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # FileExistsError / NotADirectoryError: a file in the way
        raise ConfigError("<pin_routes>", "workdir", str(workdir),
                          f"cannot write the pinned scenario there: {error.strerror}") from None
    route_files, pinned, left = [], 0, 0
    paths: dict[tuple, set[str]] = {}
    for k, route_file in enumerate(config.route_files):
        tree = ET.ElementTree(read_xml(route_file, "routes"))
        for trip in tree.getroot().iter("trip"):
            edges = routes.get(trip.get("id"))
            if edges is None:
                left += 1
                continue
            paths.setdefault((trip.get("from"), trip.get("to")), set()).add(edges)
            trip.tag = "vehicle"
            for attribute in _TRIP_ONLY_ATTRIBUTES:
                trip.attrib.pop(attribute, None)
            ET.SubElement(trip, "route", edges=edges)
            pinned += 1
        route_files.append(f"pinned_{k}.rou.xml")
        tree.write(workdir / route_files[-1])
    net = Path(config.net_file).resolve()  # the network itself is unchanged: referenced, not copied
    # so are the additional files (their programs and vTypes; trips they hold stay trips)
    additional = ",".join(str(Path(name).resolve()) for name in config.additional_files)
    path = workdir / "pinned.sumocfg"
    path.write_text(  # quoteattr: a folder named 'a&b' made the config malformed XML
        f"<configuration><input><net-file value={quoteattr(str(net))}/>"
        f"<route-files value=\"{','.join(route_files)}\"/>"
        + (f"<additional-files value={quoteattr(additional)}/>" if additional else "") + "</input>"
        f"<time><begin value=\"{config.begin!r}\"/><end value=\"{config.end!r}\"/></time>"  # repr: every digit
        "</configuration>\n")
    counts = {"trips_pinned": pinned, "trips_left_unpinned": left, "od_pairs_pinned": len(paths),
              "od_pairs_on_several_routes": sum(len(r) > 1 for r in paths.values())}
    return read_config(path), counts
