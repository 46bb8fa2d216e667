"""What a researcher's own SUMO scenario may hold beyond the registered datasets (tests/sumo_fixtures.py's
scenario, window [100, 160) s): SUMO's clock times ("1:00:00"), flows beginning after the config's end,
vType and vehicle attributes the engine does not follow, and origin/destination forms the import cannot route."""

from __future__ import annotations

import pytest

from envs.errors import ScenarioError
from envs.scenario.sumo import import_sumo
from tests.sumo_fixtures import CONFIG, NET, write_tiny

CAR = '<vType id="car" length="4" minGap="2" accel="3" decel="5" tau="1.5"/>'


def _routes(body: str) -> str:
    return f"<routes>{CAR}{body}</routes>"


@pytest.mark.parametrize("flow, field", [
    # SUMO's default end is the config's (160): before the flow's begin, SUMO refuses "Flow 'f' ends before
    # its begin time"; here the error path unpacked the missing <interval> (a TypeError)
    ('<flow id="f" begin="200" period="10" from="NC" to="CE"/>', "flow[id=f]@begin"),
    ('<flow id="f" begin="200" number="3" from="NC" to="CE"/>', "flow[id=f]@begin"),
    ('<interval begin="200"><flow id="f" period="10" from="NC" to="CE"/></interval>', "interval@begin"),
])
def test_a_flow_beginning_after_the_configs_end_without_its_own_end_is_named(tmp_path, flow, field):
    with pytest.raises(ScenarioError, match=r"ends before its begin \(200\): without an end of its own it ends at "
                                            r"the config's end \(160\)") as error:
        import_sumo(write_tiny(tmp_path, routes=_routes(flow)))
    assert (error.value.field, error.value.value) == (field, "200")


@pytest.mark.parametrize("written, seconds", [("0:01:40", 100.0), ("0:0:01:40.5", 100.5), ("100", 100.0)])
def test_sumos_clock_times_read_as_seconds_as_sumo_reads_them(tmp_path, written, seconds):
    # SUMO reads every time as seconds or [days:]hours:minutes:seconds; here they were 'expected a number'
    config = CONFIG.replace('<begin value="100"/>', f'<begin value="{written}"/>').replace(
        '<end value="160"/>', '<end value="0:02:40"/>')
    routes = _routes(f'<vehicle id="v" depart="{written}" type="car"><route edges="WC CE"/></vehicle>'
                     f'<flow id="f" begin="{written}" end="0:01:55" period="5" type="car" from="NC" to="CE"/>'
                     f'<interval begin="0:01:50" end="0:02:00"><flow id="g" period="5" from="NC" to="CE"/></interval>')
    imported = import_sumo(write_tiny(tmp_path, routes=routes, config=config))
    assert (imported.config.begin, imported.config.end) == (seconds, 160.0)
    # the vehicle at the begin, f every 5 s from the begin until 115, g at 110 and 115 (rounded up to whole steps)
    assert sorted((v["route"][0], v["startTime"]) for v in imported.flow) == [
        ("NC", 0), ("NC", 5), ("NC", 10), ("NC", 10), ("NC", 15), ("WC", 0)]


@pytest.mark.parametrize("file, old, new, field, value", [
    ("tiny.sumocfg", '<begin value="100"/>', '<begin value="1:40"/>', "time.begin@value", "1:40"),
    ("tiny.sumocfg", '<end value="160"/>', '<end value="0:x:40"/>', "time.end@value", "0:x:40"),
    ("tiny.rou.xml", 'depart="100.0"', 'depart="0:01:nan"', "vehicle[id=v0]@depart", "0:01:nan"),
    ("tiny.rou.xml", 'begin="110"', 'begin="0:01:5O"', "flow[id=f0]@begin", "0:01:5O"),
    ("tiny.rou.xml", 'begin="110"', 'begin="0:-1:50"', "flow[id=f0]@begin", "0:-1:50"),
])
def test_a_malformed_clock_time_is_named(tmp_path, file, old, new, field, value):
    folder = write_tiny(tmp_path)
    (folder / file).write_text((folder / file).read_text().replace(old, new))
    with pytest.raises(ScenarioError) as error:
        import_sumo(folder)
    assert (error.value.source, error.value.field, error.value.value) == (str(folder / file), field, value)


