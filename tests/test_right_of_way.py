"""Right of way (``engine.junction_yielding``, envs/engine/right_of_way.py): a permissive green
waits for the movements it yields to; the importer reads SUMO's <request> elements into
``yieldTo`` pairs; off by default, and nothing changes without pairs."""

from __future__ import annotations

import pytest
import torch

from envs.engine import EngineParams, Simulator
from envs.engine.right_of_way import COMING_SPEED, permissive_greens
from envs.engine.signals import Signals
from envs.errors import ConfigError, ScenarioError
from envs.scenario import load_scenario, scenario_from_dicts, scenario_from_files, scenario_from_sumo
from envs.scenario.cityflow import write_cityflow
from envs.scenario.roadnet_parser import parse_roadnet
from envs.scenario.sumo import import_sumo
from envs.scenario.sumo.net_reader import read_net
from tests.engine_checks import check_all, step_signals
from tests.minimal_scenario import _boundary, _junction, _road_link, assert_names_everything, make_road
from tests.sumo_fixtures import NET, write_tiny

GAP_S = EngineParams().yield_gap_s
MAJOR, MINOR = 0, 1  # road-link indices at the merge M


def merge_roadnet(yields=((MINOR, MAJOR),), permissive=(MAJOR, MINOR)) -> dict:
    """major_in (from W) and minor_in (from S) merge onto out (to E) at M, one phase with both
    green (`permissive` of them yielding: both, an unsignalised junction)."""
    links = [_road_link("go_straight", "major_in", "out", [(0, 0), (1, 1)]),
             _road_link("turn_right", "minor_in", "out", [(0, 0), (1, 1)])]
    merge = _junction("M", 0, links, [[MAJOR, MINOR]])
    merge["trafficLight"]["lightphases"][0]["permissiveRoadLinks"] = list(permissive)
    if yields:
        merge["yieldTo"] = [list(pair) for pair in yields]
    return {
        "intersections": [_boundary("W", -300, 0), _boundary("S", 0, -300), merge,
                          _boundary("E", 300, 0)],
        "roads": [make_road("major_in", "W", "M", (-300, 0), (-10, 0)),
                  make_road("minor_in", "S", "M", (0, -300), (0, -10)),
                  make_road("out", "M", "E", (10, 0), (300, 0))],
    }


def merge_flow(major_interval: float = 3.0, minor_interval: float = 10.0) -> list[dict]:
    vehicle = {"length": 5.0, "width": 2.0, "maxPosAcc": 2.0, "maxNegAcc": 4.5, "usualPosAcc": 2.0,
               "usualNegAcc": 4.5, "minGap": 2.5, "maxSpeed": 11.0, "headwayTime": 1.5}
    return [{"vehicle": vehicle, "route": ["major_in", "out"], "interval": major_interval, "startTime": 0,
             "endTime": 240},
            {"vehicle": vehicle, "route": ["minor_in", "out"], "interval": minor_interval, "startTime": 0,
             "endTime": 240}]


def run_merge(yielding: bool, yields=((MINOR, MAJOR),), permissive=(MAJOR, MINOR)):
    """The merge for 600 s, past the end of its demand."""
    scenario = scenario_from_dicts(merge_roadnet(yields, permissive), merge_flow(), name="merge")
    sim = Simulator(scenario.network, scenario.demand(1), EngineParams(junction_yielding=yielding))
    sim.run(600)
    return scenario, sim


def assert_identical(a: Simulator, b: Simulator) -> None:
    for name, value in a.state._asdict().items():
        assert torch.equal(value, getattr(b.state, name)), name


def delay_by_first_road(scenario, sim) -> dict[str, float]:
    """Mean delay in the network of every trip (all finish: the run outlasts the demand)."""
    assert bool((sim.state.trip_finish[0, :-1] >= 0).all())
    first_road = torch.as_tensor(scenario.trips.routes[:, 0])
    return {name: float(sim.state.trip_delay[0, :-1][first_road == road].mean())
            for road, name in enumerate(scenario.network.road_ids[:2])}


def test_off_by_default_and_nothing_changes_without_pairs():
    assert_identical(run_merge(False)[1], run_merge(True, yields=())[1])
    assert not EngineParams().junction_yielding


def test_a_priority_green_never_waits():
    # the minor movement shows 'G' (not permissive): its yield pair never applies
    _, plain = run_merge(False, permissive=(MAJOR,))
    _, yielding = run_merge(True, permissive=(MAJOR,))
    assert_identical(plain, yielding)


