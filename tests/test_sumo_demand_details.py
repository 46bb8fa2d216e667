"""The SUMO importer's demand in detail (tests/sumo_fixtures.py's scenario, window [100, 160) s):
vehicle class defaults and counted vType attributes, flow rates and vehicle ids, trips through
`via` edges, the vehicle limit across route files, and the config's route file list."""

from __future__ import annotations

from collections import Counter

import pytest

from envs.errors import ScenarioError
from envs.scenario.sumo import import_sumo, route_reader
from envs.scenario.sumo.config import find_config
from envs.scenario.sumo.route_reader import read_routes
from tests.sumo_fixtures import CONFIG, DETOUR, NET, ROUTES, write_tiny

FLOW = '<flow id="f0" begin="110" end="120" period="4" type="car" from="NC" to="CE"/>'
# the fields of flow.json's vehicle that SUMO's class defaults give
CLASS_FIELDS = ("length", "minGap", "maxPosAcc", "usualPosAcc", "usualNegAcc", "maxNegAcc", "maxSpeed", "width")


def _flow_only(tmp_path, flow: str, config: str = CONFIG):
    """The fixture's scenario with `flow` in place of its flow and no other vehicle."""
    routes = "\n".join(line for line in ROUTES.replace(FLOW, flow).splitlines()
                       if "<vehicle" not in line and "<trip" not in line)
    return import_sumo(write_tiny(tmp_path, routes=routes, config=config))


@pytest.mark.parametrize("v_class, expected", [
    # sumo.dlr.de/docs/Vehicle_Type_Parameter_Defaults.html (maxSpeed 100, 130 and 200 km/h)
    ("bus", (12.0, 2.5, 1.2, 1.2, 4.0, 7.0, 27.78, 2.5)),
    ("truck", (7.1, 2.5, 1.3, 1.3, 4.0, 7.0, 36.11, 2.4)),
    ("delivery", (6.5, 2.5, 2.6, 2.6, 4.5, 9.0, 55.56, 2.16)),
    ("passenger", (5.0, 2.5, 2.6, 2.6, 4.5, 9.0, 55.56, 1.8)),
])
def test_a_vtype_silent_but_for_its_class_takes_sumos_defaults_for_the_class(tmp_path, v_class, expected):
    flow = FLOW.replace('type="car"', 'type="x"').replace("<flow", f'<vType id="x" vClass="{v_class}"/><flow')
    vehicle = _flow_only(tmp_path, flow).flow[0]["vehicle"]
    assert tuple(vehicle[key] for key in CLASS_FIELDS) == expected


def test_vtype_attributes_the_engine_does_not_follow_are_counted(tmp_path):
    flow = FLOW.replace('type="car"', 'type="x"').replace(
        "<flow", '<vType id="x" vClass="moped" accel="2" width="2.2" speedFactor="1.1" laneChangeModel="SL2015"/><flow')
    imported = _flow_only(tmp_path, flow + '<param key="a" value="b"/>')
    assert {k: v for k, v in imported.report.counts.items() if k.startswith(("vtype_", "vclass_", "unknown_"))} == {
        "vclass_moped_with_passenger_defaults": 1, "vtype_speedFactor_ignored": 1, "vtype_laneChangeModel_ignored": 1,
        "unknown_element_param_ignored": 1}
    vehicle = imported.flow[0]["vehicle"]
    assert (vehicle["maxPosAcc"], vehicle["usualPosAcc"], vehicle["width"], vehicle["length"]) == (2.0, 2.0, 2.2, 5.0)


@pytest.mark.parametrize("flow, departures, counted", [
    # probability 0.25 a second: a departure every 4 s on average, from the flow's begin
    ('probability="0.25"', [10, 14, 18], "probability_flows_as_mean_period"),
    ('probability="1"', list(range(10, 20)), "probability_flows_as_mean_period"),  # (0, 1]: 1 is the most
    ('number="0"', [], "flows_without_vehicles"),
    # a number flow ending at its begin departs all at once, here at the config's begin: none is before it
    ('number="2"', [0, 0], "flows_without_vehicles"),
])
def test_probability_and_empty_flows(tmp_path, flow, departures, counted):
    flows = FLOW.replace('period="4"', flow) + '<flow id="g" begin="100" end="101" number="1" from="WC" to="CE"/>'
    if flow == 'number="2"':
        flows = flows.replace('begin="110" end="120"', 'begin="100" end="100"')
    imported = _flow_only(tmp_path, flows)
    assert [v["startTime"] for v in imported.flow if v["route"] == ["NC", "CE"]] == departures
    assert imported.report.counts.get(counted, 0) == (flow != 'number="2"')


def test_a_flows_vehicles_are_named_as_sumo_names_them(tmp_path):
    # the n-th vehicle from the flow's own begin (benchmarks/sumo_fidelity.py matches SUMO's trip info by id)
    folder = write_tiny(tmp_path, routes=ROUTES.replace('begin="110" end="120" period="4"',
                                                        'begin="0" end="1e8" period="1"'))
    vehicles = read_routes(folder / "tiny.rou.xml", Counter(), (100.0, 160.0)).vehicles
    assert [v.id for v in vehicles if v.id.startswith("f0.")] == [f"f0.{n}" for n in range(100, 160)]


