"""The SUMO importer reads what SUMO reads as SUMO does (checked against SUMO 1.28 by hand): the
last program of a light, car-following parameters in a vType's child element, ``perHour``,
departures on SUMO's millisecond clock, options outside their sumocfg section, all-red clearance
phases as part of the transition; and it refuses what SUMO refuses (flow rate attributes together,
phases of one program with different state lengths). Hand-written scenarios: no dataset needed."""

from __future__ import annotations

import math

import pytest

from envs.errors import ScenarioError
from envs.scenario.sumo import import_sumo
from tests.sumo_fixtures import CONFIG, NET, ROUTES, write_tiny

WIDE = CONFIG.replace('<begin value="100"/><end value="160"/>', '<begin value="0"/><end value="4000"/>')


def _flow_departures(tmp_path, flow: str, config: str = WIDE) -> list[float]:
    routes = ROUTES.replace('<flow id="f0" begin="110" end="120" period="4" type="car" from="NC" to="CE"/>', flow)
    routes = "\n".join(line for line in routes.splitlines() if 'id="late"' not in line and 'id="early"' not in line
                       and 'id="v0"' not in line and 'id="t0"' not in line)
    imported = import_sumo(write_tiny(tmp_path, routes=routes, config=config))
    return sorted(vehicle["startTime"] for vehicle in imported.flow)


def _light_phases(imported) -> list[tuple[float, list[int]]]:
    light = next(x for x in imported.roadnet["intersections"] if not x["virtual"])
    return [(phase["time"], phase["availableRoadLinks"]) for phase in light["trafficLight"]["lightphases"]]


def test_the_last_program_of_a_light_runs_as_in_sumo(tmp_path):
    program = NET.split("  <tlLogic")[1].split("</tlLogic>")[0]
    second = program.replace('programID="0"', 'programID="b"').replace('duration="30"', 'duration="41"')
    net = NET.replace("</tlLogic>", "</tlLogic>\n  <tlLogic" + second + "</tlLogic>", 1)
    imported = import_sumo(write_tiny(tmp_path, net=net))
    assert _light_phases(imported)[0][0] == 41 + 2  # the second program's green, with the cycle's last yellow
    assert imported.report.counts["earlier_programs_replaced"] == 1


def test_an_all_red_clearance_after_a_yellow_folds_into_the_next_green(tmp_path):
    net = NET.replace('<phase duration="20" state="rrG"/>', '<phase duration="2" state="rrr"/>\n'
                      '    <phase duration="20" state="rrG"/>')
    imported = import_sumo(write_tiny(tmp_path, net=net))
    assert _light_phases(imported) == [(32.0, [0, 1]), (25.0, [2])]  # 55 s + the all-red 2 s: SUMO's cycle
    assert imported.report.counts["red_phases_folded"] == 1


def test_a_phase_red_for_cars_but_green_for_another_road_user_stays_a_phase(tmp_path):
    """ingolstadt21 has one: 24 s green only for links the import leaves out (no car may go)."""
    program = ('<phase duration="30" state="Ggrr"/><phase duration="3" state="yyrr"/><phase duration="10" '
               'state="rrrG"/><phase duration="20" state="rrGr"/><phase duration="2" state="rryr"/>')
    net = NET.split("<phase")[0] + program + "\n  </tlLogic>" + NET.split("</tlLogic>")[1]
    imported = import_sumo(write_tiny(tmp_path, net=net))
    assert _light_phases(imported) == [(32.0, [0, 1]), (13.0, []), (20.0, [2])]
    assert "red_phases_folded" not in imported.report.counts


def test_phases_of_one_program_with_different_state_lengths_are_refused(tmp_path):
    net = NET.replace('<phase duration="20" state="rrG"/>', '<phase duration="20" state="rrGG"/>')
    with pytest.raises(ScenarioError) as error:
        import_sumo(write_tiny(tmp_path, net=net))
    assert error.value.field.endswith("phase[2]@state") and error.value.value == "rrGG"


def test_car_following_parameters_in_a_child_element_override_the_vtypes(tmp_path):
    routes = ROUTES.replace('<vType id="car" length="4" minGap="2" accel="3" decel="5" tau="1.5"/>',
                            '<vType id="car" length="4" minGap="2" accel="3" decel="5" tau="1.5">'
                            '<carFollowing-Krauss accel="1" decel="3" sigma="0" tau="2"/></vType>')
    vehicle = import_sumo(write_tiny(tmp_path, routes=routes)).flow[0]["vehicle"]
    assert (vehicle["maxPosAcc"], vehicle["usualNegAcc"], vehicle["headwayTime"], vehicle["length"]) == (1, 3, 2, 4)


@pytest.mark.parametrize("vtype, counted", [
    ('carFollowModel="IDM" tau="1.5"/>', {"vtype_carFollowModel_IDM_driven_as_Krauss": 1}),
    ('tau="1.5"><carFollowing-IDM/></vType>', {"vtype_carFollowModel_IDM_driven_as_Krauss": 1}),
    # the attribute and the child name one model: one vType driven as Krauss (it counted 2); the
    # IDM parameter the engine has no use for is counted on its own
    ('carFollowModel="IDM" tau="1.5"><carFollowing-IDM delta="4"/></vType>',
     {"vtype_carFollowModel_IDM_driven_as_Krauss": 1, "vtype_delta_ignored": 1}),
    ('carFollowModel="Krauss" tau="1.5"><carFollowing-Krauss sigma="0"/></vType>', {}),
], ids=["attribute", "child", "both", "krauss"])
def test_a_car_following_model_other_than_krauss_is_reported_once_per_vtype_by_name(tmp_path, vtype, counted):
    routes = ROUTES.replace('tau="1.5"/>', vtype, 1)
    report = import_sumo(write_tiny(tmp_path, routes=routes)).report
    assert {k: v for k, v in report.counts.items() if k.startswith("vtype_")} == counted
    # the import's log line tells a user their IDM vehicles run as Krauss
    assert ("vtype_carFollowModel_IDM_driven_as_Krauss=1" in report.summary()) == bool(counted)


