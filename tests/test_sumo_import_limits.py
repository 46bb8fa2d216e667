"""What the SUMO importer refuses, counts or never builds (tests/sumo_fixtures.py's hand-written
scenario, window [100, 160) s): ids SUMO refuses twice, routes whose edges the net does not
connect, config options it does not follow, vehicle attributes and stops it ignores, flows
grouped in an <interval>, and flows far longer than the window, whose vehicles outside it are
counted instead of built."""

from __future__ import annotations

import pytest

from envs.errors import ScenarioError
from envs.scenario.departures import MAX_VEHICLES
from envs.scenario.json_fields import MISSING
from envs.scenario.sumo import import_sumo
from envs.scenario.sumo.pinned_routes import routes_driven
from tests.sumo_fixtures import CONFIG, NET, ROUTES, write_tiny

SECOND_EDGE = ('<edge id="CE" from="C" to="E"><lane id="CE_9" index="0" speed="2" length="900" '
               'shape="110,1 1010,1"/></edge>')


@pytest.mark.parametrize("file, old, new, field, value", [
    # SUMO refuses a second edge or junction of an id; the later one silently replaced the earlier
    ("net", "<tlLogic", SECOND_EDGE + "<tlLogic", "edge[id=CE]@id", "CE"),
    ("net", '<junction id="N"', '<junction id="C" type="priority" x="5" y="7"/><junction id="N"',
     "junction[id=C]@id", "C"),
    # SUMO refuses a second vehicle of an id (a flow's id is in the vehicles' namespace)
    ("routes", '<vehicle id="v0"', '<vehicle id="early"', "vehicle[id=early]@id", "early"),
    ("routes", '<flow id="f0"', '<flow id="v0"', "flow[id=v0]@id", "v0"),
    # a route whose edges the net does not connect was left out as a "turn the import left out"
    ("routes", '<vehicle id="v0" depart="100.0" type="car"><route edges="WC CE"/>',
     '<vehicle id="v0" depart="100.0" type="car"><route edges="WC NC"/>', "vehicle[id=v0]@edges", "WC NC"),
    ("routes", "</routes>", '<interval begin="100" end="120"><vehicle id="x" depart="101"><route edges="WC CE"/>'
     "</vehicle></interval></routes>", "interval.vehicle[id=x]", "vehicle"),
    ("routes", '<flow id="f0" begin="110" end="120"', '<interval end="105"><flow id="f0" begin="110"',
     "interval@end", "105"),
    # an empty attribute is a missing one; negative lane indices, a one-point shape, a speed of 0, lanes not
    # numbered 0..n-1, a lane, light or signal index the net does not have, and a window of no time
    ("config", 'value="tiny.net.xml"', 'value=""', "input.net-file@value", MISSING),
    ("net", 'fromLane="1" toLane="0"', 'fromLane="-1" toLane="0"', "connection[0]@fromLane", "-1"),
    ("net", 'shape="110,1 310,1"', 'shape="110,1"', "edge[id=CE].lane[id=CE_0]@shape", "110,1"),
    ("net", 'id="CE_0" index="0" speed="10"', 'id="CE_0" index="0" speed="0"', "edge[id=CE].lane[id=CE_0]@speed",
     "0"),
    ("net", 'id="CE_0" index="0"', 'id="CE_0" index="1"', "edge[id=CE]@lane@index", [1]),
    ("net", 'fromLane="0" toLane="0" tl="C" linkIndex="2"', 'fromLane="0" toLane="1" tl="C" linkIndex="2"',
     "connection[2]@toLane", 1),
    ("net", 'tl="C" linkIndex="0"', 'tl="Z" linkIndex="0"', "connection[0]@tl", "Z"),
    ("net", 'tl="C" linkIndex="2"', 'tl="C" linkIndex="3"', "connection[2]@linkIndex", 3),
    pytest.param("net", NET, NET.replace('<net version="1.9">', "<network>").replace("</net>", "</network>"),
                 "<root>", "network", id="not-a-net"),
    pytest.param("net", NET, NET.replace('tl="C" linkIndex="2"', 'tl="D" linkIndex="2"').replace(
        "<junction id=\"W\"", '<tlLogic id="D"><phase duration="9" state="GGG"/></tlLogic><junction id="W"'),
        "junction[id=C]", ["C", "D"], id="two-lights"),
    ("config", '<end value="160"/>', '<end value="100"/>', "time.end@value", 100.0),
    ("routes", 'id="t0" depart="100.4"', 'id="t0" depart="-1"', "trip[id=t0]@depart", "-1"),
    ("routes", 'begin="110" end="120" period="4"', 'begin="-10" end="120" period="4"', "flow[id=f0]@begin", "-10"),
    ("routes", 'period="4"', 'period="0.0004"', "flow[id=f0]@period", "0.0004"),  # 0 on SUMO's ms clock
    ("routes", "</routes>", '<routeDistribution id="d"/></routes>', "routeDistribution[id=d]", "routeDistribution"),
    # an edge without lanes, a phase of no time, a program without phases, a route of no edges, an unknown
    # direction, and a demand of which no vehicle departs in the window
    ("net", '<edge id="CN" from="C" to="N"><lane id="CN_0" index="0" speed="8" length="50" shape="106,5 106,55"/>',
     '<edge id="CN" from="C" to="N">', "edge[id=CN]", "CN"),
    ("net", 'duration="20" state="rrG"', 'duration="0" state="rrG"', "tlLogic[id=C].phase[2]@duration", "0"),
    ("net", 'offset="0">', 'offset="0"/><tlLogic id="C2">', "tlLogic[id=C]", "C"),
    ("net", 'linkIndex="0" dir="s"', 'linkIndex="0" dir="x"', "connection[0]@dir", "x"),
    ("routes", 'id="v0" depart="100.0" type="car"><route edges="WC CE"/>',
     'id="v0" depart="100.0" type="car"><route edges=" "/>', "vehicle[id=v0].route@edges", ""),
    ("routes", '<vType id="car"', '<vType id="car" vClass="bicycle"', "<routes>", 7),
    ("routes", 'tau="1.5"/>', 'tau="1.5"><carFollowing-Krauss/><carFollowing-IDM/></vType>', "vType[id=car]",
     "carFollowing-IDM"),
])
def test_refused_inputs_name_file_element_attribute_and_value(tmp_path, file, old, new, field, value):
    texts = {"net": NET, "routes": ROUTES, "config": CONFIG}
    assert old in texts[file]
    texts[file] = texts[file].replace(old, new, 1)
    if file == "routes" and "<interval end" in new:
        texts[file] = texts[file].replace('type="car" from="NC" to="CE"/>', 'type="car" from="NC" to="CE"/></interval>')
    with pytest.raises(ScenarioError) as error:
        import_sumo(write_tiny(tmp_path / "bad", texts["net"], texts["routes"], texts["config"]))
    suffix = {"net": "tiny.net.xml", "routes": "tiny.rou.xml", "config": "tiny.sumocfg"}[file]
    assert error.value.source.endswith(suffix)
    assert (error.value.field, error.value.value) == (field, value)