def test_vtype_and_vehicle_attributes_the_engine_does_not_follow_are_counted(tmp_path):
    # a reaction time (actionStepLength), lane-change and junction model parameters, impatience and a
    # vehicle's rerouting device were dropped without a count; colours and names change nothing and are not counted
    routes = _routes('<vType id="x" color="red" guiShape="bus" actionStepLength="1" lcStrategic="0.5" '
                     'jmDriveAfterRedTime="2" impatience="0.3" speedFactor="1.1" carFollowModel="Krauss"/>'
                     '<vehicle id="v" depart="105" type="x" color="1,0,0" reroute="true" departLane="best">'
                     '<route edges="WC CE"/><param key="has.rerouting.device" value="true"/></vehicle>')
    counts = import_sumo(write_tiny(tmp_path, routes=routes)).report.counts
    assert {k: v for k, v in counts.items() if k.startswith(("vtype_", "vehicle_"))} == {
        "vtype_actionStepLength_ignored": 1, "vtype_lcStrategic_ignored": 1, "vtype_jmDriveAfterRedTime_ignored": 1,
        "vtype_impatience_ignored": 1, "vtype_speedFactor_ignored": 1, "vehicle_reroute_ignored": 1,
        "vehicle_departLane_ignored": 1, "vehicle_param_ignored": 1}


@pytest.mark.parametrize("trip, field", [
    # SUMO routes these between junctions or traffic assignment zones (--junction-taz, TAZ files);
    # the error said the trip misses 'from'
    ('<trip id="t" depart="105" fromJunction="W" toJunction="E"/>', "trip[id=t]@fromJunction"),
    ('<flow id="t" begin="105" end="110" number="1" fromTaz="a" toTaz="b"/>', "flow[id=t]@fromTaz"),
    ('<trip id="t" depart="105" from="WC" toJunction="E"/>', "trip[id=t]@toJunction"),
])
def test_junction_and_taz_trips_are_refused_by_their_attribute(tmp_path, trip, field):
    with pytest.raises(ScenarioError, match="trips between junctions or TAZs are not supported") as error:
        import_sumo(write_tiny(tmp_path, routes=_routes(trip)))
    assert error.value.field == field


def test_a_taz_beside_from_and_to_edges_is_counted_as_sumo_drives_the_edges(tmp_path):
    # od2trips writes both: SUMO (without rerouting) drives from the edge to the edge
    routes = _routes('<trip id="t" depart="105" from="WC" to="CE" fromTaz="a" toTaz="b"/>')
    imported = import_sumo(write_tiny(tmp_path, routes=routes))
    assert [v["route"] for v in imported.flow] == [["WC", "CE"]]
    assert imported.report.counts["vehicle_fromTaz_ignored"] == imported.report.counts["vehicle_toTaz_ignored"] == 1


def test_a_vehicles_own_route_distribution_is_refused_by_name(tmp_path):
    routes = _routes('<vehicle id="v" depart="105"><routeDistribution><route edges="WC CE" probability="1"/>'
                     '</routeDistribution></vehicle>')
    with pytest.raises(ScenarioError, match="<routeDistribution> is not supported") as error:
        import_sumo(write_tiny(tmp_path, routes=routes))
    assert error.value.field == "vehicle[id=v].routeDistribution"



def test_an_exponential_flow_departs_at_its_mean_period_and_is_counted(tmp_path):
    # period="exp(X)" (SUMO's Poisson arrivals, X departures a second on average) was refused as 'expected a
    # number'; as a probability flow, it departs every 1/X s (here 5 s) from its begin
    routes = _routes('<flow id="f" begin="100" end="130" period="exp(0.2)" type="car" from="NC" to="CE"/>')
    imported = import_sumo(write_tiny(tmp_path, routes=routes))
    assert [v["startTime"] for v in imported.flow] == [0, 5, 10, 15, 20, 25]
    assert imported.report.counts["exponential_flows_as_mean_period"] == 1