def test_a_road_is_as_fast_as_its_fastest_lane_for_routing(tmp_path):
    # NE has a 50 m/s lane beside a 1 m/s one: the detour through it (8.25 s) beats CE (20 s)
    detour = DETOUR.replace("SPEED", "50").replace(
        'shape="106,60 310,5"/>', 'shape="106,60 310,5"/><lane id="NE_1" index="1" speed="1" length="100" '
        'shape="106,63 310,8"/>')
    routes = ROUTES.replace("</routes>", '<trip id="w" depart="101" type="car" from="WC" to="EX"/></routes>')
    imported = import_sumo(write_tiny(tmp_path, NET.replace("</net>", detour), routes))
    assert ["WC", "CN", "NE", "EX"] in [v["route"] for v in imported.flow]


def test_a_trip_is_routed_through_its_via_edges(tmp_path):
    # the detour through CN and NE is the slower way (NE at 5 m/s), but the trip must pass NE
    routes = ROUTES.replace("</routes>", '<trip id="w" depart="101" type="car" from="WC" to="EX" via="NE"/></routes>')
    imported = import_sumo(write_tiny(tmp_path, NET.replace("</net>", DETOUR.replace("SPEED", "5")), routes))
    assert ["WC", "CN", "NE", "EX"] in [v["route"] for v in imported.flow]


@pytest.mark.parametrize("second, refused", [(3, False), (4, True)])
def test_the_vehicle_limit_counts_the_vehicles_of_earlier_route_files(tmp_path, monkeypatch, second, refused):
    monkeypatch.setattr(route_reader, "MAX_VEHICLES", 10)  # the fixture's file builds 7 vehicles (2 outside the window)
    folder = write_tiny(tmp_path, config=CONFIG.replace("tiny.rou.xml", "tiny.rou.xml, b.rou.xml"))
    (folder / "b.rou.xml").write_text(f'<routes><flow id="g" begin="130" end="140" number="{second}" '
                                      'from="WC" to="CE"/></routes>')
    if refused:
        with pytest.raises(ScenarioError, match="more than gridlight's limit of 10 a scenario") as error:
            import_sumo(folder)
        assert (error.value.field, error.value.value) == ("flow[id=g]", 4)
    else:  # a comma and a space separate the route files
        assert len(import_sumo(folder).flow) == 2 + 3 + 3


def test_a_folder_without_a_config_is_refused(tmp_path):
    with pytest.raises(ScenarioError) as error:
        find_config(tmp_path)
    assert (error.value.field, error.value.value) == ("<folder>", [])


def test_a_flows_own_begin_and_end_go_before_its_intervals(tmp_path):
    grouped = '<interval begin="100" end="130">' + FLOW.replace('end="120" ', "") + "</interval>"
    assert [v["startTime"] for v in _flow_only(tmp_path, grouped).flow] == [10, 14, 18, 22, 26]
    early_end = '<interval begin="100" end="130">' + FLOW.replace('begin="110" ', "") + "</interval>"
    assert [v["startTime"] for v in _flow_only(tmp_path / "end", early_end).flow] == [0, 4, 8, 12, 16]


def test_a_config_without_begin_begins_at_0_as_sumo(tmp_path):
    imported = import_sumo(write_tiny(tmp_path, config=CONFIG.replace('<begin value="100"/>', "")))
    assert imported.config.begin == 0.0 and "begin_shift_s" not in imported.report.counts
    assert [v["startTime"] for v in imported.flow] == [50, 100, 101, 110, 114, 118]  # "late" (200) is after 160


def test_a_route_through_unconnected_edges_names_the_pair(tmp_path):
    routes = ROUTES.replace('"100.0" type="car"><route edges="WC CE"/>', '"100.0" type="car"><route edges="WC CE NC"/>')
    with pytest.raises(ScenarioError, match="route edges 1 and 2 are not connected: the net has no <connection> "
                       "from 'CE' to 'NC'") as error:
        import_sumo(write_tiny(tmp_path, routes=routes))
    assert (error.value.field, error.value.value) == ("vehicle[id=v0]@edges", "CE NC")


def test_a_vehicle_class_sumo_does_not_know_is_refused_and_a_deprecated_name_is_its_class(tmp_path):
    # a misspelt class drove as a passenger car (counted as 'vclass_motorcyle_with_passenger_defaults');
    # SUMO refuses it: "The vehicle class 'motorcyle' for vType 'x' is not known"
    flow = FLOW.replace('type="car"', 'type="x"').replace("<flow", '<vType id="x" vClass="motorcyle"/><flow')
    with pytest.raises(ScenarioError, match=r"tiny\.rou\.xml: field 'vType\[id=x\]@vClass' = 'motorcyle': "
                                            r"not a SUMO vehicle class"):
        _flow_only(tmp_path, flow)
    # SUMO reads its deprecated names as the class they name: a 'lightrail' is a tram, left out
    car = '<flow id="g" begin="100" end="101" number="1" from="WC" to="CE"/>'
    tram = _flow_only(tmp_path / "tram", flow.replace("motorcyle", "lightrail") + car)
    assert tram.report.counts["tram_vehicles_left_out"] == 3
