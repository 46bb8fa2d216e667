"""The SUMO importer on a hand-written scenario (tests/sumo_fixtures.py): every value below is
worked out by hand from the XML; malformed inputs name the file, the element and the attribute."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from envs.errors import ConfigError, ScenarioError
from envs.scenario import load_scenario, scenario_from_files, scenario_from_sumo
from envs.scenario.cityflow import write_cityflow
from envs.scenario.demand import VEHICLE_COLUMN
from envs.scenario.network import compile_network
from envs.scenario.roadnet_parser import parse_roadnet
from envs.scenario.sumo import import_sumo
from envs.scenario.sumo.net_reader import read_net
from envs.scenario.sumo.to_roadnet import gridlight_lanes, simulated_road_lengths
from tests.sumo_fixtures import CONFIG, DETOUR, NET, ROUTES, write_tiny


@pytest.fixture
def tiny(tmp_path):
    return scenario_from_sumo(write_tiny(tmp_path / "tiny"), name="tiny")


def test_roads_lanes_and_lengths(tiny):
    net = tiny.network
    assert net.road_ids == ("WC", "CE", "CN", "NC")
    # WC keeps SUMO lanes 2 and 1 (the sidewalk, lane 0, is left out), leftmost first
    assert net.road_lanes[0].tolist() == [0, 1]
    assert net.lane_max_speed[:2].tolist() == [12.0, 10.0]
    assert net.road_length.tolist() == pytest.approx([100.0, 200.0, 50.0, 50.0])
    assert net.intersection_ids == ("C",)  # W, E, N are dead ends: virtual
    assert net.road_end.tolist() == [0, -1, -1, 0]


def test_gridlight_lane_order_names_sumos_lanes(tmp_path):
    net = read_net(write_tiny(tmp_path / "tiny") / "tiny.net.xml")
    # WC's gridlight lanes 0 and 1 are SUMO's lanes 2 and 1; the sidewalk (lane 0) has none
    assert [lane.id for lane in gridlight_lanes(net.edges["WC"])] == ["WC_2", "WC_1"]


def test_movements_keep_internal_lane_lengths(tiny):
    net = tiny.network
    pairs = {(net.road_ids[a], net.road_ids[b]): m for (a, b), m in net.movement_of_pair.items()}
    straight, left, north_left = pairs[("WC", "CE")], pairs[("WC", "CN")], pairs[("NC", "CE")]
    assert (straight, left, north_left) == (0, 1, 2)
    assert net.movement_type[:3].tolist() == [0, 1, 1]
    # SUMO lane 1 of WC is gridlight lane 1; SUMO lane 2 is lane 0
    assert net.movement_from_lane[straight].tolist() == [False, True]
    assert net.movement_from_lane[left].tolist() == [True, False]
    assert float(net.link_length[straight, 1, 0]) == pytest.approx(7.5)
    assert float(net.link_length[left, 0, 0]) == pytest.approx(4.0)
    assert float(net.link_length[north_left, 0, 0]) == pytest.approx(0.0)


def test_a_path_through_two_internal_lanes_is_as_long_as_both(tmp_path):
    """scenarios.md: a link is as long as the internal lanes it drives through, all of them (SUMO
    splits a left turn at an internal junction into two)."""
    split = NET.replace(
        '<edge id=":C_1" function="internal">',
        '<edge id=":C_2" function="internal"><lane id=":C_2_0" index="0" speed="8" length="2.5" '
        'shape="105,5 106,5"/></edge>\n  <edge id=":C_1" function="internal">',
    ).replace('<connection from=":C_0" to="CE"', '<connection from=":C_1" to="CN" fromLane="0" toLane="0" '
              'via=":C_2_0"/>\n  <connection from=":C_0" to="CE"')
    net = scenario_from_sumo(write_tiny(tmp_path / "split", net=split)).network
    left = {(net.road_ids[a], net.road_ids[b]): m for (a, b), m in net.movement_of_pair.items()}[("WC", "CN")]
    assert float(net.link_length[left, 0, 0]) == pytest.approx(4.0 + 2.5)


def test_program_folds_yellows_into_the_next_green(tiny):
    net = tiny.network
    # 'Ggr' 30 s (+ the cycle's last 2 s 'rry'), then 'rrG' 20 s (+ the 3 s 'yyr' before it)
    assert int(net.num_phases[0]) == 2
    assert net.phase_duration[0].tolist() == [32.0, 23.0]
    assert net.phase_green[0, 0].tolist() == [True, True, False]
    assert net.phase_green[0, 1].tolist() == [False, False, True]
    phases = tiny.roadnet.intersections[1].phases
    assert [p.permissive for p in phases] == [(1,), ()]  # the lowercase 'g' left turn


def test_demand_shifted_rounded_and_counted(tiny):
    trips = tiny.trips
    # v0 at 100.0 -> 0; t0 at 100.4 -> 1 (rounded up); f0 at 110, 114, 118 -> 10, 14, 18
    assert trips.depart.tolist() == [0, 1, 10, 14, 18]
    routes = [[tiny.network.road_ids[r] for r in row if r >= 0] for row in trips.routes.tolist()]
    assert routes == [["WC", "CE"], ["WC", "CN"], ["NC", "CE"], ["NC", "CE"], ["NC", "CE"]]
    length, min_gap = trips.vehicle[0, 0], trips.vehicle[0, 1]
    assert (float(length), float(min_gap)) == (4.0, 2.0)
    report = tiny.info["sumo_report"]
    assert report["vehicles_before_begin_left_out"] == 1
    assert report["vehicles_after_end_left_out"] == 1
    assert report["fractional_departures_rounded_up"] == 1
    assert report["non_passenger_lanes_left_out"] == 1
    assert report["transition_phases_folded"] == 2
    assert report["begin_shift_s"] == 100


def test_shortest_free_flow_route(tmp_path):
    # two ways from WC to EX: through CE (200 m at 10 m/s: 20 s) or through CN and NE
    # (50 m at 8 m/s + 100 m at SPEED: 26.25 s at 5 m/s, 8.25 s at 50 m/s)
    routes = ROUTES.replace("</routes>", '<trip id="w" depart="101" type="car" from="WC" to="EX"/>'
                            "</routes>")
    for speed, expected in (("5", ("WC", "CE", "EX")), ("50", ("WC", "CN", "NE", "EX"))):
        net = NET.replace("</net>", DETOUR.replace("SPEED", speed))
        scenario = scenario_from_sumo(write_tiny(tmp_path / speed, net, routes))
        road_ids = scenario.network.road_ids
        routes_of = [tuple(road_ids[r] for r in row if r >= 0)
                     for row in scenario.trips.routes.tolist()]
        assert expected in routes_of
        other = ("WC", "CN", "NE", "EX") if speed == "5" else ("WC", "CE", "EX")
        assert other not in routes_of
        # E and N join roads without a signal: one all-permissive phase each
        assert scenario.info["sumo_report"]["uncontrolled_junctions"] == 2


def test_cityflow_round_trip_gives_the_same_network(tiny, tmp_path):
    imported = import_sumo(tmp_path / "tiny")
    roadnet_path, flow_path = write_cityflow(tmp_path / "cityflow", imported.roadnet,
                                             imported.flow)
    back = scenario_from_files(roadnet_path, flow_path)
    for name, value in tiny.network.__dict__.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, getattr(back.network, name)), name
    assert back.network.road_ids == tiny.network.road_ids
    assert (back.trips.depart == tiny.trips.depart).all()
    assert (back.trips.routes == tiny.trips.routes).all()


@pytest.mark.parametrize("file, old, new, field", [
    ("net", 'id="WC_1" index="1" speed="10"', 'id="WC_1" index="1" speed="fast"',
     "edge[id=WC].lane[id=WC_1]@speed"),
    ("net", 'tl="C" linkIndex="2"', 'tl="C" linkIndex="7"', "connection[2]@linkIndex"),
    ("net", 'duration="20" state="rrG"', 'duration="20" state="rrX"', "tlLogic[id=C].phase@state"),
    ("net", 'edge id="CE" from="C"', 'edge id="CE" from="Q"', "edge[id=CE]@from"),
    ("net", '<net version="1.9">', '<net version="1.9"><oops', "<xml>"),
    ("routes", 'from="WC" to="CN"', 'from="nowhere" to="CN"', "trip[id=t0]@from"),
    ("routes", 'id="v0" depart="100.0" type="car"', 'id="v0" depart="100.0" type="bus"',
     "vehicle[id=v0]@type"),
    ("routes", 'id="t0" depart="100.4"', 'id="t0" depart="triggered"', "trip[id=t0]@depart"),
    ("routes", 'period="4"', 'perio="4"', "flow[id=f0]@period"),
    ("routes", 'tau="1.5"/>', 'tau="1.5" sigma="1.2"/>', "vType[id=car]@sigma"),
    ("config", '<end value="160"/>', '<end value="90"/>', "time.end@value"),
])
def test_malformed_inputs_name_file_element_attribute(tmp_path, file, old, new, field):
    texts = {"net": NET, "routes": ROUTES, "config": CONFIG}
    assert old in texts[file]
    texts[file] = texts[file].replace(old, new)
    folder = write_tiny(tmp_path / "bad", texts["net"], texts["routes"], texts["config"])
    with pytest.raises(ScenarioError) as error:
        scenario_from_sumo(folder)
    suffix = {"net": "tiny.net.xml", "routes": "tiny.rou.xml", "config": "tiny.sumocfg"}[file]
    assert error.value.source.endswith(suffix)
    assert error.value.field == field


def test_permissive_links_must_be_green_links(tmp_path):
    roadnet = import_sumo(write_tiny(tmp_path / "tiny")).roadnet
    phase = next(x for x in roadnet["intersections"] if not x["virtual"])[
        "trafficLight"]["lightphases"][1]
    assert phase["availableRoadLinks"] == [2]
    phase["permissiveRoadLinks"] = [0]
    with pytest.raises(ScenarioError) as error:
        parse_roadnet(roadnet, "<tiny>")
    assert error.value.field == "intersections[1].trafficLight.lightphases[1].permissiveRoadLinks[0]"
    assert "availableRoadLinks" in error.value.reason


def test_crossing_greens_are_refused_unless_they_yield(tmp_path):
    # the west left turn (1) and the north approach's left turn (2) cross: green together as
    # priority movements the crossing check refuses them, as permissive ones it lets them pass
    roadnet = import_sumo(write_tiny(tmp_path / "tiny")).roadnet
    inter = next(x for x in roadnet["intersections"] if not x["virtual"])
    first = inter["trafficLight"]["lightphases"][0]
    first["availableRoadLinks"] = [0, 1, 2]  # west straight + west left + north left together
    first["permissiveRoadLinks"] = []
    with pytest.raises(ScenarioError, match="cross inside the intersection"):
        compile_network(parse_roadnet(roadnet, "<tiny>"))
    first["permissiveRoadLinks"] = [1, 2]
    compile_network(parse_roadnet(roadnet, "<tiny>"))  # yielding movements may cross


def test_flow_on_a_named_route_by_vehicles_per_hour(tmp_path):
    routes = """<routes><vType id="car"/><route id="r" edges="NC CE"/>
      <flow id="g" route="r" begin="100" end="110" vehsPerHour="720" type="car"/></routes>"""
    scenario = scenario_from_sumo(write_tiny(tmp_path / "flow", routes=routes))
    assert scenario.trips.depart.tolist() == [0, 5]  # 720 veh/h: every 5 s from begin, < end
    assert scenario.trips.routes.tolist() == [[3, 1], [3, 1]]  # NC, CE
    # SUMO's passenger defaults where the vType is silent: 5 m long, 2.5 m gap, tau 1 s
    assert scenario.trips.vehicle[0, :2].tolist() == [5.0, 2.5]


def test_driver_imperfection_from_the_vtype_or_sumos_default(tmp_path, tiny):
    sigma = VEHICLE_COLUMN["sigma"]
    assert set(tiny.trips.vehicle[:, sigma].tolist()) == {0.5}  # the vType is silent: SUMO's 0.5
    routes = ROUTES.replace('tau="1.5"/>', 'tau="1.5" sigma="0.2"/>')
    scenario = scenario_from_sumo(write_tiny(tmp_path / "sigma", routes=routes))
    assert scenario.trips.vehicle[:, sigma].tolist() == pytest.approx([0.2] * 5)
    edge = scenario_from_sumo(write_tiny(tmp_path / "sigma1", routes=ROUTES.replace('tau="1.5"/>',
                                                                                  'tau="1.5" sigma="1"/>')))
    assert edge.trips.vehicle[:, sigma].tolist() == pytest.approx([1.0] * 5)  # [0, 1]: 1 is the most imperfect
    sigmas = scenario.demand(1).sigma  # the engine dawdles: each trip with its vType's sigma
    assert sigmas is not None and sigmas[0, :5].tolist() == pytest.approx([0.2] * 5)


def test_a_vehicle_without_route_is_refused(tmp_path):
    routes = '<routes><vehicle id="x" depart="100"/></routes>'
    with pytest.raises(ScenarioError) as error:
        scenario_from_sumo(write_tiny(tmp_path / "noroute", routes=routes))
    assert error.value.field == "vehicle[id=x]@route"


def test_a_missing_sumo_folder_names_the_data_directory(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_scenario("resco_cologne1", data_dir=tmp_path)
    assert error.value.field == "scenario.data_dir"
    assert str(tmp_path / "sumo" / "resco" / "cologne1") in str(error.value)


def test_a_short_edge_is_lengthened_to_one_steps_travel(tmp_path):
    # CN shortened to 3 m: the fastest a vehicle enters it with is WC's 12 m/s (WC feeds it), so
    # gridlight's road is 12 m x 1 s + the 1 m margin; the sidewalk's length is not averaged in
    net = NET.replace('id="CN_0" index="0" speed="8" length="50"', 'id="CN_0" index="0" speed="8" length="3"')
    folder = write_tiny(tmp_path / "short", net)
    lengths = simulated_road_lengths(read_net(folder / "tiny.net.xml"))
    assert lengths["CN"] == pytest.approx(13.0)
    assert (lengths["WC"], lengths["CE"], lengths["NC"]) == pytest.approx((100.0, 200.0, 50.0))
    imported = import_sumo(folder)
    assert imported.report.counts["short_edges_lengthened"] == 1
    assert imported.report.counts["metres_added_to_short_edges"] == 10
    scenario = scenario_from_sumo(folder)
    assert scenario.network.road_length.tolist() == pytest.approx([100.0, 200.0, 13.0, 50.0])


# WC ends (and CE starts) 1 m short of gridlight's limit: WC -> CE's lane link, drawn on for its
# 7.5 m internal lane, reaches beyond it
FAR_NET = NET.replace('shape="0,4 100,4"', 'shape="999999899,4 999999999,4"').replace(
    'shape="110,1 310,1"', 'shape="999999999,4 999999999,204"')


@pytest.mark.parametrize("file, old, new, field, value", [
    # SUMO refuses each of these too; importing them silently dropped, invented or overrode
    ("routes", 'end="120" period="4"', 'end="105" period="4"', "flow[id=f0]@end", "105"),
    ("routes", 'end="120" period="4"', 'end="-5" period="4"', "flow[id=f0]@end", "-5"),
    ("routes", 'period="4"', 'probability="5"', "flow[id=f0]@probability", "5"),
    ("routes", '<vehicle id="early"', '<vType id="car" length="40"/><vehicle id="early"',
     "vType[id=car]@id", "car"),
    ("routes", '<vehicle id="early"',
     '<route id="r" edges="WC CE"/><route id="r" edges="NC CE"/><vehicle id="early"',
     "route[id=r]@id", "r"),
    ("routes", 'decel="5"', 'decel="5" emergencyDecel="1"', "vType[id=car]@emergencyDecel", "1"),
    # a connection to an edge the net does not have was counted as a left-out pedestrian one
    ("net", '<connection from="NC" to="CE"', '<connection from="NC" to="NOSUCH"',
     "connection[2]@to", "NOSUCH"),
    ("net", '<connection from=":C_0"', '<connection from=":C_9"', "connection[3]@from", ":C_9"),
    # a via lane the net does not have left the connection 0 m long, without right of way
    ("net", 'via=":C_0_0"', 'via=":C_9_0"', "connection[0]@via", ":C_9_0"),
    ("net", 'toLane="0"/>', 'toLane="0" via=":C_0_9"/>', "connection[3]@via", ":C_0_9"),
    # numbers beyond gridlight's limit, nan and inf were reported later as roadnet/flow fields
    ("routes", 'tau="1.5"/>', 'tau="1.5" maxSpeed="1e30"/>', "vType[id=car]@maxSpeed", "1e30"),
    ("routes", 'id="t0" depart="100.4"', 'id="t0" depart="1e30"', "trip[id=t0]@depart", "1e30"),
    ("net", 'id="CE_0" index="0" speed="10"', 'id="CE_0" index="0" speed="1e12"',
     "edge[id=CE].lane[id=CE_0]@speed", "1e12"),
    # a speed just under that limit lengthened the short roads it feeds beyond it: the error
    # named a roadnet point; no road's speed limit is beyond 1000 m/s
    ("net", 'id="NC_0" index="0" speed="8"', 'id="NC_0" index="0" speed="999999999"',
     "edge[id=NC].lane[id=NC_0]@speed", "999999999"),
    ("net", 'shape="110,1 310,1"', 'shape="nan,1 310,1"', "edge[id=CE].lane[id=CE_0]@shape",
     "nan,1"),
    ("net", 'shape="110,1 310,1"', 'shape="110,1 310,inf"', "edge[id=CE].lane[id=CE_0]@shape",
     "310,inf"),
    ("net", 'shape="110,1 310,1"', 'shape="110,1 3e9,1"', "edge[id=CE].lane[id=CE_0]@shape",
     "3e9,1"),
    # roadnet points derived from coordinates within the limit (CN lengthened to 13 m about its
    # end, a link drawn on from a road's end) went beyond it: the error named a roadnet point
    ("net", 'length="50" shape="106,5 106,55"', 'length="3" shape="106,999999999 106,999999998"',
     "edge[id=CN].lane[id=CN_0]@shape", ((106.0, 999999999.0), (106.0, 999999998.0))),
    pytest.param("net", NET, FAR_NET, "connection[0]@via", ":C_0_0", id="link-beyond-limit"),
    # a zero-length shape named the source '<sumo net>' and no lane
    ("net", 'shape="110,1 310,1"', 'shape="110,1 110,1"', "edge[id=CE].lane[id=CE_0]@shape",
     ((110.0, 1.0), (110.0, 1.0))),
    # an empty entry in the list of route files: "," crashed (no route file), others were skipped
    ("config", 'value="tiny.rou.xml"', 'value=","', "input.route-files@value", ","),
    # no end: an hour was assumed (a 'time.end = 3600' the file never gave, below a later begin)
    ("config", '<end value="160"/>', "", "time.end@value", None),
    ("config", 'value="tiny.rou.xml"', 'value="tiny.rou.xml, "', "input.route-files@value",
     "tiny.rou.xml, "),
])
def test_refused_inputs_name_file_element_attribute_and_value(tmp_path, file, old, new, field,
                                                              value):
    texts = {"net": NET, "routes": ROUTES, "config": CONFIG}
    assert old in texts[file]
    texts[file] = texts[file].replace(old, new, 1)
    with pytest.raises(ScenarioError) as error:
        import_sumo(write_tiny(tmp_path / "bad", texts["net"], texts["routes"], texts["config"]))
    suffix = {"net": "tiny.net.xml", "routes": "tiny.rou.xml", "config": "tiny.sumocfg"}[file]
    assert error.value.source.endswith(suffix)
    assert (error.value.field, error.value.value) == (field, value)
    assert f"field '{field}' = {value!r}" in str(error.value)


def test_flows_ending_at_their_begin_and_default_types_follow_sumo(tmp_path):
    # as in SUMO: a number flow ending at its begin departs all at begin, a period one not at
    # all (counted); DEFAULT_VEHTYPE may be redefined once; a decel above the class's emergency
    # deceleration raises the default emergencyDecel, a given one at least decel is kept
    routes = """<routes><vType id="DEFAULT_VEHTYPE" length="3"/>
      <vType id="hard" decel="10"/><vType id="kept" decel="3" emergencyDecel="3"/>
      <flow id="n" begin="110" end="110" number="2" from="NC" to="CE" type="hard"/>
      <flow id="p" begin="110" end="110" period="4" from="NC" to="CE"/>
      <trip id="t" depart="112" from="NC" to="CE" type="kept"/></routes>"""
    imported = import_sumo(write_tiny(tmp_path / "flows", routes=routes))
    assert [(v["startTime"], v["vehicle"]["maxNegAcc"]) for v in imported.flow] == [
        (10, 10.0), (10, 10.0), (12, 3.0)]
    assert imported.report.counts["flows_without_vehicles"] == 1
    default = import_sumo(write_tiny(tmp_path / "default", routes=routes.replace(
        'type="kept"', ""))).flow[-1]["vehicle"]
    assert (default["length"], default["maxNegAcc"]) == (3.0, 9.0)


def test_connections_of_pedestrian_edges_are_left_out_and_counted(tmp_path):
    walking = """<edge id=":C_w0" function="walkingarea">
      <lane id=":C_w0_0" index="0" allow="pedestrian" speed="1" length="2" shape="100,-2 102,-2"/>
      </edge><connection from="WC" to=":C_w0" fromLane="0" toLane="0" dir="s"/></net>"""
    imported = import_sumo(write_tiny(tmp_path / "walk", NET.replace("</net>", walking)))
    assert imported.report.counts["walkingarea_edges_left_out"] == 1
    assert imported.report.counts["connections_of_left_out_edges"] == 1


def test_route_files_share_one_namespace_as_in_sumo(tmp_path):
    # a.rou.xml's types and routes serve b.rou.xml; an id already defined is refused, an error
    # names the file the vehicle is in (the later file's vType replaced the earlier one's, its
    # implicit default type undid a redefined DEFAULT_VEHTYPE, errors named the first file)
    first = """<routes><vType id="DEFAULT_VEHTYPE" length="3"/><route id="r" edges="WC CE"/>
      <vehicle id="a" depart="100" route="r"/></routes>"""
    second = '<routes><vehicle id="b" depart="101" route="r"/>VEHICLE</routes>'
    config = CONFIG.replace("tiny.rou.xml", "tiny.rou.xml,b.rou.xml")
    outcomes = {}
    for case, vehicle in (("shared", ""), ("dup", '<vType id="DEFAULT_VEHTYPE" length="9"/>'),
                          ("bad", '<vehicle id="c" depart="102"><route edges="WC NO"/></vehicle>')):
        folder = write_tiny(tmp_path / case, routes=first, config=config)
        (folder / "b.rou.xml").write_text(second.replace("VEHICLE", vehicle))
        try:
            outcomes[case] = [v["vehicle"]["length"] for v in import_sumo(folder).flow]
        except ScenarioError as error:
            outcomes[case] = (Path(error.source).name, error.field, error.value)
    assert outcomes == {"shared": [3.0, 3.0],
                        "dup": ("b.rou.xml", "vType[id=DEFAULT_VEHTYPE]@id", "DEFAULT_VEHTYPE"),
                        "bad": ("b.rou.xml", "vehicle[id=c]@edges", "NO")}


def test_gzipped_files_import_as_sumo_reads_them_and_a_cut_off_one_is_named(tmp_path, tiny):
    """SUMO reads any input file gzip-compressed (netconvert writes .net.xml.gz): the importer
    called such a net malformed XML at line 1, column 0."""
    import gzip

    folder = write_tiny(tmp_path / "gz", config=CONFIG.replace("tiny.net.xml", "tiny.net.xml.gz")
                        .replace("tiny.rou.xml", "tiny.rou.xml.gz"))
    for name in ("tiny.net.xml", "tiny.rou.xml"):
        (folder / f"{name}.gz").write_bytes(gzip.compress((folder / name).read_bytes()))
        (folder / name).unlink()
    packed = scenario_from_sumo(folder, name="tiny")
    for name, value in tiny.network.__dict__.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, getattr(packed.network, name)), name
    assert (packed.trips.routes == tiny.trips.routes).all() and (packed.trips.depart == tiny.trips.depart).all()
    net = folder / "tiny.net.xml.gz"
    net.write_bytes(net.read_bytes()[:40])
    with pytest.raises(ScenarioError) as caught:
        scenario_from_sumo(folder)
    assert (caught.value.file, caught.value.field) == (str(net), "<file>") and "cannot read" in str(caught.value)


def test_the_import_report_is_logged_once_however_often_the_scenario_loads(tmp_path, caplog):
    """train.py loads its scenario for training and for evaluation: the same report is said once (at
    INFO), each later identical import only at DEBUG."""
    with caplog.at_level(logging.DEBUG, logger="envs.scenario.sumo"):
        folder = write_tiny(tmp_path / "tiny")
        first = import_sumo(folder)
        import_sumo(folder)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("SUMO import")]
    assert said == [(logging.INFO, f"SUMO import {first.report.summary()}"),
                    (logging.DEBUG, f"SUMO import {first.report.summary()}")]
