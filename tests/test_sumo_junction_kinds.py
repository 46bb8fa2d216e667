"""SUMO's junction types and link states that change who must stop (envs/scenario/sumo/junction_kinds.py),
a light program's attributes the import does not follow, an internal lane passenger cars may not use, and a
lane shape's z coordinate, on tests/sumo_fixtures.py's junction C."""

from __future__ import annotations

import re

import pytest

from envs.errors import ScenarioError
from envs.scenario.roadnet_parser import YIELD_KEY
from envs.scenario.sumo import import_sumo
from tests.sumo_fixtures import NET, ROUTES, write_tiny

# C's three links (its intLanes order): WC -> CE straight, WC -> CN left, NC -> CE left (given an internal lane)
LINKS = (('from="WC" to="CE" fromLane="1" toLane="0" via=":C_0_0"', 's'),
         ('from="WC" to="CN" fromLane="2" toLane="0" via=":C_1_0"', 'l'),
         ('from="NC" to="CE" fromLane="0" toLane="0" via=":C_2_0"', 'l'))


def _net(kind: str, states: str = "", responses=("000", "001", "000"), signalised: bool = False) -> str:
    """Junction C of type `kind` with SUMO's right of way (by default WC -> CN gives way to WC -> CE), its links'
    `states` (none when empty), under C's light when `signalised`, else without a light."""
    net = NET if signalised else re.sub(r"  <tlLogic.*?</tlLogic>\n", "", NET, flags=re.S)
    requests = "".join(f'<request index="{k}" response="{r}" foes="{r}" cont="0"/>' for k, r in enumerate(responses))
    net = net.replace('<junction id="C" type="traffic_light" x="105" y="0"/>',
                      f'<junction id="C" type="{kind}" x="105" y="0" intLanes=":C_0_0 :C_1_0 :C_2_0">{requests}'
                      '</junction>')
    net = re.sub(r"  <connection from=\"(WC|NC)\".*\n", "", net)
    internal = '<edge id=":C_2" function="internal"><lane id=":C_2_0" index="0" speed="8" length="5" ' \
               'shape="103,5 110,1"/></edge>\n'
    connections = ""
    for k, (link, direction) in enumerate(LINKS):
        light = f' tl="C" linkIndex="{k}"' if signalised else ""
        state = f' state="{states[k]}"' if states else ""
        connections += f'  <connection {link}{light}{state} dir="{direction}"/>\n'

    return net.replace("  <connection from=\":C_0\"", internal + connections + "  <connection from=\":C_0\"")


def _import(tmp_path, net: str, routes: str = ROUTES):
    return import_sumo(write_tiny(tmp_path, net, routes))


def _junction(imported) -> dict:
    return next(x for x in imported.roadnet["intersections"] if x["id"] == "C")


@pytest.mark.parametrize("kind, states, counted", [
    ("priority", "MmM", {}),
    ("right_before_left", "===", {}),  # the requests say who is on the right: represented
    ("left_before_right", "===", {}),
    ("priority_stop", "MsM", {"stop_sign_links_driven_as_yield": 1}),
    ("allway_stop", "www", {"allway_stop_links_driven_as_yield": 3}),
    ("zipper", "ZMZ", {"zipper_links_driven_as_yield": 2}),
])
def test_links_that_must_stop_or_zip_are_driven_as_yields_and_counted(tmp_path, kind, states, counted):
    # SUMO's vehicles stop at a stop sign ('s', 'w') before they may go, and merge alternately at a zipper ('Z');
    # the engine gives way by the requests without stopping: that was silent
    imported = _import(tmp_path / kind, _net(kind, states))
    assert {k: v for k, v in imported.report.counts.items() if k.endswith("_driven_as_yield")} == counted
    plain = _import(tmp_path / "plain", _net("priority"))
    assert imported.roadnet == plain.roadnet  # driven as the requests say, as at a priority junction
    links = [(link["startRoad"], link["endRoad"]) for link in _junction(imported)["roadLinks"]]
    assert [(links[a], links[b]) for a, b in _junction(imported)[YIELD_KEY]] == [(("WC", "CN"), ("WC", "CE"))]


@pytest.mark.parametrize("kind, signalised, yields", [
    ("priority", False, True), ("unregulated", False, False), ("dead_end", False, False),
    ("traffic_light", True, True), ("traffic_light_unregulated", True, False),
])
def test_a_junction_sumo_builds_without_right_of_way_yields_nowhere(tmp_path, kind, signalised, yields):
    # SUMO builds unregulated, traffic_light_unregulated and dead_end junctions without a junction logic: no link
    # waits for another there, whatever <request>s the file holds; here WC -> CN gave way to WC -> CE
    imported = _import(tmp_path, _net(kind, signalised=signalised))
    assert bool(_junction(imported).get(YIELD_KEY)) is yields
    assert imported.report.counts.get("right_of_way_pairs", 0) == yields


def test_a_right_turn_on_red_is_a_permissive_green_counted(tmp_path):
    # traffic_light_right_on_red: SUMO's 's' lets NC -> CE turn after a stop while C shows WC's greens; it became a
    # permissive green without a count. A signalised link's own state attribute is its light's, not counted
    net = _net("traffic_light_right_on_red", "ssM", signalised=True).replace('state="Ggr"', 'state="Ggs"')
    imported = _import(tmp_path, net)
    counts = imported.report.counts
    assert counts["right_on_red_signals_driven_as_yield"] == 1 and "stop_sign_links_driven_as_yield" not in counts
    first = _junction(imported)["trafficLight"]["lightphases"][0]
    assert 2 in first["availableRoadLinks"] and 2 in first["permissiveRoadLinks"]


