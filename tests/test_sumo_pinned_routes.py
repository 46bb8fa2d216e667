"""Pinning trips to given routes (a SUMO --vehroute-output file), on the hand-written scenario."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from envs.errors import ScenarioError
from envs.scenario import load_scenario, scenario_from_sumo
from envs.scenario.registry import SUMO_DATASETS
from envs.scenario.sumo.config import find_config, read_config
from envs.scenario.sumo.pinned_routes import pin_routes, routes_driven
from tests.sumo_fixtures import CONFIG, DETOUR, NET, ROUTES, write_tiny

# two trips from WC to EX; free flow prefers WC-CE-EX when NE's limit is 5 m/s
TWO_TRIPS = ROUTES.replace("</routes>", '<trip id="w1" depart="101" type="car" from="WC" to="EX"/>'
                           '<trip id="w2" depart="102" type="car" from="WC" to="EX"/></routes>')
# w1 was rerouted once before it left: it drove the second route listed
VEHROUTES = """<routes>
  <vehicle id="w1" depart="101.00"><routeDistribution>
    <route replacedOnEdge="" edges="WC CE EX"/><route edges="WC CN NE EX"/></routeDistribution></vehicle>
  <vehicle id="w2" depart="102.00"><route edges="WC CE EX"/></vehicle>
  <vehicle id="v0" depart="100.00"><route edges="WC CE"/></vehicle>
</routes>
"""


def routes_of(scenario) -> list[tuple[str, ...]]:
    road_ids = scenario.network.road_ids
    return [tuple(road_ids[r] for r in row if r >= 0) for row in scenario.trips.routes.tolist()]


def test_trips_drive_the_routes_the_file_gives_and_the_rest_stay_trips(tmp_path):
    folder = write_tiny(tmp_path / "tiny", NET.replace("</net>", DETOUR.replace("SPEED", "5")), TWO_TRIPS)
    (tmp_path / "vr.xml").write_text(VEHROUTES)
    config = read_config(find_config(folder))
    free_flow = routes_of(scenario_from_sumo(folder))
    assert free_flow.count(("WC", "CE", "EX")) == 2 and ("WC", "CN", "NE", "EX") not in free_flow

    (tmp_path / "pinned").mkdir()
    pinned_config, counts = pin_routes(config, routes_driven(tmp_path / "vr.xml"), tmp_path / "pinned")
    # w1 and w2 are pinned (v0 already had a route); t0 and the flow stay origin/destination
    assert counts == {"trips_pinned": 2, "trips_left_unpinned": 1, "od_pairs_pinned": 1,
                      "od_pairs_on_several_routes": 1}
    pinned = scenario_from_sumo(pinned_config.path)
    assert (pinned_config.begin, pinned_config.end) == (config.begin, config.end)
    assert pinned.trips.num_trips == scenario_from_sumo(folder).trips.num_trips
    routes = routes_of(pinned)
    assert routes.count(("WC", "CN", "NE", "EX")) == 1 and routes.count(("WC", "CE", "EX")) == 1
    report = pinned.info["sumo_report"]
    assert report["trips_routed_shortest_free_flow"] == (
        scenario_from_sumo(folder).info["sumo_report"]["trips_routed_shortest_free_flow"] - 2)


@pytest.mark.parametrize("vehicle", ['<vehicle id="w1" depart="1"/>',
                                     '<vehicle id="w1" depart="1"><route edges="WC CE"/><route/></vehicle>'])
def test_a_vehroute_vehicle_without_a_route_names_the_file_and_the_vehicle(tmp_path, vehicle):
    (tmp_path / "vr.xml").write_text(f"<routes>{vehicle}</routes>")
    with pytest.raises(ScenarioError, match=r"vr\.xml: field 'vehicle\[id=w1\]/route@edges'"):
        routes_driven(tmp_path / "vr.xml")


def test_pinned_trips_become_vehicles_without_their_trip_attributes(tmp_path):
    # t0 (WC -> CN) is pinned too, on its one route: two origin/destination pairs, one on two routes; the
    # pinned config keeps every digit of the begin
    config = CONFIG.replace('<begin value="100"/>', '<begin value="99.1234567"/>')
    folder = write_tiny(tmp_path / "tiny", NET.replace("</net>", DETOUR.replace("SPEED", "5")), TWO_TRIPS, config)
    (tmp_path / "vr.xml").write_text(VEHROUTES.replace("</routes>", '<vehicle id="t0" depart="100.40">'
                                                       '<route edges="WC CN"/></vehicle></routes>'))
    (tmp_path / "pinned").mkdir()
    pinned_config, counts = pin_routes(read_config(find_config(folder)), routes_driven(tmp_path / "vr.xml"),
                                       tmp_path / "pinned")
    assert pinned_config.begin == 99.1234567
    assert counts == {"trips_pinned": 3, "trips_left_unpinned": 0, "od_pairs_pinned": 2,
                      "od_pairs_on_several_routes": 1}
    written = ET.parse(tmp_path / "pinned" / "pinned_0.rou.xml").getroot()
    pinned = {v.get("id"): v for v in written.iter("vehicle") if v.get("id") in ("w1", "w2", "t0")}
    assert {k: sorted(v.attrib) for k, v in pinned.items()} == {k: ["depart", "id", "type"] for k in pinned}
    assert pinned["t0"].find("route").get("edges") == "WC CN" and not list(written.iter("trip"))


def test_a_sumo_name_loads_from_the_data_dir_given_under_its_name_and_cuts_at_the_horizon(tmp_path):
    write_tiny(tmp_path / SUMO_DATASETS["resco_cologne1"])  # the tiny scenario under cologne1's folder name
    whole = load_scenario("resco_cologne1", data_dir=tmp_path)
    cut = load_scenario("resco_cologne1", data_dir=tmp_path, horizon=8)
    assert whole.name == cut.name == "resco_cologne1" and (whole.info["horizon"], cut.info["horizon"]) == (None, 8)
    assert whole.trips.depart.tolist() == [0, 1, 10, 14, 18] and cut.trips.depart.tolist() == [0, 1]


def test_a_new_workdir_is_created_and_a_file_in_its_place_is_named(tmp_path):
    """A workdir that did not exist yet raised FileNotFoundError from the first route file's write."""
    from envs.errors import ConfigError
    from tests.minimal_scenario import assert_names_everything

    folder = write_tiny(tmp_path / "tiny", NET.replace("</net>", DETOUR.replace("SPEED", "5")), TWO_TRIPS)
    (tmp_path / "vr.xml").write_text(VEHROUTES)
    config, routes = read_config(find_config(folder)), routes_driven(tmp_path / "vr.xml")
    pinned_config, counts = pin_routes(config, routes, tmp_path / "new" / "pinned")
    assert counts["trips_pinned"] == 2 and scenario_from_sumo(pinned_config.path).trips.num_trips > 0
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError) as caught:
        pin_routes(config, routes, tmp_path / "taken")
    assert_names_everything(caught.value, "<pin_routes>", "workdir", str(tmp_path / "taken"))