@pytest.mark.parametrize("period", ["exp(0)", "exp(-1)", "exp(x)", "exp(nan)", "exp 0.2"])
def test_a_malformed_exponential_period_is_named(tmp_path, period):
    routes = _routes(f'<flow id="f" begin="100" end="130" period="{period}" from="NC" to="CE"/>')
    with pytest.raises(ScenarioError) as error:
        import_sumo(write_tiny(tmp_path, routes=routes))
    assert (error.value.field, error.value.value) == ("flow[id=f]@period", period)


BUS_ONLY_CN = ('<lane id="CN_0" index="0" speed="8"', '<lane id="CN_0" index="0" allow="bus" speed="8"')


@pytest.mark.parametrize("bus", ['<vehicle id="b" depart="105" type="b"><route edges="WC CN"/></vehicle>',
                                 '<trip id="b" depart="105" type="b" from="WC" to="CN"/>'])
def test_a_bus_on_a_bus_only_road_is_left_out_and_counted(tmp_path, bus):
    # SUMO drives a bus on a bus lane; the import keeps passenger lanes only, and the bus's route through
    # the road it left out refused the whole scenario ('not a passenger road of the net')
    routes = _routes('<vType id="b" vClass="bus"/>' + bus + '<vehicle id="v" depart="106" type="car">'
                     '<route edges="WC CE"/></vehicle>')
    imported = import_sumo(write_tiny(tmp_path, NET.replace(*BUS_ONLY_CN), routes))
    assert [v["route"] for v in imported.flow] == [["WC", "CE"]]
    assert imported.report.counts["vehicles_on_roads_without_passenger_lanes_left_out"] == 1


@pytest.mark.parametrize("vehicle, field, value, reason", [
    # SUMO does not let a passenger car drive on a bus-only road either: the error names the road
    ('<vehicle id="v" depart="106" type="car"><route edges="WC CN"/></vehicle>', "vehicle[id=v]@edges", "CN",
     "route edge 1 is a road without passenger lanes"),
    ('<trip id="v" depart="106" type="car" from="WC" to="CN"/>', "trip[id=v]@to", "CN",
     "a road without passenger lanes"),
    # an edge the net does not have, and one inside a junction, were 'not a passenger road of the net' too
    ('<vehicle id="v" depart="106" type="car"><route edges="WC XX"/></vehicle>', "vehicle[id=v]@edges", "XX",
     "route edge 1 names no edge of the net"),
    ('<vehicle id="v" depart="106" type="car"><route edges="WC :C_0 CE"/></vehicle>', "vehicle[id=v]@edges", ":C_0",
     r"route edge 1 is an internal edge \(inside a junction\)"),
    ('<trip id="v" depart="106" type="car" from="WC" to="XX"/>', "trip[id=v]@to", "XX", "names no edge of the net"),
])
def test_a_car_off_the_passenger_roads_is_refused_naming_why(tmp_path, vehicle, field, value, reason):
    with pytest.raises(ScenarioError, match=reason) as error:
        import_sumo(write_tiny(tmp_path, NET.replace(*BUS_ONLY_CN), _routes(vehicle)))
    assert (error.value.field, error.value.value) == (field, value)


ADDITIONAL = """<additional>
  <vType id="slow" maxSpeed="7" length="6"/>
  <tlLogic id="C" type="static" programID="tuned" offset="0">
    <phase duration="40" state="Ggr"/><phase duration="3" state="yyr"/><phase duration="10" state="rrG"/>
    <phase duration="2" state="rry"/>
  </tlLogic>
  <inductionLoop id="d0" lane="WC_1" pos="50" period="60" file="out.xml"/>
  <e1Detector id="d1" lane="WC_2" pos="50" period="60" file="out.xml"/>
  <poly id="p" shape="0,0 1,1 1,0" color="red"/>
</additional>
"""
WITH_ADDITIONAL = CONFIG.replace("</input>", '<additional-files value="tiny.add.xml"/></input>')