def test_through_the_intergreen_a_green_keeps_the_previous_phases_kind():
    # phase 0: both green, the minor one permissive; phase 1: the minor one alone, priority.
    # Switching 0 -> 1 ends the major's green: 5 s of intergreen, the minor one green throughout
    roadnet = merge_roadnet()
    roadnet["intersections"][2]["trafficLight"]["lightphases"] = [
        {"time": 30, "availableRoadLinks": [MAJOR, MINOR], "permissiveRoadLinks": [MINOR]},
        {"time": 30, "availableRoadLinks": [MINOR]}]
    net = scenario_from_dicts(roadnet, merge_flow(), name="merge").network
    params = EngineParams(junction_yielding=True)
    minor = net.movement_of_pair[(net.road_ids.index("minor_in"), net.road_ids.index("out"))]
    seen = []
    for timer in range(7):
        phase = torch.tensor([[1]])
        signals = Signals(phase, torch.tensor([[0]]), torch.tensor([[timer]]), None, None)
        seen.append(bool(permissive_greens(net, params, signals)[0, minor]))
    assert seen == [True] * 5 + [False] * 2  # yellow_s + all_red_s = 5 s, then phase 1's 'G'
    steady = Signals(torch.tensor([[0]]), torch.tensor([[0]]), torch.tensor([[0]]), None, None)
    assert bool(permissive_greens(net, params, steady)[0, minor])


def test_the_minor_road_never_cuts_in_front_of_a_coming_major_vehicle():
    scenario = scenario_from_dicts(merge_roadnet(), merge_flow(), name="merge")
    net = scenario.network
    major_lanes = net.road_lanes[net.road_ids.index("major_in")]
    minor_lanes = net.road_lanes[net.road_ids.index("minor_in")]
    out_lanes = net.road_lanes[net.road_ids.index("out")]
    params = EngineParams(junction_yielding=True)
    sim = Simulator(net, scenario.demand(1), params)
    length = float(net.road_length[net.road_ids.index("major_in")])
    waited = crossed = 0
    for _ in range(600):
        before = sim.snapshot()
        sim.step(torch.full((1, net.num_intersections), -1))
        check_all(net, sim.demand, params, before, sim.state)
        heads = before.lane_head[0]
        major = [int(h) for h in heads[major_lanes] if h >= 0]
        coming = any(float(before.veh_speed[0, h]) >= COMING_SPEED and
                     length - float(before.veh_pos[0, h]) <= GAP_S * float(before.veh_speed[0, h])
                     for h in major)
        for h in (int(h) for h in heads[minor_lanes] if h >= 0):
            speed, gap = float(before.veh_speed[0, h]), length - float(before.veh_pos[0, h])
            can_stop = speed * speed <= 2.0 * float(before.veh_decel[0, h]) * gap
            moved_on = bool((sim.state.veh_lane[0, h] == out_lanes).any())
            if coming and can_stop:
                assert not moved_on, f"t={int(before.t[0])}: minor head {h} crossed"
                waited += 1
            crossed += moved_on
    assert waited > 50 and crossed > 10  # the rule was exercised, and the minor road still flows



def clearly_not_coming(net, before, green, yellow, lanes, movement) -> bool:
    """No head of `lanes` (one movement's) is coming in the step from `before` (signals `green`,
    `yellow` ``[M]`` in force during it), by a margin past float rounding: slower than
    COMING_SPEED, farther than GAP_S at its speed, or facing red or a yellow it can stop for."""
    for lane in lanes:
        h = int(before.lane_head[0, lane])
        if h < 0:
            continue
        speed, pos, decel = (float(x[0, h]) for x in (before.veh_speed, before.veh_pos, before.veh_decel))
        to_stop = float(net.lane_length[lane]) - pos
        can_stop = speed * speed < 2.0 * decel * to_stop - 1e-3
        open_ = bool(green[movement]) or (bool(yellow[movement]) and not can_stop)
        if open_ and speed > COMING_SPEED - 1e-4 and to_stop < GAP_S * speed + 1e-3:
            return False
    return True