def test_a_scenario_in_a_folder_whose_name_xml_must_escape_is_pinned(tmp_path):
    # the pinned config wrote the net's path unescaped: 'malformed XML' about the file pin_routes had written
    folder = write_tiny(tmp_path / 'a&b "<c>"', NET.replace("</net>", DETOUR.replace("SPEED", "5")), TWO_TRIPS)
    (tmp_path / "vr.xml").write_text(VEHROUTES)
    pinned_config, _ = pin_routes(read_config(find_config(folder)), routes_driven(tmp_path / "vr.xml"),
                                  tmp_path / "pinned")
    assert pinned_config.net_file == (folder / "tiny.net.xml").resolve()
    assert scenario_from_sumo(pinned_config.path).trips.num_trips == scenario_from_sumo(folder).trips.num_trips


def test_the_pinned_scenario_keeps_the_configs_additional_files(tmp_path):
    # the pinned config named the net and the route files only: the programs and vTypes of the
    # scenario's additional files were lost (its vehicles of type 'slow' then named an unknown vType)
    config = CONFIG.replace("</input>", '<additional-files value="tiny.add.xml"/></input>')
    folder = write_tiny(tmp_path / "tiny", NET.replace("</net>", DETOUR.replace("SPEED", "5")),
                        TWO_TRIPS.replace('type="car"', 'type="slow"'), config)
    (folder / "tiny.add.xml").write_text('<additional><vType id="slow" maxSpeed="7"/></additional>')
    (tmp_path / "vr.xml").write_text(VEHROUTES)
    pinned_config, _ = pin_routes(read_config(find_config(folder)), routes_driven(tmp_path / "vr.xml"),
                                  tmp_path / "pinned")
    assert pinned_config.additional_files == ((folder / "tiny.add.xml").resolve(),)
    assert scenario_from_sumo(pinned_config.path).trips.num_trips == scenario_from_sumo(folder).trips.num_trips
