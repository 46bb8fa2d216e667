"""The SUMO net reader and the program translation in detail (tests/sumo_fixtures.py's junction C):
lane permissions, lane order, internal lane chains, defaults of connections and programs, what each
signal character means, and which approximations the report counts."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from envs.errors import ScenarioError
from envs.scenario.sumo import import_sumo
from envs.scenario.sumo.net_reader import passenger_allowed, read_net
from envs.scenario.sumo.programs import link_state
from envs.scenario.sumo.to_roadnet import gridlight_lanes, simulated_road_lengths, turnaround_only_junctions
from tests.sumo_fixtures import DETOUR, NET, ROUTES, write_tiny

# NC -> CN turns around at C, after the fixture's three connections (road link 3); TL puts it on
# the traffic light at linkIndex 3, green ('G') in the first phase only
TURNAROUND = '<connection from="NC" to="CN" fromLane="0" toLane="0" dir="t"TL/>\n</net>'
FOURTH = NET.replace('state="Ggr"', 'state="GgrG"').replace('state="yyr"', 'state="yyry"').replace(
    'state="rrG"', 'state="rrGr"').replace('state="rry"', 'state="rryr"')


def _light(imported) -> dict:
    return next(x for x in imported.roadnet["intersections"] if x["id"] == "C")


@pytest.mark.parametrize("allow, disallow, passenger", [
    (None, None, True), ("all", None, True), ("passenger bus", None, True), ("bus", None, False),
    (None, "all", False), (None, "passenger", False), (None, "bus tram", True),
    ("passenger", "passenger", True),  # SUMO reads `allow` when it is given
])
def test_passenger_lanes_follow_sumos_allow_and_disallow(allow, disallow, passenger):
    assert passenger_allowed(allow, disallow) is passenger


def test_lanes_listed_out_of_order_are_read_by_their_index(tmp_path):
    lanes = NET.split('<edge id="WC" from="W" to="C">\n')[1].split("  </edge>")[0].splitlines(keepends=True)
    shuffled = NET.replace("".join(lanes), "".join([lanes[2], lanes[0], lanes[1]]))
    net = read_net(write_tiny(tmp_path, shuffled) / "tiny.net.xml")
    assert [lane.id for lane in net.edges["WC"].lanes] == ["WC_0", "WC_1", "WC_2"]
    assert [lane.id for lane in gridlight_lanes(net.edges["WC"])] == ["WC_2", "WC_1"]


def test_an_internal_lane_continues_on_the_lane_its_own_connection_names(tmp_path):
    # :C_1's lane 1 (not lane 0, which WC -> CN drives through) continues on :C_2_0
    net = NET.replace(
        '<lane id=":C_1_0" index="0" speed="8" length="4" shape="100,4 105,5"/>',
        '<lane id=":C_1_0" index="0" speed="8" length="4" shape="100,4 105,5"/>'
        '<lane id=":C_1_1" index="1" speed="8" length="6" shape="100,7 105,8"/></edge>\n'
        '  <edge id=":C_2" function="internal"><lane id=":C_2_0" index="0" speed="8" length="2.5" '
        'shape="105,5 106,5"/>',
    ).replace("</net>", '<connection from=":C_1" to="CN" fromLane="1" toLane="0" via=":C_2_0"/>\n</net>')
    left = next(c for c in read_net(write_tiny(tmp_path, net) / "tiny.net.xml").connections if c.to_edge == "CN")
    assert (left.via, left.length) == ((":C_1_0",), 4.0)


def test_a_connection_without_dir_goes_straight(tmp_path):
    imported = import_sumo(write_tiny(tmp_path, NET.replace('linkIndex="0" dir="s"', 'linkIndex="0"')))
    assert [link["type"] for link in _light(imported)["roadLinks"]] == ["go_straight", "turn_left", "turn_left"]


@pytest.mark.parametrize("attributes, counted", [
    ('type="static" programID="0" offset="0"', set()),
    ('programID="0"', set()),  # SUMO's defaults: a static program, offset 0
    ('type="actuated" programID="0" offset="0"', {"actuated_programs_run_static"}),
    ('type="static" programID="0" offset="7"', {"program_offsets_ignored"}),
])
def test_program_types_and_offsets_the_import_does_not_follow_are_counted(tmp_path, attributes, counted):
    net = NET.replace('type="static" programID="0" offset="0"', attributes)
    counts = import_sumo(write_tiny(tmp_path, net)).report.counts
    assert {k for k in counts if k.endswith(("_run_static", "_offsets_ignored"))} == counted


def test_a_program_switched_off_leaves_the_junction_unsignalised(tmp_path):
    """SUMO's type="off": the light is off and the junction runs by its priorities; it ran as a
    static program (counted as 'off_programs_run_static')."""
    net = NET.replace('type="static" programID="0"', 'type="off" programID="0"')
    imported = import_sumo(write_tiny(tmp_path, net))
    counts = imported.report.counts
    assert counts["off_programs_unsignalised"] == 1 and "off_programs_run_static" not in counts
    assert counts.get("signalised_junctions", 0) == 0
    (phase,) = _light(imported)["trafficLight"]["lightphases"]
    every = list(range(len(_light(imported)["roadLinks"])))
    assert phase["availableRoadLinks"] == every and phase["permissiveRoadLinks"] == every


def test_a_namespaced_net_file_reads_as_without_the_namespace(tmp_path):
    """<net xmlns="..."> was refused as "expected a <net> document" (its tags read "{uri}net")."""
    plain = import_sumo(write_tiny(tmp_path / "plain"))
    spaced = NET.replace('<net version="1.9">', '<net version="1.9" xmlns="http://sumo.dlr.de/xsd/net_file.xsd">')
    imported = import_sumo(write_tiny(tmp_path / "spaced", spaced))
    assert imported.roadnet == plain.roadnet and imported.report.counts == plain.report.counts


def test_a_program_type_sumo_does_not_know_is_refused(tmp_path):
    # type="statc" ran as a static program, counted as 'statc_programs_run_static'; SUMO refuses it:
    # "Traffic light 'C' has unknown type 'statc'"
    net = NET.replace('type="static" programID="0"', 'type="statc" programID="0"')
    with pytest.raises(ScenarioError, match=r"tiny\.net\.xml: field 'tlLogic\[id=C\]@type' = 'statc': unknown "
                                            r"traffic light type"):
        import_sumo(write_tiny(tmp_path, net))


@pytest.mark.parametrize("next_index, counted", [("3", 0), ("0", 1), ("0 3", 1)])
def test_a_phase_whose_next_is_not_the_following_phase_is_counted(tmp_path, next_index, counted):
    # SUMO goes from a phase to its `next` (here phase 2 straight back to 0, skipping the 2 s 'rry');
    # the import runs the phases in file order: it was silent about it
    net = NET.replace('<phase duration="20" state="rrG"/>', f'<phase duration="20" state="rrG" next="{next_index}"/>')
    assert import_sumo(write_tiny(tmp_path, net)).report.counts.get("phase_next_ignored", 0) == counted


@pytest.mark.parametrize("chars, state", [
    (["G"], "G"), (["O"], "G"), (["g"], "g"), (["s"], "g"), (["o"], "g"),
    (["y"], "y"), (["Y"], "y"), (["u"], "y"), (["r"], "r"),
    (["g", "G"], "G"), (["y", "g"], "g"), (["r", "y"], "y"),  # the movement shows its lanes' greatest go
])
def test_each_signal_character_and_a_movement_of_mixed_lanes(chars, state):
    counts = Counter()
    assert link_state(chars, counts) == state
    assert counts["mixed_lane_states"] == (len(chars) > 1)


@pytest.mark.parametrize("net, tl, green, permissive", [
    (NET, "", [[0, 1, 3], [2, 3]], [[1, 3], [3]]),  # no light controls it: it may go in every phase
    (FOURTH, ' tl="C" linkIndex="3"', [[0, 1, 3], [2]], [[1, 3], []]),  # its signal's greens, yielding
])
def test_a_turnaround_at_a_signal_yields_when_it_may_go(tmp_path, net, tl, green, permissive):
    imported = import_sumo(write_tiny(tmp_path, net.replace("</net>", TURNAROUND.replace("TL", tl))))
    phases = _light(imported)["trafficLight"]["lightphases"]
    assert [p["availableRoadLinks"] for p in phases] == green
    assert [p["permissiveRoadLinks"] for p in phases] == permissive
    assert imported.report.counts.get("unsignalised_links_at_signals", 0) == (tl == "")
    assert _light(imported)["roadLinks"][3]["type"] == "turn_left"  # CityFlow has no turnaround type
    assert imported.report.counts["turnarounds_permissive"] == 1
    # approaches are the roads coming in (WC and NC), not the movements
    assert imported.report.counts["signalised_junctions_with_2_approaches"] == 1


def test_a_program_red_in_every_phase_stays_red(tmp_path):
    # its phases are not clearances (folded into a green that never comes): only the turnaround goes
    program = '<phase duration="30" state="rrr"/><phase duration="3" state="rrr"/>'
    net = NET.split("<phase")[0] + program + "\n  </tlLogic>" + NET.split("</tlLogic>")[1]
    # the vehicles turn around (a route through a movement never green is refused, naming the route)
    routes = ROUTES.split("<vehicle")[0] + '<vehicle id="u" depart="100" type="car"><route edges="NC CN"/></vehicle>'
    imported = import_sumo(write_tiny(tmp_path, net.replace("</net>", TURNAROUND.replace("TL", "")),
                                      routes + "</routes>"))
    assert [(p["time"], p["availableRoadLinks"]) for p in _light(imported)["trafficLight"]["lightphases"]] == [
        (33.0, [3])]
    assert "red_phases_folded" not in imported.report.counts


@pytest.mark.parametrize("program, phases", [
    # a yellow between two greens of the same links keeps them two phases; the cycle's last
    # transition (2 s) goes to its first green, the other (3 s) to the green after it
    ('<phase duration="30" state="Ggr"/><phase duration="3" state="yyr"/><phase duration="20" state="Ggr"/>'
     '<phase duration="10" state="rrG"/><phase duration="2" state="rry"/>',
     [(32.0, [0, 1], [1]), (23.0, [0, 1], [1]), (10.0, [2], [])]),
    # the same links green, but one of them priority in one phase and permissive in the next
    ('<phase duration="30" state="Ggr"/><phase duration="20" state="GGr"/><phase duration="10" state="rrG"/>',
     [(30.0, [0, 1], [1]), (20.0, [0, 1], []), (10.0, [2], [])]),
])
def test_only_consecutive_phases_without_a_transition_and_with_the_same_greens_merge(tmp_path, program, phases):
    net = NET.split("<phase")[0] + program + "\n  </tlLogic>" + NET.split("</tlLogic>")[1]
    imported = import_sumo(write_tiny(tmp_path, net))
    assert [(p["time"], p["availableRoadLinks"], p["permissiveRoadLinks"])
            for p in _light(imported)["trafficLight"]["lightphases"]] == phases
    assert "equal_phases_merged" not in imported.report.counts


def test_a_lane_speed_of_exactly_1000_m_s_is_read(tmp_path):
    fast = NET.replace('id="CE_0" index="0" speed="10"', 'id="CE_0" index="0" speed="1000"')
    net = read_net(write_tiny(tmp_path, fast) / "tiny.net.xml")
    assert net.edges["CE"].lanes[0].speed == 1000.0  # only a speed beyond 1000 m/s is refused


def test_only_a_junction_with_nothing_but_turnarounds_is_the_boundary(tmp_path):
    # E: CE turns around into EC; C: NC turns around into CN beside its other movements
    net = NET.replace("</net>", '<edge id="EC" from="E" to="C"><lane id="EC_0" index="0" speed="10" length="200" '
                      'shape="310,-2 110,-2"/></edge>\n<connection from="CE" to="EC" fromLane="0" toLane="0" '
                      'dir="t"/>\n</net>').replace("</net>", TURNAROUND.replace("TL", ""))
    assert turnaround_only_junctions(read_net(write_tiny(tmp_path, net) / "tiny.net.xml")) == {"E"}
    counts = import_sumo(tmp_path).report.counts  # no vehicle turns at E: it stays a dead end
    assert counts["turnarounds_at_boundary_left_out"] == 1 and "boundary_turnarounds_kept" not in counts
    # a vehicle whose given route turns there keeps E's turnaround (an unsignalised intersection)
    turning = ROUTES.replace('type="car"><route edges="WC CE"/></vehicle>\n  <trip',
                             'type="car"><route edges="WC CE EC"/></vehicle>\n  <trip')
    imported = import_sumo(write_tiny(tmp_path / "turning", net, turning))
    assert imported.report.counts["boundary_turnarounds_kept"] == 1
    assert ["WC", "CE", "EC"] in [v["route"] for v in imported.flow]


def test_a_lane_shape_more_than_1_percent_off_the_lane_length_is_counted(tmp_path):
    # CE is drawn 200 m long; SUMO drives its length attribute
    counts = import_sumo(write_tiny(tmp_path, NET.replace('speed="10" length="200"', 'speed="10" length="204"'))
                         ).report.counts
    assert counts["edges_length_differs_from_shape"] == 1
    assert "edges_length_differs_from_shape" not in import_sumo(write_tiny(tmp_path / "tiny")).report.counts


def test_a_lane_link_the_net_does_not_connect_is_as_long_as_the_movements_connected_ones(tmp_path):
    # CE gets a second lane; WC lane 1 -> CE lane 0 (7.5 m) is the movement's only connection
    net = NET.replace('shape="110,1 310,1"/>', 'shape="110,1 310,1"/><lane id="CE_1" index="1" speed="10" '
                      'length="200" shape="110,4 310,4"/>')
    straight = next(link for link in _light(import_sumo(write_tiny(tmp_path, net)))["roadLinks"]
                    if link["endRoad"] == "CE" and link["startRoad"] == "WC")
    lengths = {(x["startLaneIndex"], x["endLaneIndex"]): math.dist(*((p["x"], p["y"]) for p in x["points"]))
               for x in straight["laneLinks"]}
    assert lengths == pytest.approx({(1, 0): 7.5, (1, 1): 7.5})


def test_only_junctions_with_movements_to_order_are_reported_without_right_of_way(tmp_path):
    # a net without <request>s: C (3 movements) and E (CE -> EX, NE -> EX; a priority junction here) lack SUMO's
    # right of way; N has one movement (CN -> NE), which yields to nothing
    net = NET.replace('<junction id="E" type="dead_end"', '<junction id="E" type="priority"')
    counts = import_sumo(write_tiny(tmp_path, net.replace("</net>", DETOUR.replace("SPEED", "5")))).report.counts
    assert counts["junctions_without_right_of_way"] == 2
    # as a dead end (SUMO builds it without a junction logic: nobody yields there, in SUMO too) E lacks nothing
    counts = import_sumo(write_tiny(tmp_path / "dead_end", NET.replace("</net>", DETOUR.replace("SPEED", "5")))
                         ).report.counts
    assert counts["junctions_without_right_of_way"] == 1


@pytest.mark.parametrize("state, permissive, relaxed", [
    ("rGG", [2], 1),  # two priority greens crossing: the later one yields, counted
    ("rgG", [1], 0),  # a permissive green crossing a priority one: it already yields
])
def test_crossing_priority_greens_relax_only_where_neither_yields(tmp_path, state, permissive, relaxed):
    # the west left turn (1) and the north left turn (2) cross inside C
    program = f'<phase duration="30" state="{state}"/><phase duration="20" state="Grr"/>'
    net = NET.split("<phase")[0] + program + "\n  </tlLogic>" + NET.split("</tlLogic>")[1]
    imported = import_sumo(write_tiny(tmp_path, net))
    assert _light(imported)["trafficLight"]["lightphases"][0]["permissiveRoadLinks"] == permissive
    assert imported.report.counts.get("crossing_priority_greens_relaxed", 0) == relaxed


def test_a_connection_outside_the_junctions_int_lanes_is_counted_without_right_of_way(tmp_path):
    # C's requests name three links, but NC -> CE drives through no internal lane: no link of its own
    net = NET.replace('<junction id="C" type="traffic_light" x="105" y="0"/>',
                      '<junction id="C" type="traffic_light" x="105" y="0" intLanes=":C_0_0 :C_1_0 :C_2_0">'
                      + "".join(f'<request index="{k}" response="000"/>' for k in range(3)) + "</junction>")
    counts = import_sumo(write_tiny(tmp_path, net)).report.counts
    assert counts["connections_without_right_of_way"] == 1 and "junctions_without_right_of_way" not in counts


def test_an_edge_without_a_passenger_lane_has_its_lanes_length_for_sensing(tmp_path):
    net = NET.replace("</net>", '<edge id="RR" from="W" to="E"><lane id="RR_0" index="0" allow="rail" speed="40" '
                      'length="300" shape="0,-10 310,-10"/></edge>\n</net>')
    assert simulated_road_lengths(read_net(write_tiny(tmp_path, net) / "tiny.net.xml"))["RR"] == 300.0
    # the import leaves RR out, and the connection from WC's sidewalk
    sidewalk = net.replace("</net>", '<connection from="WC" to="CE" fromLane="0" toLane="0" dir="s"/>\n</net>')
    counts = import_sumo(write_tiny(tmp_path / "sidewalk", sidewalk)).report.counts
    assert (counts["non_passenger_edges_left_out"], counts["connections_of_non_passenger_lanes"]) == (1, 1)


def test_roads_keep_their_lanes_speeds_leftmost_first_at_sumos_default_width(tmp_path):
    roads = {road["id"]: road for road in import_sumo(write_tiny(tmp_path)).roadnet["roads"]}
    assert roads["WC"]["lanes"] == [{"width": 3.2, "maxSpeed": 12.0}, {"width": 3.2, "maxSpeed": 10.0}]


def test_internal_junctions_are_not_junctions_and_a_cycle_of_internal_lanes_counts_each_once(tmp_path):
    # :C_0_0 (7.5 m) continues on itself: a malformed chain, read once rather than forever (the net's connection
    # from :C_0 given its via, not a second connection of that lane pair: that is refused)
    plain = '<connection from=":C_0" to="CE" fromLane="0" toLane="0"/>'
    net = NET.replace('<junction id="W"', '<junction id=":C_1_0" type="internal" x="105" y="5"/><junction id="W"'
                      ).replace(plain, plain.replace("/>", ' via=":C_0_0"/>'))
    read = read_net(write_tiny(tmp_path, net) / "tiny.net.xml")
    assert set(read.junctions) == {"W", "C", "E", "N"}
    straight = next(c for c in read.connections if (c.from_edge, c.to_edge) == ("WC", "CE"))
    assert (straight.via, straight.length) == ((":C_0_0",), 7.5)
