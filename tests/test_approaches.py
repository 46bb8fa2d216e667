"""Approaches through pass-through junctions (envs/engine/approaches.py) and max pressure that
counts them: on the minimal scenario with junction A made an uncontrolled pass-through node,

    W --w_a--> A (one phase, one movement) --a_b--> B (the light) --b_e / b_n-->

w_a can only lead into a_b, so a_b's upstream approach is a_b plus w_a, and w_a's downstream
approach is w_a plus a_b (a_b's only way in); lanes: w_a 0-1, a_b 2-3, b_e 4-5, b_n 6-7."""

from __future__ import annotations

import pytest
import torch

from agents.classical import MaxPressure
from envs.engine import EngineParams, Simulator
from envs.engine.readings import lane_halting
from envs.engine.approaches import _reach, approach_map, pass_through_junctions
from envs.errors import ConfigError
from envs.scenario import scenario_from_dicts
from tests.minimal_scenario import (JUNCTION_A, _boundary, _junction, _road_link, assert_names_everything,
                                    make_road, minimal_flow, minimal_roadnet, set_path)


def scenario(pass_through: bool, device: str = "cpu"):
    roadnet = minimal_roadnet()
    if pass_through:  # A shows its one movement all the time: an uncontrolled junction
        set_path(roadnet, ("intersections", JUNCTION_A, "trafficLight", "lightphases"),
                 [{"time": 30, "availableRoadLinks": [0]}])
    return scenario_from_dicts(roadnet, minimal_flow(), name="mini", device=device)


def network(pass_through: bool):
    return scenario(pass_through).network


def with_boundary_u_turn() -> dict:
    """The pass-through roadnet plus a_w (A -> W), W kept as a junction whose one movement is
    the U-turn a_w -> w_a, as the SUMO importer keeps a boundary where some vehicle turns."""
    roadnet = minimal_roadnet()
    set_path(roadnet, ("intersections", JUNCTION_A, "trafficLight", "lightphases"),
             [{"time": 30, "availableRoadLinks": [0]}])
    roadnet["roads"].append(make_road("a_w", "A", "W", (-10, 5), (-300, 5)))
    u_turn = _road_link("turn_left", "a_w", "w_a", [(0, 0), (1, 1)])
    roadnet["intersections"][0] = {**_junction("W", -300, [u_turn], [[0]]), "point": {"x": -300, "y": 0}}
    return roadnet


def test_a_single_phase_junction_without_conflicts_passes_through():
    assert pass_through_junctions(network(True)).tolist() == [True, False]
    assert pass_through_junctions(network(False)).tolist() == [False, False]  # A has 2 phases
    empty = approach_map(network(False))
    assert empty.upstream.target.numel() == empty.downstream.target.numel() == 0


def test_a_u_turn_links_no_approach():
    net = scenario_from_dicts(with_boundary_u_turn(), minimal_flow(), name="mini").network
    assert net.intersection_ids == ("W", "A", "B")
    assert net.movement_turnaround[net.movement_of_pair[(4, 0)]]  # a_w -> w_a at W
    assert not net.movement_turnaround[net.movement_valid].all()
    assert pass_through_junctions(net).tolist() == [True, True, False]
    approaches = approach_map(net)
    # a_w's only movement is the U-turn, so it neither feeds w_a nor does w_a continue it
    assert approaches.road_pairs(net, upstream=True) == {"a_b": ["w_a"]}
    assert approaches.road_pairs(net, upstream=False) == {"w_a": ["a_b"]}


def test_a_split_feeds_neither_road_but_both_continue_it():
    roadnet = minimal_roadnet()
    roadnet["roads"].append(make_road("a_s", "A", "B", (10, -5), (290, -5)))  # a second way to B
    links = roadnet["intersections"][JUNCTION_A]["roadLinks"]
    links.append(_road_link("go_straight", "w_a", "a_s", [(0, 0), (1, 1)]))
    set_path(roadnet, ("intersections", JUNCTION_A, "trafficLight"),
             {"roadLinkIndices": [0, 1], "lightphases": [{"time": 30, "availableRoadLinks": [0, 1]}]})
    net = scenario_from_dicts(roadnet, minimal_flow(), name="mini").network
    assert pass_through_junctions(net).tolist() == [True, False]
    approaches = approach_map(net)
    # w_a's vehicles may take either road: neither counts them; each road's only way in is w_a
    assert approaches.road_pairs(net, upstream=True) == {}
    assert approaches.road_pairs(net, upstream=False) == {"w_a": ["a_b", "a_s"]}


def test_a_road_feeding_only_the_next_one_is_spread_over_its_lanes():
    net = network(True)
    approaches = approach_map(net)
    assert approaches.road_pairs(net, upstream=True) == {"a_b": ["w_a"]}
    assert approaches.road_pairs(net, upstream=False) == {"w_a": ["a_b"]}
    counts = torch.tensor([[3, 1, 2, 0, 0, 0, 1, 0]])
    # a_b's lanes get w_a's 4 vehicles, 2 each; w_a's lanes a_b's 2, 1 each; the rest stay
    assert approaches.upstream.apply(counts).tolist() == [[3, 1, 4, 2, 0, 0, 1, 0]]
    assert approaches.downstream.apply(counts).tolist() == [[4, 2, 2, 0, 0, 0, 1, 0]]