def test_per_hour_is_vehs_per_hour_and_rate_attributes_together_are_refused(tmp_path):
    assert _flow_departures(tmp_path / "a", '<flow id="f" begin="0" perHour="360" number="4" type="car" '
                            'from="NC" to="CE"/>') == [0, 10, 20, 30]
    for n, (flow, field) in enumerate([
            ('<flow id="f" begin="0" end="100" period="4" vehsPerHour="3600" type="car" from="NC" to="CE"/>',
             "vehsPerHour"),
            ('<flow id="f" begin="0" end="100" period="4" number="3" type="car" from="NC" to="CE"/>', "number")]):
        with pytest.raises(ScenarioError) as error:
            _flow_departures(tmp_path / f"b{n}", flow)
        assert error.value.field.endswith(f"@{field}")


def test_departures_run_on_sumos_millisecond_clock(tmp_path):
    """begin + n * 1.1 s in floats reaches 363.00000000000006 at n = 330; SUMO counts whole ms and
    inserts that vehicle at step 363, not 364."""
    departures = _flow_departures(tmp_path, '<flow id="f" begin="0" end="3600" period="1.1" type="car" '
                                  'from="NC" to="CE"/>')
    assert departures == [math.ceil(n * 1100 / 1000) for n in range(3273)][: len(departures)]
    assert len(departures) == 3273 and departures[330] == 363


def test_options_outside_their_section_are_read_as_sumo_reads_them(tmp_path):
    flat = ('<configuration><net-file value="tiny.net.xml"/><route-files value="tiny.rou.xml"/>'
            '<begin value="100"/><end value="160"/></configuration>')
    imported = import_sumo(write_tiny(tmp_path, config=flat))
    assert (imported.config.begin, imported.config.end) == (100.0, 160.0)
    twice = flat.replace("<begin", '<time><begin value="5"/></time><begin')
    with pytest.raises(ScenarioError, match="given twice"):
        import_sumo(write_tiny(tmp_path / "twice", config=twice))


@pytest.mark.parametrize("v_class", ["rail_fast", "subway", "cable_car"])
def test_vehicles_of_every_rail_class_are_left_out_and_counted(tmp_path, v_class):
    net = NET.replace("</net>", f'  <edge id="RR" from="W" to="E"><lane id="RR_0" index="0" allow="{v_class}" '
                      'speed="40" length="300" shape="0,-10 310,-10"/></edge>\n</net>')
    routes = ROUTES.replace("</routes>", f'  <vType id="train" vClass="{v_class}"/>\n'
                            '  <vehicle id="ice" depart="120" type="train"><route edges="RR"/></vehicle>\n</routes>')
    assert import_sumo(write_tiny(tmp_path, net=net, routes=routes)).report.counts[f"{v_class}_vehicles_left_out"] == 1


def test_an_unroutable_trip_leaves_the_boundary_turnarounds_out(tmp_path):
    """No turnaround helps a trip that has no route: the roadnet stays the one without them."""
    net = NET.replace("</net>", '  <edge id="EC" from="E" to="C"><lane id="EC_0" index="0" speed="10" length="200" '
                      'shape="310,-2 110,-2"/></edge>\n  <connection from="CE" to="EC" fromLane="0" toLane="0" '
                      'dir="t"/>\n</net>')
    stuck = ROUTES.replace('<vehicle id="late"', '<trip id="stuck" depart="120" type="car" from="CN" to="CE"/>\n'
                           '  <vehicle id="late"')
    plain, with_stuck = (import_sumo(write_tiny(tmp_path / name, net=net, routes=routes))
                         for name, routes in (("plain", ROUTES), ("stuck", stuck)))
    assert with_stuck.roadnet == plain.roadnet
    assert with_stuck.report.counts["trips_without_route_left_out"] == 1
    assert "boundary_turnarounds_kept" not in with_stuck.report.counts


def test_a_config_as_sumo_itself_saves_it_is_read(tmp_path):
    # `sumo -C` and netedit (SUMO 1.28) write the root <sumoConfiguration>; older files <configuration>
    root = ('<sumoConfiguration xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:noNamespaceSchemaLocation="http://sumo.dlr.de/xsd/sumoConfiguration.xsd">')
    saved = CONFIG.replace("<configuration>", root).replace("</configuration>", "</sumoConfiguration>")
    imported = import_sumo(write_tiny(tmp_path, config=saved))
    assert (imported.config.begin, imported.config.end) == (100.0, 160.0)
    with pytest.raises(ScenarioError, match=r"tiny\.sumocfg: field '<root>' = 'routes': expected a <configuration>"):
        import_sumo(write_tiny(tmp_path / "other", config=ROUTES))
