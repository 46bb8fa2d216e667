"""Bad flow-file input raises ScenarioError naming the file, the JSON path and the value (each
case breaks one thing of `tests.minimal_scenario`)."""

from __future__ import annotations

from typing import Any

import pytest

from envs.scenario.cityflow import MISSING, parse_flow, parse_roadnet
from tests.minimal_scenario import (
    FLOW_SOURCE,
    FLOW_TO_EAST,
    FLOW_TO_NORTH,
    JUNCTION_B,
    ROADNET_SOURCE,
    Mutation,
    assert_mutation_rejected,
    delete_path,
    in_junction_a,
    make_road,
    minimal_flow,
    minimal_roadnet,
    set_path,
)


def _add_road_from_east(roadnet: dict) -> None:
    roadnet["roads"].append(make_road("e_b", "E", "B", (600, 2), (310, 2)))


def _only_right_lane_after_a(roadnet: dict) -> None:
    # Everything entering a_b lands on lane 1, but only lane 0 of a_b turns left towards N.
    set_path(
        roadnet,
        in_junction_a("roadLinks", 0, "laneLinks"),
        [{"startLaneIndex": 0, "endLaneIndex": 1}, {"startLaneIndex": 1, "endLaneIndex": 1}],
    )


def _vehicle_case(key: str, value: float, reason: str, case_id: str) -> Any:
    return pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "vehicle", key), value),
        f"[0].vehicle.{key}",
        value,
        reason,
        id=case_id,
    )


FLOW_CASES = [
    pytest.param(lambda r, f: f.clear(), "<root>", [], "no flows", id="empty-flow-list"),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST,), ["w_a"]),
        "[0]",
        ["w_a"],
        "expected a JSON object",
        id="entry-not-object",
    ),
    pytest.param(
        lambda r, f: delete_path(f, (FLOW_TO_NORTH, "vehicle")),
        "[1].vehicle",
        MISSING,
        "missing required field",
        id="missing-vehicle",
    ),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "route"), "w_a"),
        "[0].route",
        "w_a",
        "expected a JSON array",
        id="route-not-list",
    ),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "route"), []),
        "[0].route",
        [],
        "route is empty",
        id="route-empty",
    ),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_NORTH, "route", 2), "b_x"),
        "[1].route[2]",
        "b_x",
        "unknown road",
        id="route-unknown-road",
    ),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "route"), ["w_a", "b_e"]),
        "[0].route[1]",
        "b_e",
        "not connected",
        id="route-gap",
    ),
    pytest.param(  # no phase of B greens its left turn: the flow's vehicles would queue there forever
        lambda r, f: set_path(r, ("intersections", JUNCTION_B, "trafficLight", "lightphases", 1, "availableRoadLinks"),
                              []),
        "[1].route[2]",
        "b_n",
        "no phase of intersection 'B' greens roadLinks[1] ('a_b' -> 'b_n')",
        id="route-over-never-green-link",
    ),
    pytest.param(
        lambda r, f: (_add_road_from_east(r), set_path(f, (FLOW_TO_NORTH, "route"), ["e_b", "b_n"])),
        "[1].route[1]",
        "b_n",
        "no roadLink from 'e_b' to 'b_n'",
        id="route-turn-without-link",
    ),
    # a virtual intersection's roadLinks are not simulated: the route failed only when the
    # demand was built, saying the link the file has was missing
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("virtual"), True),
        "[0].route[1]",
        "a_b",
        "the route passes through virtual intersection 'A'",
        id="route-through-virtual-intersection",
    ),
    pytest.param(
        lambda r, f: _only_right_lane_after_a(r),
        "[1].route[2]",
        "b_n",
        "a vehicle on lane 0 of 'w_a' can only enter lanes [1] of 'a_b', none of which has a laneLink to 'b_n'",
        id="route-lane-infeasible",
    ),
    pytest.param(  # a_b's lane 0 only turns left; w_a's lane 0 only reaches a_b's lane 0: a vehicle the
        # engine puts on w_a's lane 0 (it serves the first turn) could never go on to b_e
        lambda r, f: set_path(r, in_junction_a("roadLinks", 0, "laneLinks"),
                              [{"startLaneIndex": 0, "endLaneIndex": 0}, {"startLaneIndex": 1, "endLaneIndex": 1}]),
        "[0].route[2]",
        "b_e",
        "a vehicle on lane 0 of 'w_a' can only enter lanes [0] of 'a_b', none of which has a laneLink to 'b_e'",
        id="route-lane-dead-end-from-one-lane",
    ),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "interval"), 0),
        "[0].interval",
        0,
        "> 0",
        id="zero-interval",
    ),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "interval"), "5"),
        "[0].interval",
        "5",
        "expected a number",
        id="string-interval",
    ),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "endTime"), -5),
        "[0].endTime",
        -5,
        "endTime < startTime",
        id="end-before-start",
    ),
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "startTime"), -2),
        "[0].startTime",
        -2,
        ">= 0",
        id="negative-start",
    ),
    pytest.param(
        lambda r, f: (
            set_path(f, (FLOW_TO_NORTH, "startTime"), 7.2),
            set_path(f, (FLOW_TO_NORTH, "endTime"), 7.8),
        ),
        "[1].endTime",
        7.8,
        "no whole simulation second",
        id="window-without-a-step",
    ),
    _vehicle_case("length", 0, "> 0", "vehicle-zero-length"),
    _vehicle_case("maxSpeed", -1.0, "> 0", "vehicle-negative-speed"),
    _vehicle_case("maxPosAcc", 0.0, "> 0", "vehicle-zero-acceleration"),
    _vehicle_case("maxNegAcc", 0, "> 0", "vehicle-zero-deceleration"),
    _vehicle_case("headwayTime", 0, "> 0", "vehicle-zero-headway"),
    _vehicle_case("minGap", -0.5, ">= 0", "vehicle-negative-gap"),
    # CityFlow ignores unknown keys, so a misspelled optional one would silently keep its default
    pytest.param(
        lambda r, f: set_path(f, (FLOW_TO_EAST, "endtime"), f[FLOW_TO_EAST].pop("endTime")),
        "[0].endtime",
        100,
        "unknown field; did you mean 'endTime'?",
        id="misspelled-optional-end-time",
    ),
    _vehicle_case("sigme", 0.9, "unknown field; did you mean 'sigma'?", "vehicle-misspelled-sigma"),
]


@pytest.mark.parametrize(("mutate", "field", "value", "reason"), FLOW_CASES)
def test_flow_errors(mutate: Mutation, field: str, value: Any, reason: str) -> None:
    assert_mutation_rejected(mutate, FLOW_SOURCE, field, value, reason)


def test_a_key_that_misspells_nothing_is_ignored_as_cityflow_ignores_it() -> None:
    roadnet = parse_roadnet(minimal_roadnet(), ROADNET_SOURCE)
    flow = minimal_flow()
    flow[FLOW_TO_NORTH]["colour"] = "red"
    flow[FLOW_TO_NORTH]["vehicle"]["model"] = "sedan"
    assert parse_flow(flow, FLOW_SOURCE, roadnet) == parse_flow(minimal_flow(), FLOW_SOURCE, roadnet)
