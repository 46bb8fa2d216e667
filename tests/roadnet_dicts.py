"""Helpers over the raw CityFlow dicts the generators return (tests of the generators)."""

from __future__ import annotations

import math

from envs.scenario.generate import DEFAULT_VEHICLE


def road_heading(road_id: str) -> int:
    return int(road_id.rsplit("_", 1)[1])


def signalised_intersections(roadnet: dict) -> list[dict]:
    return [i for i in roadnet["intersections"] if not i["virtual"]]


def virtual_ids(roadnet: dict) -> set[str]:
    return {i["id"] for i in roadnet["intersections"] if i["virtual"]}


def roads_by_id(roadnet: dict) -> dict[str, dict]:
    return {r["id"]: r for r in roadnet["roads"]}


def link_types(roadnet: dict) -> dict[tuple[str, str], str]:
    """(startRoad, endRoad) -> roadLink type, over every intersection."""
    return {
        (link["startRoad"], link["endRoad"]): link["type"]
        for inter in roadnet["intersections"]
        for link in inter["roadLinks"]
    }


def road_length(road: dict) -> float:
    pts = road["points"]
    return sum(math.dist((a["x"], a["y"]), (b["x"], b["y"])) for a, b in zip(pts, pts[1:]))


def entry_and_exit_roads(roadnet: dict) -> tuple[set[str], set[str]]:
    virtual = virtual_ids(roadnet)
    entries = {r["id"] for r in roadnet["roads"] if r["startIntersection"] in virtual}
    exits = {r["id"] for r in roadnet["roads"] if r["endIntersection"] in virtual}
    return entries, exits


def check_flow_format(flow: list[dict], horizon: int) -> None:
    departures = [entry["startTime"] for entry in flow]
    assert departures == sorted(departures)
    for entry in flow:
        assert entry["vehicle"] == DEFAULT_VEHICLE
        assert entry["interval"] == 1.0
        assert isinstance(entry["startTime"], int)
        assert entry["startTime"] == entry["endTime"]
        assert 0 <= entry["startTime"] < horizon