def test_a_flow_longer_than_the_window_builds_only_the_vehicles_inside_it(tmp_path):
    # a hundred million vehicles a second apart from 0 s: the window [100, 160) keeps 60; the
    # others are counted, never built (this took gigabytes and ended in a MemoryError)
    routes = ROUTES.replace('<flow id="f0" begin="110" end="120" period="4"',
                            '<flow id="f0" begin="0" end="1e8" period="1"')
    imported = import_sumo(write_tiny(tmp_path / "long", routes=routes))
    from_flow = [v["startTime"] for v in imported.flow if v["route"] == ["NC", "CE"]]
    assert from_flow == list(range(60))
    counts = imported.report.counts
    assert counts["vehicles_before_begin_left_out"] == 100 + 1  # and the fixture's "early"
    assert counts["vehicles_after_end_left_out"] == 100_000_000 - 160 + 1  # and "late"


def test_a_flow_past_the_vehicle_limit_within_the_window_is_refused_before_it_is_built(tmp_path):
    many = ROUTES.replace('begin="110" end="120" period="4"', 'begin="110" end="110" number="12000000"')
    # 12,000,000 vehicles at 110 s, in the window [100, 160): refused at once, not after gigabytes
    with pytest.raises(ScenarioError, match=f"more than gridlight's limit of {MAX_VEHICLES:,} a scenario") as error:
        import_sumo(write_tiny(tmp_path / "many", routes=many))
    assert (error.value.field, error.value.value) == ("flow[id=f0]", 12_000_000)


