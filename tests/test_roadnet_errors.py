"""Bad roadnet input raises ScenarioError naming the file, the JSON path and the value (each case
breaks one thing of `tests.minimal_scenario`)."""

from __future__ import annotations

from typing import Any

import pytest

from envs.scenario.cityflow import MISSING
from envs.scenario.roadnet_parser import parse_roadnet
from tests.minimal_scenario import (
    BOUNDARY_N,
    JUNCTION_B,
    ROAD_A_B,
    ROAD_B_E,
    ROAD_B_N,
    ROAD_W_A,
    ROADNET_SOURCE,
    Mutation,
    assert_mutation_rejected,
    minimal_roadnet,
    delete_path,
    in_junction_a,
    make_point,
    set_path,
)


def _unknown_key_case(where: tuple[Any, ...], key: str, field: str, reason: str) -> Any:
    return pytest.param(
        lambda r, f: set_path(r, (*where, key), 1), field, 1, reason, id=f"unknown-key-{key}"
    )


# CityFlow ignores unknown keys, so a misspelled optional one would silently keep its default:
# each object of the roadnet refuses a near miss of a key CityFlow or gridlight reads.
UNKNOWN_KEY_CASES = [
    _unknown_key_case((), "road", "road", "did you mean 'roads'?"),
    _unknown_key_case(("roads", ROAD_A_B), "lane", "roads[1].lane", "did you mean 'lanes'?"),
    _unknown_key_case(("roads", ROAD_A_B, "lanes", 0), "maxspeed", "roads[1].lanes[0].maxspeed",
                      "did you mean 'maxSpeed'? ('maxSpeed' is there too)"),
    _unknown_key_case(in_junction_a(), "yieldto", "intersections[1].yieldto",
                      "did you mean 'yieldTo'?"),
    _unknown_key_case(in_junction_a("roadLinks", 0), "directon",
                      "intersections[1].roadLinks[0].directon", "did you mean 'direction'?"),
    _unknown_key_case(in_junction_a("roadLinks", 0, "laneLinks", 1), "point",
                      "intersections[1].roadLinks[0].laneLinks[1].point", "did you mean 'points'?"),
    _unknown_key_case(in_junction_a("trafficLight"), "roadLinkIndex",
                      "intersections[1].trafficLight.roadLinkIndex",
                      "did you mean 'roadLinkIndices'?"),
    _unknown_key_case(in_junction_a("trafficLight", "lightphases", 0), "permissiveRoadLink",
                      "intersections[1].trafficLight.lightphases[0].permissiveRoadLink",
                      "did you mean 'permissiveRoadLinks'?"),
]


def _junction_b_links(roadnet: dict) -> list:
    return roadnet["intersections"][JUNCTION_B]["roadLinks"]


# edits CityFlow takes without a word; none occurs in any dataset or SUMO import
STRUCTURE_CASES = [
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_B_N, "endIntersection"), "B"),
        "roads[3].endIntersection",
        "B",
        "starts and ends at the same intersection",
        id="road-loops-back",
    ),
    pytest.param(
        lambda r, f: _junction_b_links(r).append(_junction_b_links(r)[0]),
        "intersections[2].roadLinks[2].endRoad",
        "b_e",
        "duplicate roadLink from 'a_b' (also roadLinks[0])",
        id="duplicate-road-link",
    ),
    pytest.param(
        lambda r, f: _junction_b_links(r)[1]["laneLinks"].append(
            {"startLaneIndex": 0, "endLaneIndex": 1}
        ),
        "intersections[2].roadLinks[1].laneLinks[2].endLaneIndex",
        1,
        "duplicate laneLink from lane 0 (also laneLinks[1])",
        id="duplicate-lane-link",
    ),
    pytest.param(
        lambda r, f: set_path(
            r, in_junction_a("trafficLight", "lightphases"), [{"time": 30, "availableRoadLinks": []}]
        ),
        "intersections[1].trafficLight.lightphases",
        [{"time": 30, "availableRoadLinks": []}],
        "no phase gives any roadLink a green",
        id="phases-all-red",
    ),
    pytest.param(
        lambda r, f: set_path(
            r, in_junction_a("roadLinks", 0, "laneLinks", 1, "points"), [make_point(0, 4.5)]
        ),
        "intersections[1].roadLinks[0].laneLinks[1].points",
        [{"x": 0, "y": 4.5}],
        "needs at least 2 points",
        id="lane-link-one-point",
    ),
]


