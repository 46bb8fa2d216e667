"""The SUMO net reader and the program translation in detail (tests/sumo_fixtures.py's junction C):
lane permissions, lane order, internal lane chains, defaults of connections and programs, what each
signal character means, and which approximations the report counts."""

from __future__ import annotations

from collections import Counter

import pytest

from envs.scenario.sumo import import_sumo
from envs.scenario.sumo.net_reader import passenger_allowed, read_net
from envs.scenario.sumo.programs import link_state
from envs.scenario.sumo.to_roadnet import gridlight_lanes
from tests.sumo_fixtures import NET, write_tiny

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


def test_a_program_red_in_every_phase_stays_red(tmp_path):
    # its phases are not clearances (folded into a green that never comes): only the turnaround goes
    program = '<phase duration="30" state="rrr"/><phase duration="3" state="rrr"/>'
    net = NET.split("<phase")[0] + program + "\n  </tlLogic>" + NET.split("</tlLogic>")[1]
    imported = import_sumo(write_tiny(tmp_path, net.replace("</net>", TURNAROUND.replace("TL", ""))))
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
