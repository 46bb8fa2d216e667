"""A tiny valid two-junction CityFlow scenario (`minimal_roadnet` / `minimal_flow`) that the
scenario-error tests break one thing at a time, and the helpers that break and check it.

    W(virtual) --w_a--> A --a_b--> B --b_e--> E(virtual)
                                   |
                                  b_n
                                   v
                                   N(virtual)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from envs.errors import ScenarioError
from envs.scenario.cityflow import parse_flow, parse_roadnet
from envs.scenario.generate import DEFAULT_VEHICLE

ROADNET_SOURCE = "mini/roadnet.json"
FLOW_SOURCE = "mini/flow.json"

# Indices into the minimal network, named so the cases read like the picture above.
ROAD_W_A, ROAD_A_B, ROAD_B_E, ROAD_B_N = 0, 1, 2, 3
JUNCTION_A, JUNCTION_B, BOUNDARY_N = 1, 2, 4
FLOW_TO_EAST, FLOW_TO_NORTH = 0, 1


def make_point(x: float, y: float) -> dict[str, float]:
    return {"x": x, "y": y}


def make_road(ident: str, start: str, end: str, a: tuple[float, float], b: tuple[float, float]) -> dict:
    lanes = [{"width": 3.0, "maxSpeed": 11.0}, {"width": 3.0, "maxSpeed": 11.0}]
    return {
        "id": ident,
        "startIntersection": start,
        "endIntersection": end,
        "points": [make_point(*a), make_point(*b)],
        "lanes": lanes,
    }


def _boundary(ident: str, x: float, y: float) -> dict:
    # Like the datasets: virtual, no links, a trafficLight block that must be ignored.
    return {
        "id": ident,
        "point": make_point(x, y),
        "width": 0,
        "virtual": True,
        "roads": [],
        "roadLinks": [],
        "trafficLight": {"roadLinkIndices": [], "lightphases": [{"time": 0}]},
    }


def _junction(ident: str, x: float, road_links: list[dict], phases: list[list[int]]) -> dict:
    return {
        "id": ident,
        "point": make_point(x, 0),
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
    # each lane of w_a reaches both of a_b's: lane 0 of a_b only turns left at B and lane 1 only goes
    # straight, so with no lane changes a vehicle on either lane of w_a must reach either of a_b's
    link_at_a = _road_link("go_straight", "w_a", "a_b", [(0, 0), (1, 1), (0, 1), (1, 0)])
    link_at_a["laneLinks"][0]["points"] = [make_point(-10, 1.5), make_point(0, 1.5), make_point(10, 1.5)]
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
            make_road("w_a", "W", "A", (-300, 0), (-10, 0)),
            make_road("a_b", "A", "B", (10, 0), (290, 0)),
            make_road("b_e", "B", "E", (310, 0), (600, 0)),
            make_road("b_n", "B", "N", (300, 10), (300, 300)),
        ],
    }


def _vehicle() -> dict[str, float]:
    return {**DEFAULT_VEHICLE, "headwayTime": 2}  # CityFlow's own headway, not the generator's


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


def set_path(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def delete_path(obj: Any, path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        obj = obj[key]
    del obj[path[-1]]


Mutation = Callable[[dict, list], None]


def _parse_mutated(mutate: Mutation) -> None:
    roadnet_obj, flow_obj = minimal_roadnet(), minimal_flow()
    mutate(roadnet_obj, flow_obj)
    roadnet = parse_roadnet(roadnet_obj, ROADNET_SOURCE)
    parse_flow(flow_obj, FLOW_SOURCE, roadnet)


def assert_names_everything(err: ScenarioError, source: str, field: str, value: Any) -> None:
    message = str(err)
    assert err.file == source and source in message
    assert err.field == field and repr(field) in message
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(err.value)
    else:
        assert err.value == value
    assert repr(value) in message


def assert_mutation_rejected(mutate: Mutation, source: str, field: str, value: Any, reason: str) -> None:
    """Parsing the mutated minimal scenario fails with a ScenarioError naming all of it."""
    with pytest.raises(ScenarioError) as caught:
        _parse_mutated(mutate)
    assert_names_everything(caught.value, source, field, value)
    assert reason in caught.value.reason


def in_junction_a(*path: Any) -> tuple[Any, ...]:
    return ("intersections", JUNCTION_A, *path)