def _with_additional(tmp_path, additional: str = ADDITIONAL, config: str = WITH_ADDITIONAL):
    routes = _routes('<vehicle id="v" depart="105" type="slow"><route edges="WC CE"/></vehicle>')
    folder = write_tiny(tmp_path, routes=routes, config=config)
    (folder / "tiny.add.xml").write_text(additional)
    return folder


def test_additional_files_give_vtypes_and_programs_and_count_the_rest(tmp_path):
    # they were refused; SUMO loads their vTypes (which the route files may use) and their programs
    # (the last loaded program of a light runs), and writes the detectors' outputs
    imported = import_sumo(_with_additional(tmp_path))
    assert [(v["vehicle"]["maxSpeed"], v["vehicle"]["length"]) for v in imported.flow] == [(7.0, 6.0)]
    light = next(x for x in imported.roadnet["intersections"] if x["id"] == "C")["trafficLight"]
    assert [phase["time"] for phase in light["lightphases"]] == [42.0, 13.0]  # yellows folded into the next green
    counts = imported.report.counts
    assert (counts["earlier_programs_replaced"], counts["additional_inductionLoop_ignored"],
            counts["additional_e1Detector_ignored"], counts["additional_poly_ignored"]) == (1, 1, 1, 1)


@pytest.mark.parametrize("old, new, field, value", [
    # a program for a light the net does not have controls nothing: the id is misspelt
    ('<tlLogic id="C"', '<tlLogic id="Q"', "tlLogic[id=Q]@id", "Q"),
    # the net's connections show signal 2 of light C: a program of two signals cannot serve them
    ('state="Ggr"/><phase duration="3" state="yyr"/><phase duration="10" state="rrG"/>\n    <phase duration="2" '
     'state="rry"/>', 'state="Gg"/><phase duration="3" state="yy"/>', "tlLogic[id=C].phase[0]@state", "Gg"),
    ("<additional>", "<net>", "<root>", "net"),
    ('<tlLogic id="C" type="static"', '<tlLogic id="C" type="statc"', "tlLogic[id=C]@type", "statc"),
])
def test_a_malformed_additional_file_is_named(tmp_path, old, new, field, value):
    additional = ADDITIONAL.replace(old, new).replace("</additional>", "</net>" if new == "<net>" else "</additional>")
    folder = _with_additional(tmp_path, additional)
    with pytest.raises(ScenarioError) as error:
        import_sumo(folder)
    assert (error.value.source, error.value.field, error.value.value) == (str(folder / "tiny.add.xml"), field, value)


@pytest.mark.parametrize("value, refused", [
    ("missing.add.xml", "<file>"), ("tiny.add.xml,", "input.additional-files@value"), ("", None)])
def test_the_configs_additional_files_are_named_or_none(tmp_path, value, refused):
    config = CONFIG.replace("</input>", f'<additional-files value="{value}"/></input>')
    folder = _with_additional(tmp_path, config=config)
    if refused is None:  # SUMO reads an empty list as no file: the vType 'slow' is then unknown
        with pytest.raises(ScenarioError, match="names an unknown <vType>"):
            import_sumo(folder)
        return
    with pytest.raises(ScenarioError) as error:
        import_sumo(folder)
    assert error.value.field == refused


def test_a_programs_clock_times_read_as_seconds(tmp_path):
    # SUMO reads a phase's duration and a program's offset as times too (a hand-written additional program)
    additional = ADDITIONAL.replace('duration="40"', 'duration="0:00:40"').replace('offset="0"', 'offset="0:00:05"')
    imported = import_sumo(_with_additional(tmp_path, additional))
    light = next(x for x in imported.roadnet["intersections"] if x["id"] == "C")["trafficLight"]
    assert [phase["time"] for phase in light["lightphases"]] == [42.0, 13.0]
    assert imported.report.counts["program_offsets_ignored"] == 1