@pytest.mark.parametrize("old, new, field, value", [
    ('type="priority"', 'type="priorty"', "junction[id=C]@type", "priorty"),  # SUMO: unknown junction type
    ('type="priority"', 'type="unknown"', "junction[id=C]@type", "unknown"),
    ('state="m"', 'state="x"', "connection[1]@state", "x"),
    ('state="m"', 'state="-"', "connection[1]@state", "-"),  # a dead-end link: no way through
])
def test_an_unknown_or_unmodelled_junction_type_or_link_state_is_refused(tmp_path, old, new, field, value):
    # each was imported as a priority junction
    with pytest.raises(ScenarioError) as error:
        _import(tmp_path, _net("priority", "MmM").replace(old, new))
    assert (error.value.source, error.value.field, error.value.value) == (
        str(tmp_path / "tiny.net.xml"), field, value)


@pytest.mark.parametrize("kind", ["rail_crossing", "rail_signal"])
def test_a_rail_crossing_cars_cross_is_driven_open_and_counted(tmp_path, kind):
    # SUMO closes it only while a train comes; the import leaves trains out (counted as rail vehicles), so its
    # cars drive through as at SUMO's crossing with no train. It was refused, which stopped a whole map (an
    # OpenStreetMap import holds level crossings) for want of trains the routes may not even have
    imported = _import(tmp_path / kind, _net(kind, "MmM"))
    assert imported.report.counts["rail_crossing_links_driven_open"] == 3
    plain = _import(tmp_path / "plain", _net("priority", "MmM"))
    assert imported.roadnet == plain.roadnet  # the road links' right of way as the file's requests give it


def test_a_rail_crossing_no_car_crosses_is_read(tmp_path):
    # N carries no connection: nothing a car drives changes
    net = _net("priority").replace('<junction id="N" type="dead_end"', '<junction id="N" type="rail_crossing"')
    assert _import(tmp_path / "rail", net).roadnet == _import(tmp_path / "plain", _net("priority")).roadnet


@pytest.mark.parametrize("kind, phase, child, counted", [
    # SUMO's static logic switches by duration and next alone: the actuated, NEMA and coordinated timings and a
    # phase's name change nothing there
    ("static", 'minDur="5" maxDur="50" earliestEnd="10" latestEnd="40" vehext="2" yellow="3" red="2" name="a"',
     "", {}),
    ("static", "", '<param key="cycleTime" value="60"/>', {"program_param_ignored": 1}),  # was silent
    ("static", 'foo="1"', "", {"phase_foo_ignored": 1}),
    # an actuated program runs static, counted as a whole: its timings and parameters are not counted again
    ("actuated", 'minDur="5" maxDur="50"', '<param key="max-gap" value="3"/>', {"actuated_programs_run_static": 1}),
])
def test_a_programs_attributes_and_parameters_the_import_does_not_follow_are_counted(tmp_path, kind, phase, child,
                                                                                      counted):
    net = NET.replace('type="static"', f'type="{kind}"').replace(
        '<phase duration="30" state="Ggr"/>', f'{child}<phase duration="30" state="Ggr" {phase}/>')
    counts = _import(tmp_path, net).report.counts
    assert {k: v for k, v in counts.items() if k.startswith(("program_", "phase_", "actuated_"))} == counted


def test_a_junction_passage_passenger_cars_may_not_use_is_left_out(tmp_path):
    # WC -> CN drives through :C_1_0, a bus-only lane: SUMO lets no car turn there; the import let the trip t0
    # (WC to CN) and every routed car take it
    net = NET.replace('<lane id=":C_1_0" index="0"', '<lane id=":C_1_0" index="0" allow="bus"')
    imported = _import(tmp_path, net, ROUTES.replace(
        "</routes>", '<vehicle id="pinned" depart="101" type="car"><route edges="WC CN"/></vehicle></routes>'))
    links = [(link["startRoad"], link["endRoad"]) for link in _junction(imported)["roadLinks"]]
    assert ("WC", "CN") not in links and ("WC", "CE") in links
    counts = imported.report.counts
    assert counts["connections_through_non_passenger_internal_lanes_left_out"] == 1
    assert counts["trips_without_route_left_out"] == 1 and counts["routes_through_left_out_turns_left_out"] == 1
    assert not [v for v in imported.flow if v["route"][-1] == "CN"]
    # the connection's own allow (netconvert wrote it onto the internal lane) is followed there, not ignored
    both = net.replace('via=":C_1_0"', 'allow="bus" via=":C_1_0"')
    assert "connection_allow_ignored" not in _import(tmp_path / "both", both).report.counts


def test_a_lane_shapes_z_coordinate_changes_nothing(tmp_path):
    # the engine's roads are flat and drawn only: a road's length is the lane's `length` (netconvert measures it
    # along the 3D shape, slope included), not the shape's
    raised = NET.replace('shape="0,1 100,1"', 'shape="0,1,0 100,1,5"')
    plain = _import(tmp_path / "plain", NET)
    imported = _import(tmp_path / "raised", raised)
    assert (imported.roadnet, imported.report.counts) == (plain.roadnet, plain.report.counts)