@pytest.mark.parametrize("second_phase", [None, [MINOR]])
def test_a_minor_head_crosses_as_without_right_of_way_when_none_is_coming_or_it_cannot_stop(second_phase):
    """The converse of the test above: a major head that stands, starts from its stop line, is
    farther than the gap or faces red holds nobody, and a minor head that can no longer stop
    comfortably is held by none: from the same state, such minor heads cross exactly as they do
    with the rule off. With `second_phase`, the last 40 s of every 80 show the minor road alone,
    still permissive, while major heads brake for red."""
    roadnet = merge_roadnet()
    if second_phase is not None:
        roadnet["intersections"][2]["trafficLight"]["lightphases"].append(
            {"time": 40, "availableRoadLinks": second_phase, "permissiveRoadLinks": second_phase})
    # major vehicles far apart (heads far out as well as near), minor ones close together
    scenario = scenario_from_dicts(roadnet, merge_flow(major_interval=12.0, minor_interval=3.0), name="merge")
    net = scenario.network
    major_lanes = net.road_lanes[net.road_ids.index("major_in")].tolist()
    minor_lanes = net.road_lanes[net.road_ids.index("minor_in")]
    out_lanes = net.road_lanes[net.road_ids.index("out")]
    major = net.movement_of_pair[(net.road_ids.index("major_in"), net.road_ids.index("out"))]
    params = EngineParams(junction_yielding=True)
    sim = Simulator(net, scenario.demand(1), params)
    plain = Simulator(net, scenario.demand(1), EngineParams(junction_yielding=False))
    compared = crossed = 0
    for t in range(400):
        phase = 1 if second_phase is not None and t % 80 >= 40 else 0
        command = torch.full((1, net.num_intersections), phase)
        before = sim.snapshot()
        plain.restore(before)
        plain.step(command)
        sim.step(command)
        green, yellow = (mask[0] for mask in step_signals(net, params, sim.state))
        none_coming = clearly_not_coming(net, before, green, yellow, major_lanes, major)
        for lane in minor_lanes.tolist():
            h = int(before.lane_head[0, lane])
            if h < 0:
                continue
            speed, to_stop = float(before.veh_speed[0, h]), float(net.lane_length[lane] - before.veh_pos[0, h])
            cannot_stop = speed * speed > 2.0 * float(before.veh_decel[0, h]) * to_stop + 1e-3
            if not (none_coming or cannot_stop):  # a head that cannot stop never yields
                continue
            moved_on = bool((sim.state.veh_lane[0, h] == out_lanes).any())
            assert moved_on == bool((plain.state.veh_lane[0, h] == out_lanes).any()), f"t={t}: head {h}"
            compared += 1
            crossed += moved_on
    assert compared > 300 and crossed > 50


def test_movements_that_yield_to_each_other_never_lock():
    """Right before left both ways: heads standing at both stop lines hold nobody, so every trip
    finishes (if a standing head counted as coming, none would)."""
    both_ways = ((MINOR, MAJOR), (MAJOR, MINOR))
    scenario, sim = run_merge(True, yields=both_ways)
    delay_by_first_road(scenario, sim)  # asserts every trip finished
    plain = run_merge(False, yields=both_ways)[1]
    assert any(not torch.equal(value, getattr(plain.state, name))  # and the rule applied
               for name, value in sim.state._asdict().items())

def test_yielding_delays_the_minor_road_and_spares_the_major_one():
    delay = {yielding: delay_by_first_road(*run_merge(yielding)) for yielding in (False, True)}
    assert delay[True]["minor_in"] > delay[False]["minor_in"] + 5.0
    assert delay[True]["major_in"] <= delay[False]["major_in"] + 0.5


@pytest.mark.parametrize("pairs, field, reason", [
    ([[1]], "yieldTo[0]", "[minor, major] pair"),
    ([[1, 1]], "yieldTo[0]", "cannot yield to itself"),
    ([[1, 0], [1, 0]], "yieldTo[1]", "listed twice"),
    ([[1, 2]], "yieldTo[0][1]", "index out of range"),
])
def test_bad_yield_pairs_are_refused_naming_the_pair(pairs, field, reason):
    roadnet = merge_roadnet()
    roadnet["intersections"][2]["yieldTo"] = pairs
    with pytest.raises(ScenarioError) as error:
        parse_roadnet(roadnet, "merge.json")
    assert error.value.field == f"intersections[2].{field}"
    assert reason in str(error.value)


def test_a_virtual_intersection_cannot_yield():
    roadnet = merge_roadnet()
    roadnet["intersections"][0]["yieldTo"] = [[1, 0]]
    with pytest.raises(ScenarioError, match="virtual") as refused:
        parse_roadnet(roadnet, "merge.json")
    assert_names_everything(refused.value, "merge.json", "intersections[0].yieldTo", [[1, 0]])
    assert 'a virtual intersection runs no movements' in refused.value.reason


