"""The per-intersection index tables (envs/engine/intersections.py) on the minimal scenario,
where intersection and lane 0 are real ones (the datasets start with boundary roads) and one
junction has fewer lanes and actions than the other:

    W --w_a--> A --a_b--> B --b_e / b_n-->     lanes: w_a 0-1, a_b 2-3, b_e 4-5, b_n 6-7

A's phases are [straight] and [] (no signal: not an action); B's [straight] and [left]."""

from __future__ import annotations

import torch

from envs.engine import EngineParams, Simulator
from envs.engine.intersections import (action_commands, always_green, current_action, gather_lanes,
                                       intersection_layout, next_action_phase)
from envs.scenario import scenario_from_dicts
from tests.minimal_scenario import (JUNCTION_A, JUNCTION_B, _boundary, _road_link, make_road, minimal_flow,
                                    minimal_roadnet, set_path)


def minimal_scenario():
    return scenario_from_dicts(minimal_roadnet(), minimal_flow(), name="mini")


def layout_of_the_minimal_scenario():
    return intersection_layout(minimal_scenario().network)


def test_each_intersection_lists_its_incoming_and_outgoing_lanes_padded_with_minus_one():
    layout = layout_of_the_minimal_scenario()
    assert layout.ids == ("A", "B")
    assert layout.in_lanes.tolist() == [[0, 1], [2, 3]]
    assert layout.out_lanes.tolist() == [[2, 3, -1, -1], [4, 5, 6, 7]]


def test_actions_are_the_signal_phases_with_phase_zero_a_real_action_when_it_is_one():
    layout = layout_of_the_minimal_scenario()
    assert layout.action_phase.tolist() == [[0, -1], [0, 1]]
    assert layout.action_mask.tolist() == [[True, False], [True, True]]
    assert layout.num_actions.tolist() == [1, 2]


def test_gather_lanes_reads_lane_zero_and_pads_with_zero():
    layout = layout_of_the_minimal_scenario()
    per_lane = torch.arange(1.0, 9.0).unsqueeze(0)  # lane l reads l + 1
    assert gather_lanes(per_lane, layout.in_lanes).tolist() == [[[1, 2], [3, 4]]]
    assert gather_lanes(per_lane, layout.out_lanes).tolist() == [[[3, 4, 0, 0], [5, 6, 7, 8]]]


def test_an_action_commands_its_phase_and_minus_one_keeps_the_current_phase():
    layout = layout_of_the_minimal_scenario()
    actions = torch.tensor([[0, 1], [-1, 0], [0, -1]])
    assert action_commands(layout, actions).tolist() == [[0, 1], [-1, 0], [0, -1]]


def test_the_next_action_cycles_and_a_phase_that_is_no_action_goes_to_the_first():
    mini = minimal_scenario()
    layout = intersection_layout(mini.network)
    state = Simulator(mini.network, mini.demand(1), EngineParams()).state
    no_action_at_a = state._replace(phase=torch.tensor([[1, 0]]))  # A's phase 1 gives no green: no action
    assert current_action(layout, no_action_at_a).tolist() == [[-1, 0]]
    assert next_action_phase(layout, no_action_at_a).tolist() == [[0, 1]]
    last_actions = state._replace(phase=torch.tensor([[0, 1]]))  # each at its last action: back to the first
    assert current_action(layout, last_actions).tolist() == [[0, 1]]
    assert next_action_phase(layout, last_actions).tolist() == [[0, 0]]


def test_always_green_is_a_free_right_turn_green_in_every_signal_phase():
    """B gets a right turn a_b -> b_s, green in both its signal phases and in a transition phase
    that greens it alone (as the datasets' phase 0); A's one movement is made a right turn, so no
    phase of A serves more than right turns: its phase that greens it (0, not the empty 1) is its
    signal phase, and the right turn is green in every one."""
    roadnet = minimal_roadnet()
    roadnet["intersections"][JUNCTION_A]["roadLinks"][0]["type"] = "turn_right"
    roadnet["intersections"].append(_boundary("S", 300, -300))
    roadnet["roads"].append(make_road("b_s", "B", "S", (300, -10), (300, -300)))
    roadnet["intersections"][JUNCTION_B]["roadLinks"].append(_road_link("turn_right", "a_b", "b_s", [(1, 0)]))
    set_path(roadnet, ("intersections", JUNCTION_B, "trafficLight"), {"roadLinkIndices": [0, 1, 2], "lightphases": [
        {"time": 5, "availableRoadLinks": links} for links in ([2], [0, 2], [1, 2])]})
    network = scenario_from_dicts(roadnet, minimal_flow(), name="mini").network
    assert network.signal_phase.tolist() == [[True, False, False], [False, True, True]]
    assert always_green(network).tolist() == [[True, False, False], [False, False, True]]