def test_the_stops_of_a_named_route_are_counted(tmp_path):
    # a bus line's route with its stops: the stops were dropped without a count (a vehicle's own were counted)
    routes = _routes('<route id="line" edges="WC CE"><stop lane="CE_0" duration="20"/><stop lane="CE_0" '
                     'endPos="150" duration="10"/><param key="a" value="b"/></route>'
                     '<vehicle id="v" depart="105" type="car" route="line"/>')
    counts = import_sumo(write_tiny(tmp_path, routes=routes)).report.counts
    assert (counts["route_stops_ignored"], counts["route_param_ignored"]) == (2, 1)


def test_an_additional_file_of_routes_gives_its_vtypes(tmp_path):
    # a route file listed among the additional files (so that its vTypes load first), as SUMO reads it
    additional = '<routes><vType id="slow" maxSpeed="7" length="6"/></routes>'
    imported = import_sumo(_with_additional(tmp_path, additional))
    assert [(v["vehicle"]["maxSpeed"], v["vehicle"]["length"]) for v in imported.flow] == [(7.0, 6.0)]


def test_a_light_programmed_twice_in_one_additional_file_counts_each_replacement_once(tmp_path):
    # the net's program is replaced by the file's first, that one by its second: two replacements
    program = ADDITIONAL[ADDITIONAL.index("  <tlLogic"):ADDITIONAL.index("  <inductionLoop")]
    twice = ADDITIONAL.replace(program, program + program.replace('duration="40"', 'duration="30"'))
    imported = import_sumo(_with_additional(tmp_path, twice))
    light = next(x for x in imported.roadnet["intersections"] if x["id"] == "C")["trafficLight"]
    assert [phase["time"] for phase in light["lightphases"]] == [32.0, 13.0]  # the last loaded runs
    assert imported.report.counts["earlier_programs_replaced"] == 2


# --- what a researcher's own .net.xml may hold beyond what the import reads (issue #17 point 2) ---

def _net_with(*replacements: tuple[str, str]) -> str:
    net = NET
    for old, new in replacements:
        assert old in net, old  # a fixture edit that no longer applies would test nothing
        net = net.replace(old, new)
    return net


def test_a_program_no_connection_uses_is_counted(tmp_path):
    # a second program that no connection names controls nothing (in SUMO too): it was dropped without a count
    unused = '<tlLogic id="Z" type="static" programID="0" offset="0"><phase duration="30" state="G"/></tlLogic>'
    imported = import_sumo(write_tiny(tmp_path, _net_with(("<junction id=\"W\"", unused + '<junction id="W"'))))
    assert imported.report.counts["programs_without_connections_ignored"] == 1
    assert {light["tls_id"] for light in imported.lights.values()} == {"C"}  # Z runs no intersection


@pytest.mark.parametrize("replacements, field, value", [
    # SUMO refuses a second lane of an id ("Another lane with the id ... exists"); here the second internal
    # lane's length (4 m) silently became that of every connection through either, a normal lane's was unchecked
    ((('<lane id=":C_1_0"', '<lane id=":C_0_0"'), ('via=":C_1_0"', 'via=":C_0_0"')),
     "edge[id=:C_1].lane[id=:C_0_0]@id", ":C_0_0"),
    ((('<lane id="CN_0"', '<lane id="CE_0"'),), "edge[id=CN].lane[id=CE_0]@id", "CE_0"),
])
def test_a_lane_id_given_twice_is_refused(tmp_path, replacements, field, value):
    with pytest.raises(ScenarioError, match="another <lane> has this id") as error:
        import_sumo(write_tiny(tmp_path, _net_with(*replacements)))
    assert (error.value.field, error.value.value) == (field, value)


@pytest.mark.parametrize("repeated", [
    '<connection from="NC" to="CE" fromLane="0" toLane="0" dir="l"/>',  # the same link, once without its light
    '<connection from="NC" to="CE" fromLane="0" toLane="0" tl="C" linkIndex="2" dir="l"/>',  # an exact copy
])
def test_a_connection_given_twice_is_refused(tmp_path, repeated):
    # which signal and internal lanes the link has became whichever came last (its signal slot counted twice)
    net = _net_with(("</net>", repeated + "</net>"))
    with pytest.raises(ScenarioError, match=r"repeats connection\[2\]") as error:
        import_sumo(write_tiny(tmp_path, net))
    assert (error.value.field, error.value.value) == ("connection[4]", "NC_0->CE_0")