def test_flows_in_an_interval_take_its_begin_and_end(tmp_path):
    grouped = ROUTES.replace('<flow id="f0" begin="110" end="120" period="4" type="car" from="NC" to="CE"/>',
                             '<interval begin="110" end="120"><flow id="f0" period="4" type="car" from="NC" '
                             'to="CE"/></interval>')
    as_flow, in_interval = (import_sumo(write_tiny(tmp_path / name, routes=text))
                            for name, text in (("flow", ROUTES), ("interval", grouped)))
    assert in_interval.flow == as_flow.flow  # departures 110, 114, 118 either way
    assert "unknown_element_interval_ignored" not in in_interval.report.counts  # its flows were dropped


@pytest.mark.parametrize("flow, departures", [
    ('end="160" number="6"', [0, 10, 20, 30, 40, 50]),  # departed from 0, four counted before begin
    ('period="10"', [0, 10, 20, 30, 40, 50]),  # refused: "needs an end"
    ('begin="100" vehsPerHour="360"', [0, 10, 20, 30, 40, 50]),
    ('begin="100" number="3"', [0, 20, 40]),
    ('begin="100" vehsPerHour="700"', [0, 6, 11, 16, 21, 26, 31, 37, 42, 47, 52, 57]),  # 5.143 s: 36.001, not 36
])
def test_a_flows_begin_and_end_default_to_the_configs_as_in_sumo(tmp_path, flow, departures):
    # departures as SUMO 1.28 runs them with this config (window [100, 160)), relative to its begin
    routes = ROUTES.replace('<flow id="f0" begin="110" end="120" period="4"', f'<flow id="f0" {flow}')
    imported = import_sumo(write_tiny(tmp_path / "defaults", routes=routes))
    assert [v["startTime"] for v in imported.flow if v["route"] == ["NC", "CE"]] == departures


def test_ignored_vehicle_attributes_stops_and_config_options_are_counted(tmp_path):
    routes = ROUTES.replace('<vehicle id="v0" depart="100.0" type="car"><route edges="WC CE"/>',
                            '<vehicle id="v0" depart="100.0" type="car" departPos="40" departLane="1" '
                            'arrivalSpeed="3"><route edges="WC CE"><stop edge="CE" duration="600"/></route>'
                            '<stop edge="CE" duration="5"/>')
    config = CONFIG.replace("</time>", '<step-length value="0.1"/></time><processing>'
                            '<time-to-teleport value="-1"/></processing>')
    counts = import_sumo(write_tiny(tmp_path / "ignored", routes=routes, config=config)).report.counts
    assert {k: v for k, v in counts.items() if k.startswith(("vehicle_", "sumocfg_"))} == {
        "vehicle_departPos_ignored": 1, "vehicle_departLane_ignored": 1, "vehicle_arrivalSpeed_ignored": 1,
        "vehicle_stops_ignored": 2,
        "sumocfg_time.step-length_ignored": 1, "sumocfg_processing.time-to-teleport_ignored": 1}


def test_a_bad_vehroute_file_names_the_file(tmp_path):
    truncated = tmp_path / "vehroutes.xml"
    truncated.write_text('<routes><vehicle id="a"')
    for path, field in ((truncated, "<xml>"), (tmp_path / "nowhere.xml", "<file>")):
        with pytest.raises(ScenarioError) as error:  # were ParseError and FileNotFoundError
            routes_driven(path)
        assert (error.value.source, error.value.field) == (str(path), field)


def test_a_vehicles_speed_factor_departure_and_arrival_edge_and_a_routes_repeat_are_counted(tmp_path):
    # each changes what SUMO drives (faster or slower, part of the route, the route again); all were silent
    routes = ROUTES.replace('<vehicle id="v0" depart="100.0" type="car"><route edges="WC CE"/>',
                            '<vehicle id="v0" depart="100.0" type="car" speedFactor="1.2" departEdge="0" '
                            'arrivalEdge="1"><route edges="WC CE" repeat="2"/>')
    counts = import_sumo(write_tiny(tmp_path, routes=routes)).report.counts
    assert {k: v for k, v in counts.items() if k.startswith(("vehicle_", "route_"))} == {
        "vehicle_speedFactor_ignored": 1, "vehicle_departEdge_ignored": 1, "vehicle_arrivalEdge_ignored": 1,
        "route_repeat_ignored": 1}
