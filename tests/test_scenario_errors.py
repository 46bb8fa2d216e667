"""Bad scenario input must raise ScenarioError naming the file, the JSON path and the value.

Every case starts from a tiny valid two-junction network (`minimal_roadnet` / `minimal_flow`) and
breaks exactly one thing.

    W(virtual) --w_a--> A --a_b--> B --b_e--> E(virtual)
                                   |
                                  b_n
                                   v
                                   N(virtual)
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from envs.errors import ScenarioError
from envs.scenario.cityflow import (
    MISSING,
    departure_steps,
    load_flow,
    load_roadnet,
    parse_flow,
    parse_roadnet,
    write_cityflow,
)
from envs.scenario.spec import FlowSpec, VehicleSpec

ROADNET_SOURCE = "mini/roadnet.json"
FLOW_SOURCE = "mini/flow.json"

# Indices into the minimal network, named so the cases read like the picture above.
ROAD_W_A, ROAD_A_B, ROAD_B_E, ROAD_B_N = 0, 1, 2, 3
JUNCTION_A, JUNCTION_B, BOUNDARY_N = 1, 2, 4
FLOW_TO_EAST, FLOW_TO_NORTH = 0, 1


def _point(x: float, y: float) -> dict[str, float]:
    return {"x": x, "y": y}


def _road(ident: str, start: str, end: str, a: tuple[float, float], b: tuple[float, float]) -> dict:
    lanes = [{"width": 3.0, "maxSpeed": 11.0}, {"width": 3.0, "maxSpeed": 11.0}]
    return {
        "id": ident,
        "startIntersection": start,
        "endIntersection": end,
        "points": [_point(*a), _point(*b)],
        "lanes": lanes,
    }


def _boundary(ident: str, x: float, y: float) -> dict:
    # Like the datasets: virtual, no links, a trafficLight block that must be ignored.
    return {
        "id": ident,
        "point": _point(x, y),
        "width": 0,
        "virtual": True,
        "roads": [],
        "roadLinks": [],
        "trafficLight": {"roadLinkIndices": [], "lightphases": [{"time": 0}]},
    }


def _junction(ident: str, x: float, road_links: list[dict], phases: list[list[int]]) -> dict:
    return {
        "id": ident,
        "point": _point(x, 0),
        "width": 10,
        "virtual": False,
        "roads": [],
        "roadLinks": road_links,
        "trafficLight": {
            "roadLinkIndices": list(range(len(road_links))),
            "lightphases": [{"time": 30, "availableRoadLinks": p} for p in phases],
        },
    }


def _road_link(kind: str, start: str, end: str, lanes: list[tuple[int, int]]) -> dict:
    return {
        "type": kind,
        "startRoad": start,
        "endRoad": end,
        "direction": 0,
        "laneLinks": [{"startLaneIndex": s, "endLaneIndex": e, "points": []} for s, e in lanes],
    }


def minimal_roadnet() -> dict:
    # Roads stop 10 m short of the junction centres, as in CityFlow's generated networks.
    link_at_a = _road_link("go_straight", "w_a", "a_b", [(0, 0), (1, 1)])
    link_at_a["laneLinks"][0]["points"] = [_point(-10, 1.5), _point(0, 1.5), _point(10, 1.5)]
    links_at_b = [
        _road_link("go_straight", "a_b", "b_e", [(1, 0), (1, 1)]),
        _road_link("turn_left", "a_b", "b_n", [(0, 0), (0, 1)]),
    ]
    return {
        "intersections": [
            _boundary("W", -300, 0),
            _junction("A", 0, [link_at_a], [[0], []]),
            _junction("B", 300, links_at_b, [[0], [1]]),
            _boundary("E", 600, 0),
            _boundary("N", 300, 300),
        ],
        "roads": [
            _road("w_a", "W", "A", (-300, 0), (-10, 0)),
            _road("a_b", "A", "B", (10, 0), (290, 0)),
            _road("b_e", "B", "E", (310, 0), (600, 0)),
            _road("b_n", "B", "N", (300, 10), (300, 300)),
        ],
    }


def _vehicle() -> dict[str, float]:
    return {
        "length": 5.0,
        "width": 2.0,
        "maxPosAcc": 2.0,
        "maxNegAcc": 4.5,
        "usualPosAcc": 2.0,
        "usualNegAcc": 4.5,
        "minGap": 2.5,
        "maxSpeed": 11.111,
        "headwayTime": 2,
    }


def minimal_flow() -> list[dict]:
    return [
        {
            "vehicle": _vehicle(),
            "route": ["w_a", "a_b", "b_e"],
            "interval": 5.0,
            "startTime": 0,
            "endTime": 100,
        },
        {
            "vehicle": _vehicle(),
            "route": ["w_a", "a_b", "b_n"],
            "interval": 1.0,
            "startTime": 7,
            "endTime": 7,
        },
    ]


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _delete(obj: Any, path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        obj = obj[key]
    del obj[path[-1]]


Mutation = Callable[[dict, list], None]


def _parse_mutated(mutate: Mutation) -> None:
    roadnet_obj, flow_obj = minimal_roadnet(), minimal_flow()
    mutate(roadnet_obj, flow_obj)
    roadnet = parse_roadnet(roadnet_obj, ROADNET_SOURCE)
    parse_flow(flow_obj, FLOW_SOURCE, roadnet)


def _assert_names_everything(err: ScenarioError, source: str, field: str, value: Any) -> None:
    message = str(err)
    assert err.file == source and source in message
    assert err.field == field and repr(field) in message
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(err.value)
    else:
        assert err.value == value
    assert repr(value) in message


def _in_junction_a(*path: Any) -> tuple[Any, ...]:
    return ("intersections", JUNCTION_A, *path)


ROADNET_CASES = [
    pytest.param(
        lambda r, f: _delete(r["roads"][ROAD_A_B], ("lanes",)),
        "roads[1].lanes",
        MISSING,
        "missing required field",
        id="missing-field",
    ),
    pytest.param(
        lambda r, f: _delete(r, ("roads",)),
        "roads",
        MISSING,
        "missing required field",
        id="missing-top-level-field",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_W_A, "lanes", 1, "maxSpeed"), "fast"),
        "roads[0].lanes[1].maxSpeed",
        "fast",
        "expected a number",
        id="string-for-number",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_W_A, "lanes", 0, "width"), True),
        "roads[0].lanes[0].width",
        True,
        "expected a number",
        id="bool-for-number",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_W_A, "lanes", 0, "width"), float("nan")),
        "roads[0].lanes[0].width",
        float("nan"),
        "finite",
        id="nan-number",
    ),
    pytest.param(
        lambda r, f: _set(r, ("intersections", JUNCTION_B, "virtual"), "no"),
        "intersections[2].virtual",
        "no",
        "true/false",
        id="string-for-bool",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_B_E, "id"), "a_b"),
        "roads[2].id",
        "a_b",
        "duplicate road id",
        id="duplicate-road-id",
    ),
    pytest.param(
        lambda r, f: _set(r, ("intersections", BOUNDARY_N, "id"), "A"),
        "intersections[4].id",
        "A",
        "duplicate intersection id",
        id="duplicate-intersection-id",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_W_A, "startIntersection"), "Q"),
        "roads[0].startIntersection",
        "Q",
        "unknown intersection",
        id="road-unknown-intersection",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_B_N, "points"), [_point(300, 10)]),
        "roads[3].points",
        [_point(300, 10)],
        "at least 2 points",
        id="road-one-point",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_B_N, "points"), [_point(5, 5), _point(5, 5)]),
        "roads[3].points",
        [_point(5, 5), _point(5, 5)],
        "zero length",
        id="road-zero-length",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_A_B, "lanes", 1, "maxSpeed"), 0),
        "roads[1].lanes[1].maxSpeed",
        0,
        "> 0",
        id="lane-zero-speed",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_A_B, "lanes", 0, "width"), -3.0),
        "roads[1].lanes[0].width",
        -3.0,
        "> 0",
        id="lane-negative-width",
    ),
    pytest.param(
        lambda r, f: _set(r, ("roads", ROAD_A_B, "lanes"), []),
        "roads[1].lanes",
        [],
        "at least one lane",
        id="road-without-lanes",
    ),
    pytest.param(
        lambda r, f: _set(r, _in_junction_a("roadLinks", 0, "type"), "u_turn"),
        "intersections[1].roadLinks[0].type",
        "u_turn",
        "unknown roadLink type",
        id="bad-link-type",
    ),
    pytest.param(
        lambda r, f: _set(r, _in_junction_a("roadLinks", 0, "endRoad"), "nowhere"),
        "intersections[1].roadLinks[0].endRoad",
        "nowhere",
        "unknown road",
        id="link-unknown-road",
    ),
    pytest.param(
        lambda r, f: _set(r, _in_junction_a("roadLinks", 0, "startRoad"), "a_b"),
        "intersections[1].roadLinks[0].startRoad",
        "a_b",
        "not at this intersection",
        id="link-start-road-elsewhere",
    ),
    pytest.param(
        lambda r, f: _set(r, _in_junction_a("roadLinks", 0, "endRoad"), "b_e"),
        "intersections[1].roadLinks[0].endRoad",
        "b_e",
        "not at this intersection",
        id="link-end-road-elsewhere",
    ),
    pytest.param(
        lambda r, f: _set(r, _in_junction_a("roadLinks", 0, "laneLinks", 1, "startLaneIndex"), 2),
        "intersections[1].roadLinks[0].laneLinks[1].startLaneIndex",
        2,
        "out of range",
        id="lane-link-start-out-of-range",
    ),
    pytest.param(
        lambda r, f: _set(r, _in_junction_a("roadLinks", 0, "laneLinks", 0, "endLaneIndex"), -1),
        "intersections[1].roadLinks[0].laneLinks[0].endLaneIndex",
        -1,
        "out of range",
        id="lane-link-end-out-of-range",
    ),
    pytest.param(
        lambda r, f: _set(r, _in_junction_a("roadLinks", 0, "laneLinks"), []),
        "intersections[1].roadLinks[0].laneLinks",
        [],
        "at least one laneLink",
        id="link-without-lanes",
    ),
    pytest.param(
        lambda r, f: _set(r, _in_junction_a("trafficLight", "lightphases"), []),
        "intersections[1].trafficLight.lightphases",
        [],
        "at least one light phase",
        id="signal-without-phases",
    ),
    pytest.param(
        lambda r, f: _delete(r, _in_junction_a("trafficLight")),
        "intersections[1].trafficLight",
        MISSING,
        "needs a trafficLight",
        id="signal-without-light",
    ),
    pytest.param(
        lambda r, f: _set(
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
        lambda r, f: _set(r, _in_junction_a("trafficLight", "lightphases", 0, "time"), 0),
        "intersections[1].trafficLight.lightphases[0].time",
        0,
        "> 0",
        id="phase-zero-time",
    ),
    pytest.param(
        lambda r, f: _set(
            r, _in_junction_a("trafficLight", "lightphases", 0, "availableRoadLinks"), [0, 0]
        ),
        "intersections[1].trafficLight.lightphases[0].availableRoadLinks[1]",
        0,
        "listed twice",
        id="phase-duplicate-link",
    ),
]


@pytest.mark.parametrize(("mutate", "field", "value", "reason"), ROADNET_CASES)
def test_roadnet_errors(mutate: Mutation, field: str, value: Any, reason: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        _parse_mutated(mutate)
    _assert_names_everything(caught.value, ROADNET_SOURCE, field, value)
    assert reason in caught.value.reason


def _add_road_from_east(roadnet: dict) -> None:
    roadnet["roads"].append(_road("e_b", "E", "B", (600, 2), (310, 2)))


def _only_right_lane_after_a(roadnet: dict) -> None:
    # Everything entering a_b lands on lane 1, but only lane 0 of a_b turns left towards N.
    _set(
        roadnet,
        _in_junction_a("roadLinks", 0, "laneLinks"),
        [{"startLaneIndex": 0, "endLaneIndex": 1}, {"startLaneIndex": 1, "endLaneIndex": 1}],
    )


def _vehicle_case(key: str, value: float, reason: str, case_id: str) -> Any:
    return pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST, "vehicle", key), value),
        f"[0].vehicle.{key}",
        value,
        reason,
        id=case_id,
    )


FLOW_CASES = [
    pytest.param(lambda r, f: f.clear(), "<root>", [], "no flows", id="empty-flow-list"),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST,), ["w_a"]),
        "[0]",
        ["w_a"],
        "expected a JSON object",
        id="entry-not-object",
    ),
    pytest.param(
        lambda r, f: _delete(f, (FLOW_TO_NORTH, "vehicle")),
        "[1].vehicle",
        MISSING,
        "missing required field",
        id="missing-vehicle",
    ),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST, "route"), "w_a"),
        "[0].route",
        "w_a",
        "expected a JSON array",
        id="route-not-list",
    ),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST, "route"), []),
        "[0].route",
        [],
        "route is empty",
        id="route-empty",
    ),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_NORTH, "route", 2), "b_x"),
        "[1].route[2]",
        "b_x",
        "unknown road",
        id="route-unknown-road",
    ),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST, "route"), ["w_a", "b_e"]),
        "[0].route[1]",
        "b_e",
        "not connected",
        id="route-gap",
    ),
    pytest.param(
        lambda r, f: (_add_road_from_east(r), _set(f, (FLOW_TO_NORTH, "route"), ["e_b", "b_n"])),
        "[1].route[1]",
        "b_n",
        "no roadLink from 'e_b' to 'b_n'",
        id="route-turn-without-link",
    ),
    pytest.param(
        lambda r, f: _only_right_lane_after_a(r),
        "[1].route[2]",
        "b_n",
        "no lane of 'a_b'",
        id="route-lane-infeasible",
    ),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST, "interval"), 0),
        "[0].interval",
        0,
        "> 0",
        id="zero-interval",
    ),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST, "interval"), "5"),
        "[0].interval",
        "5",
        "expected a number",
        id="string-interval",
    ),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST, "endTime"), -5),
        "[0].endTime",
        -5,
        "endTime < startTime",
        id="end-before-start",
    ),
    pytest.param(
        lambda r, f: _set(f, (FLOW_TO_EAST, "startTime"), -2),
        "[0].startTime",
        -2,
        ">= 0",
        id="negative-start",
    ),
    pytest.param(
        lambda r, f: (
            _set(f, (FLOW_TO_NORTH, "startTime"), 7.2),
            _set(f, (FLOW_TO_NORTH, "endTime"), 7.8),
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
]


@pytest.mark.parametrize(("mutate", "field", "value", "reason"), FLOW_CASES)
def test_flow_errors(mutate: Mutation, field: str, value: Any, reason: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        _parse_mutated(mutate)
    _assert_names_everything(caught.value, FLOW_SOURCE, field, value)
    assert reason in caught.value.reason


def test_minimal_scenario_is_valid_and_keeps_every_value() -> None:
    roadnet = parse_roadnet(minimal_roadnet(), ROADNET_SOURCE)
    flows = parse_flow(minimal_flow(), FLOW_SOURCE, roadnet)
    assert [i.id for i in roadnet.intersections if not i.virtual] == ["A", "B"]
    assert all(i.phases == () for i in roadnet.intersections if i.virtual)  # trafficLight ignored
    assert [p.road_links for p in roadnet.intersections[JUNCTION_A].phases] == [(0,), ()]
    assert roadnet.roads[ROAD_A_B].length == pytest.approx(280.0)
    lane_links = roadnet.intersections[JUNCTION_A].road_links[0].lane_links
    assert lane_links[0].length == pytest.approx(20.0)  # drawn polyline
    assert lane_links[1].length == pytest.approx(20.0)  # no points: gap between the two roads
    assert [f.route for f in flows.flows] == [("w_a", "a_b", "b_e"), ("w_a", "a_b", "b_n")]
    assert flows.flows[0].vehicle.max_speed == 11.111


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    roadnet_path, flow_path = write_cityflow(
        tmp_path / "generated", minimal_roadnet(), minimal_flow()
    )
    assert json.loads(roadnet_path.read_text()) == minimal_roadnet()
    roadnet = load_roadnet(roadnet_path)
    flows = load_flow(flow_path, roadnet)
    assert roadnet.source == str(roadnet_path) and flows.source == str(flow_path)
    assert len(flows.flows) == 2


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "roadnet.json"
    path.write_text('{"roads": [],\n "intersections": [,]}')
    with pytest.raises(ScenarioError) as caught:
        load_roadnet(path)
    err = caught.value
    assert err.file == str(path) and str(path) in str(err)
    assert err.field == "<json>"
    assert "line 2 column 20" in err.reason


def test_malformed_flow_json_names_file(tmp_path: Path) -> None:
    roadnet = parse_roadnet(minimal_roadnet(), ROADNET_SOURCE)
    path = tmp_path / "flow.json"
    path.write_text('[{"route": ["w_a"]')
    with pytest.raises(ScenarioError, match=r"flow\.json.*'<json>'.*line 1"):
        load_flow(path, roadnet)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "roadnet.json"
    with pytest.raises(ScenarioError) as caught:
        load_roadnet(path)
    assert caught.value.file == str(path) and "not found" in caught.value.reason


def test_roadnet_root_must_be_object() -> None:
    with pytest.raises(ScenarioError, match="expected a JSON object"):
        parse_roadnet([1, 2], ROADNET_SOURCE)


def test_valid_input_is_not_mutated() -> None:
    roadnet_obj, flow_obj = minimal_roadnet(), minimal_flow()
    before = copy.deepcopy((roadnet_obj, flow_obj))
    parse_flow(flow_obj, FLOW_SOURCE, parse_roadnet(roadnet_obj, ROADNET_SOURCE))
    assert (roadnet_obj, flow_obj) == before


def test_open_ended_flow_needs_a_horizon() -> None:
    flow = FlowSpec(
        index=4, vehicle=VehicleSpec(), route=("w_a",), interval=2.0, start_time=0.0, end_time=-1.0
    )
    with pytest.raises(ScenarioError) as caught:
        departure_steps(flow, source=FLOW_SOURCE)
    _assert_names_everything(caught.value, FLOW_SOURCE, "[4].endTime", -1.0)
    assert departure_steps(flow, horizon=7).tolist() == [0, 2, 4, 6]


def test_open_ended_flow_is_accepted_by_the_parser() -> None:
    flow_obj = minimal_flow()
    del flow_obj[FLOW_TO_EAST]["endTime"]  # CityFlow's default: no end
    flows = parse_flow(flow_obj, FLOW_SOURCE, parse_roadnet(minimal_roadnet(), ROADNET_SOURCE))
    assert flows.flows[FLOW_TO_EAST].end_time == -1