@pytest.mark.parametrize("written, reason", [("true", "right-hand traffic"), ("1", "right-hand traffic"),
                                             ("maybe", "expected true or false")])
def test_a_left_hand_net_is_refused(tmp_path, written, reason):
    # gridlight's crossing test assumes right-hand traffic: a left-hand net's greens were checked and relaxed as
    # if vehicles kept right
    with pytest.raises(ScenarioError, match=reason) as error:
        import_sumo(write_tiny(tmp_path, _net_with(('<net version="1.9">',
                                                     f'<net version="1.9" lefthand="{written}">'))))
    assert (error.value.field, error.value.value) == ("net@lefthand", written)


def test_a_right_hand_net_may_say_so(tmp_path):
    net = _net_with(('<net version="1.9">', '<net version="1.9" lefthand="false">'))
    assert import_sumo(write_tiny(tmp_path / "a", net)).roadnet == import_sumo(write_tiny(tmp_path / "b")).roadnet


def test_net_attributes_and_elements_the_engine_does_not_follow_are_counted(tmp_path):
    # SUMO simulates these (lane-change restrictions, an acceleration lane, a connection's keepClear and
    # visibility, a roundabout for the lane changers, prohibitions in the request bits); they were dropped without
    # a count. Drawing, names and what netconvert already built into the lanes (endOffset: the lane is shortened,
    # its length is read), requests (pass) or the missing tl (uncontrolled) are not counted.
    net = _net_with(
        ('<lane id="WC_1" index="1"', '<lane id="WC_1" index="1" changeLeft="bus" changeRight="bus" acceleration="1" '
                                     'endOffset="2" width="3.5" type="x"'),
        ('shape="0,1 100,1"/>', 'shape="0,1 100,1"><neigh lane="CE_0"/><param key="a" value="b"/></lane>'),
        ('allow="pedestrian"', 'allow="pedestrian" changeLeft="all"'),  # a sidewalk's: left out with it, uncounted
        ('<edge id="CE" from="C" to="E">', '<edge id="CE" from="C" to="E" name="Main St" priority="2" bidi="EC">'),
        ('<junction id="C" type="traffic_light" x="105" y="0"/>', '<junction id="C" type="traffic_light" x="105" '
         'y="0" z="3" incLanes="WC_1 WC_2 NC_0" shape="100,-5 110,-5 110,5"><param key="k" value="v"/></junction>'),
        ('fromLane="2" toLane="0" via=":C_1_0"', 'fromLane="2" toLane="0" keepClear="0" visibility="9" pass="1" '
                                                'contPos="2" speed="5" via=":C_1_0"'),
        ("</net>", '<prohibition prohibitor="WC->CE" prohibited="NC->CE"/><roundabout nodes="C" edges="CE"/>'
                   '<location netOffset="0,0"/><type id="t"><restriction vClass="bus" speed="5"/></type></net>'))
    imported = import_sumo(write_tiny(tmp_path, net))
    counted = {k: v for k, v in imported.report.counts.items() if k.startswith(("lane_", "edge_", "junction_",
                                                                                 "connection_", "net_", "type_"))}
    assert counted == {
        "lane_changeLeft_ignored": 1, "lane_changeRight_ignored": 1, "lane_acceleration_ignored": 1,
        "lane_neigh_ignored": 1, "lane_param_ignored": 1, "edge_bidi_ignored": 1, "junction_param_ignored": 1,
        "connection_keepClear_ignored": 1, "connection_visibility_ignored": 1, "connection_contPos_ignored": 1,
        "connection_speed_ignored": 1, "net_prohibition_ignored": 1, "net_roundabout_ignored": 1,
        "type_restriction_ignored": 1}
    # counted, not changed: the roads and movements are those of the plain net
    assert imported.roadnet == import_sumo(write_tiny(tmp_path / "plain")).roadnet