@pytest.mark.parametrize("field, value", [("junction_yielding", "yes"), ("yield_gap_s", 0.0)])
def test_bad_yield_settings_name_the_field(field, value):
    with pytest.raises(ConfigError) as error:
        EngineParams(**{field: value}).validate()
    assert error.value.field == field


# the tiny SUMO net with internal lanes and SUMO's right of way at C: the left turn WC -> CN
# (link 1, 'g' in the first phase) gives way to the straight WC -> CE (link 0)
RIGHT_OF_WAY_NET = NET.replace(
    '<junction id="C" type="traffic_light" x="105" y="0"/>',
    '<junction id="C" type="traffic_light" x="105" y="0" intLanes=":C_0_0 :C_1_0 :C_2_0">'
    '<request index="0" response="000" foes="010" cont="0"/>'
    '<request index="1" response="001" foes="001" cont="0"/>'
    '<request index="2" response="000" foes="000" cont="0"/></junction>',
).replace(
    '<connection from="NC" to="CE" fromLane="0" toLane="0" tl="C" linkIndex="2" dir="l"/>',
    '<edge id=":C_2" function="internal"><lane id=":C_2_0" index="0" speed="8" length="5" '
    'shape="103,5 110,1"/></edge>'
    '<connection from="NC" to="CE" fromLane="0" toLane="0" via=":C_2_0" tl="C" linkIndex="2" '
    'dir="l"/>',
)


def test_the_importer_reads_sumos_right_of_way(tmp_path):
    folder = write_tiny(tmp_path / "row", RIGHT_OF_WAY_NET)
    net = read_net(folder / "tiny.net.xml")
    assert net.junctions["C"].yields_to == (frozenset(), frozenset({0}), frozenset())
    imported = import_sumo(folder)
    junction = next(x for x in imported.roadnet["intersections"] if x["id"] == "C")
    links = [(link["startRoad"], link["endRoad"]) for link in junction["roadLinks"]]
    assert [(links[a], links[b]) for a, b in junction["yieldTo"]] == [
        (("WC", "CN"), ("WC", "CE"))]
    assert imported.report.counts["right_of_way_pairs"] == 1
    network = scenario_from_sumo(folder).network
    assert network.yield_minor.numel() == 1


@pytest.mark.parametrize("old, new, field", [
    ('index="1" response="001"', 'index="1" response="01"', "junction[id=C].request[1]@response"),
    ('index="1" response="001"', 'index="0" response="001"', "junction[id=C].request[1]@index"),  # twice
    ('<request index="2" response="000" foes="000" cont="0"/>', "", "junction[id=C]@request"),  # none for 2
])
def test_a_bad_request_is_refused(tmp_path, old, new, field):
    broken = RIGHT_OF_WAY_NET.replace(old, new)
    with pytest.raises(ScenarioError) as error:
        read_net(write_tiny(tmp_path / "bad", broken) / "tiny.net.xml")
    assert error.value.field == field


def test_ingolstadt1_minor_road_yields_at_its_merge(datasets_dir):
    scenario = load_scenario("resco_ingolstadt1", data_dir=datasets_dir)
    net = scenario.network
    roads = net.road_ids
    pairs = {(roads[int(net.movement_start_road[m])], roads[int(net.movement_end_road[m])],
              roads[int(net.movement_start_road[f])], roads[int(net.movement_end_road[f])])
             for m, f in zip(net.yield_minor.tolist(), net.yield_major.tolist())}
    # the minor 391891458#0 merges into 164051413 behind the major 653473569#5 (SUMO's 'm'/'M')
    assert ("391891458#0", "164051413", "653473569#5", "164051413") in pairs
    assert not any(minor == "653473569#5" for minor, *_ in pairs)
    assert "connections_without_right_of_way" not in scenario.info["sumo_report"]


def test_the_right_of_way_survives_the_cityflow_round_trip(tmp_path):
    folder = write_tiny(tmp_path / "row", RIGHT_OF_WAY_NET)
    imported = import_sumo(folder)
    roadnet_path, flow_path = write_cityflow(tmp_path / "cityflow", imported.roadnet,
                                             imported.flow)
    back = scenario_from_files(roadnet_path, flow_path).network
    there = scenario_from_sumo(folder).network
    for name in ("yield_minor", "yield_major", "phase_permissive"):
        assert torch.equal(getattr(back, name), getattr(there, name)), name
    assert back.yield_minor.numel() == 1