ROADNET_CASES = UNKNOWN_KEY_CASES + STRUCTURE_CASES + [
    pytest.param(
        lambda r, f: delete_path(r["roads"][ROAD_A_B], ("lanes",)),
        "roads[1].lanes",
        MISSING,
        "missing required field",
        id="missing-field",
    ),
    pytest.param(
        lambda r, f: delete_path(r, ("roads",)),
        "roads",
        MISSING,
        "missing required field",
        id="missing-top-level-field",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_W_A, "lanes", 1, "maxSpeed"), "fast"),
        "roads[0].lanes[1].maxSpeed",
        "fast",
        "expected a number",
        id="string-for-number",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_W_A, "lanes", 0, "width"), True),
        "roads[0].lanes[0].width",
        True,
        "expected a number",
        id="bool-for-number",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_W_A, "lanes", 0, "width"), float("nan")),
        "roads[0].lanes[0].width",
        float("nan"),
        "finite",
        id="nan-number",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("intersections", JUNCTION_B, "virtual"), "no"),
        "intersections[2].virtual",
        "no",
        "true/false",
        id="string-for-bool",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_B_E, "id"), "a_b"),
        "roads[2].id",
        "a_b",
        "duplicate road id",
        id="duplicate-road-id",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("intersections", BOUNDARY_N, "id"), "A"),
        "intersections[4].id",
        "A",
        "duplicate intersection id",
        id="duplicate-intersection-id",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_W_A, "startIntersection"), "Q"),
        "roads[0].startIntersection",
        "Q",
        "unknown intersection",
        id="road-unknown-intersection",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_B_N, "points"), [make_point(300, 10)]),
        "roads[3].points",
        [make_point(300, 10)],
        "at least 2 points",
        id="road-one-point",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_B_N, "points"), [make_point(5, 5), make_point(5, 5)]),
        "roads[3].points",
        [make_point(5, 5), make_point(5, 5)],
        "zero length",
        id="road-zero-length",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_A_B, "lanes", 1, "maxSpeed"), 0),
        "roads[1].lanes[1].maxSpeed",
        0,
        "> 0",
        id="lane-zero-speed",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_A_B, "lanes", 0, "width"), -3.0),
        "roads[1].lanes[0].width",
        -3.0,
        "> 0",
        id="lane-negative-width",
    ),
    pytest.param(
        lambda r, f: set_path(r, ("roads", ROAD_A_B, "lanes"), []),
        "roads[1].lanes",
        [],
        "at least one lane",
        id="road-without-lanes",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("roadLinks", 0, "type"), "u_turn"),
        "intersections[1].roadLinks[0].type",
        "u_turn",
        "unknown roadLink type",
        id="bad-link-type",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("roadLinks", 0, "endRoad"), "nowhere"),
        "intersections[1].roadLinks[0].endRoad",
        "nowhere",
        "unknown road",
        id="link-unknown-road",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("roadLinks", 0, "startRoad"), "a_b"),
        "intersections[1].roadLinks[0].startRoad",
        "a_b",
        "not at this intersection",
        id="link-start-road-elsewhere",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("roadLinks", 0, "endRoad"), "b_e"),
        "intersections[1].roadLinks[0].endRoad",
        "b_e",
        "not at this intersection",
        id="link-end-road-elsewhere",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("roadLinks", 0, "laneLinks", 1, "startLaneIndex"), 2),
        "intersections[1].roadLinks[0].laneLinks[1].startLaneIndex",
        2,
        "out of range",
        id="lane-link-start-out-of-range",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("roadLinks", 0, "laneLinks", 0, "endLaneIndex"), -1),
        "intersections[1].roadLinks[0].laneLinks[0].endLaneIndex",
        -1,
        "out of range",
        id="lane-link-end-out-of-range",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("roadLinks", 0, "laneLinks"), []),
        "intersections[1].roadLinks[0].laneLinks",
        [],
        "at least one laneLink",
        id="link-without-lanes",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("trafficLight", "lightphases"), []),
        "intersections[1].trafficLight.lightphases",
        [],
        "at least one light phase",
        id="signal-without-phases",
    ),
    pytest.param(
        lambda r, f: delete_path(r, in_junction_a("trafficLight")),
        "intersections[1].trafficLight",
        MISSING,
        "needs a trafficLight",
        id="signal-without-light",
    ),
    # a boundary not marked virtual: an agent with no phase to command (no action: the env's action
    # spaces could not be built); it was accepted
    pytest.param(
        lambda r, f: (set_path(r, ("intersections", BOUNDARY_N, "virtual"), False),
                      delete_path(r, ("intersections", BOUNDARY_N, "trafficLight"))),
        "intersections[4].roadLinks",
        [],
        "a non-virtual intersection without roadLinks has nothing to signal",
        id="non-virtual-without-links",
    ),
    pytest.param(
        lambda r, f: set_path(
            r,
            ("intersections", JUNCTION_B, "trafficLight", "lightphases", 1, "availableRoadLinks"),
            [1, 5],
        ),
        "intersections[2].trafficLight.lightphases[1].availableRoadLinks[1]",
        5,
        "out of range",
        id="phase-names-missing-link",
    ),
    pytest.param(
        lambda r, f: set_path(r, in_junction_a("trafficLight", "lightphases", 0, "time"), 0),
        "intersections[1].trafficLight.lightphases[0].time",
        0,
        "> 0",
        id="phase-zero-time",
    ),
    pytest.param(
        lambda r, f: set_path(
            r, in_junction_a("trafficLight", "lightphases", 0, "availableRoadLinks"), [0, 0]
        ),
        "intersections[1].trafficLight.lightphases[0].availableRoadLinks[1]",
        0,
        "listed twice",
        id="phase-duplicate-link",
    ),
    pytest.param(  # junction B's phase 0 shows link 0 only: link 1 is no green of it to yield
        lambda r, f: set_path(
            r, ("intersections", JUNCTION_B, "trafficLight", "lightphases", 0, "permissiveRoadLinks"), [1]
        ),
        "intersections[2].trafficLight.lightphases[0].permissiveRoadLinks[0]",
        1,
        "must be in availableRoadLinks",
        id="permissive-link-not-green",
    ),
]


@pytest.mark.parametrize(("mutate", "field", "value", "reason"), ROADNET_CASES)
def test_roadnet_errors(mutate: Mutation, field: str, value: Any, reason: str) -> None:
    assert_mutation_rejected(mutate, ROADNET_SOURCE, field, value, reason)


# keys no parser reads and no misspelling: other tools' (LibSignal's converter writes gt_virtual on
# every intersection, CityFlow's own _compass_angle on roads in debug mode) or the author's own
ACCEPTED_KEYS = [
    (in_junction_a(), "gt_virtual"), (("roads", ROAD_A_B), "_compass_angle"),
    (("roads", ROAD_A_B, "points", 0), "z"), (in_junction_a("roadLinks", 0), "comment"),
]


@pytest.mark.parametrize(("where", "key"), ACCEPTED_KEYS, ids=[key for _, key in ACCEPTED_KEYS])
def test_keys_that_misspell_nothing_are_ignored_as_cityflow_ignores_them(where, key) -> None:
    roadnet = minimal_roadnet()
    set_path(roadnet, (*where, key), True)
    assert parse_roadnet(roadnet, ROADNET_SOURCE) == parse_roadnet(minimal_roadnet(), ROADNET_SOURCE)