def test_chains_are_followed_and_cycles_cut():
    assert _reach(1, {1: {2}, 2: {3}, 3: {4}}) == [2, 3, 4]
    assert _reach(1, {1: {2}, 2: {3}, 3: {1}}) == [2, 3]
    assert _reach(5, {1: {2}}) == []


def test_max_pressure_counts_the_approach_at_the_light(device):
    mini = scenario(True, device)
    net = mini.network
    sim = Simulator(net, mini.demand(1), EngineParams())
    lane_sensing, approach_sensing = MaxPressure(), MaxPressure(sensing="approach")
    halting_sensing = MaxPressure(sensing="approach", use_halting=True)
    for controller in (lane_sensing, approach_sensing, halting_sensing):
        controller.reset(sim)
    checked = halted_upstream = 0
    for _ in range(60):
        sim.step(torch.full((1, net.num_intersections), -1, device=device))
        counts = sim.state.lane_count[0, :net.num_lanes].tolist()
        up_lane, down_lane = lane_sensing.movement_counts(sim)
        up, down = approach_sensing.movement_counts(sim)
        straight = net.movement_of_pair[(1, 2)]  # a_b -> b_e at B: a_b's lane 1 (global 3)
        assert float(up_lane[0, straight]) == counts[3]
        assert float(up[0, straight]) == pytest.approx(counts[3] + (counts[0] + counts[1]) / 2)
        into_a_b = net.movement_of_pair[(0, 1)]  # w_a -> a_b at A: downstream is a_b + nothing
        assert float(down[0, into_a_b]) == counts[2] + counts[3]
        halting = lane_halting(sim.state, net.num_lanes, sim.params.halting_speed)[0].tolist()
        up_halting, _ = halting_sensing.movement_counts(sim)
        assert float(up_halting[0, straight]) == pytest.approx(halting[3] + (halting[0] + halting[1]) / 2)
        checked += counts[0] + counts[1] > 0 and counts[3] > 0
        halted_upstream += halting[0] + halting[1] > 0
    assert checked > 0  # some step had vehicles on both w_a and a_b's straight lane
    assert halted_upstream > 0  # and some had a vehicle halted on w_a


def test_an_unknown_sensing_is_refused_naming_the_key():
    mini = scenario(True)
    sim = Simulator(mini.network, mini.demand(1), EngineParams())
    with pytest.raises(ConfigError, match="sensing") as refused:
        MaxPressure(sensing="loops").reset(sim)
    assert_names_everything(refused.value, "<controller:max_pressure>", "sensing", "loops")
    assert 'expected one of' in refused.value.reason


def with_a_second_road_into_a(exit_road: str, crossing: bool):
    """The minimal roadnet with junction A made single-phase and a road s_a coming into A from the
    south, its one movement going on to `exit_road` (a_b: merging with w_a's; a new road a_n to the
    north: crossing w_a -> a_b, a permissive green that yields)."""
    roadnet = minimal_roadnet()
    roadnet["intersections"] += [_boundary("S", 0, -300), _boundary("N2", 0, 300)]
    roadnet["roads"] += [make_road("s_a", "S", "A", (0, -300), (0, -10)),
                         make_road("a_n", "A", "N2", (0, 10), (0, 300))]
    links = roadnet["intersections"][JUNCTION_A]["roadLinks"]
    links.append(_road_link("go_straight" if crossing else "turn_right", "s_a", exit_road, [(0, 0), (1, 1)]))
    phase = {"time": 30, "availableRoadLinks": [0, 1], **({"permissiveRoadLinks": [1]} if crossing else {})}
    set_path(roadnet, ("intersections", JUNCTION_A, "trafficLight"),
             {"roadLinkIndices": [0, 1], "lightphases": [phase]})
    return scenario_from_dicts(roadnet, minimal_flow(), name="mini").network


def test_a_merge_feeds_the_road_from_both_sides_but_continues_neither():
    net = with_a_second_road_into_a("a_b", crossing=False)
    assert pass_through_junctions(net).tolist() == [True, False]
    approaches = approach_map(net)
    # both roads can only lead into a_b; a_b's vehicles came from either, so it continues neither
    assert approaches.road_pairs(net, upstream=True) == {"a_b": ["s_a", "w_a"]}
    assert approaches.road_pairs(net, upstream=False) == {}


def test_a_single_phase_junction_whose_movements_cross_does_not_pass_through():
    net = with_a_second_road_into_a("a_n", crossing=True)
    assert pass_through_junctions(net).tolist() == [False, False]
    approaches = approach_map(net)
    assert approaches.upstream.target.numel() == approaches.downstream.target.numel() == 0
