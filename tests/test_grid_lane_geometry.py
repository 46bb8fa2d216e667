"""Where a generated grid puts its lanes and lane-link paths (right-hand traffic, lane 0 the
leftmost), checked against hand-computed points; the path lengths the engine reads from them
(a right turn shorter than a left turn); and the file order of intersections and roads, which
is the datasets' order (hangzhou_4x4, the same 4 x 4 grid)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from envs.scenario.grid_roadnet import grid_roadnet
from envs.scenario.registry import dataset_paths
from tests.roadnet_dicts import road_heading, signalised_intersections

HEADING_VECTOR = {0: (1.0, 0.0), 1: (0.0, 1.0), 2: (-1.0, 0.0), 3: (0.0, -1.0)}  # E, N, W, S


def _xy(point: dict) -> tuple[float, float]:
    return point["x"], point["y"]


def _length(points: list[dict]) -> float:
    return sum(math.dist(_xy(a), _xy(b)) for a, b in zip(points, points[1:]))


def _direction(a: dict, b: dict) -> tuple[float, float]:
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    norm = math.hypot(dx, dy)
    return dx / norm, dy / norm


def _cosine(u: tuple[float, float], v: tuple[float, float]) -> float:
    return u[0] * v[0] + u[1] * v[1]


def test_lane_links_start_and_end_on_the_lane_centres_right_of_the_axis() -> None:
    # 1 x 1 grid: the signal at (0, 0), stop lines 20 m from it, lanes 3.5 m wide (L, S, R).
    # Driving east the right-hand side is south: lane k's centre is (k + 0.5) * 3.5 m below the axis;
    # leaving north, lane k is (k + 0.5) * 3.5 m east of it.
    roadnet = grid_roadnet(1, 1, lane_width=3.5, intersection_width=20.0)
    signal = signalised_intersections(roadnet)[0]
    assert _xy(signal["point"]) == (0.0, 0.0)
    from_west = {link["type"]: link for link in signal["roadLinks"] if link["startRoad"] == "road_0_1_0"}
    left = {(ll["startLaneIndex"], ll["endLaneIndex"]): ll["points"] for ll in from_west["turn_left"]["laneLinks"]}
    assert set(left) == {(0, 0), (0, 1), (0, 2)}  # only lane 0 turns left, onto every lane
    assert _xy(left[(0, 0)][0]) == pytest.approx((-20.0, -1.75))
    assert _xy(left[(0, 0)][-1]) == pytest.approx((1.75, 20.0))
    assert _xy(left[(0, 2)][-1]) == pytest.approx((8.75, 20.0))
    straight = {ll["startLaneIndex"]: ll["points"] for ll in from_west["go_straight"]["laneLinks"]}
    assert _xy(straight[1][0]) == pytest.approx((-20.0, -5.25))
    right = {ll["startLaneIndex"]: ll["points"] for ll in from_west["turn_right"]["laneLinks"]}
    assert _xy(right[2][0]) == pytest.approx((-20.0, -8.75))


def test_turn_paths_leave_along_the_approach_and_enter_along_the_exit() -> None:
    # the curve's control point is where the two lane centre lines cross, so the path starts
    # heading the way the vehicle drives in and ends heading the way it drives out
    roadnet = grid_roadnet(2, 2)
    for signal in signalised_intersections(roadnet):
        for link in signal["roadLinks"]:
            if link["type"] == "go_straight":
                continue
            into, out = HEADING_VECTOR[road_heading(link["startRoad"])], HEADING_VECTOR[road_heading(link["endRoad"])]
            for ll in link["laneLinks"]:
                points = ll["points"]
                assert len(points) >= 3
                # the first and last chords of the sampled curve: within ~15 degrees of the headings
                assert _cosine(_direction(points[0], points[1]), into) > 0.96
                assert _cosine(_direction(points[-2], points[-1]), out) > 0.96


def test_right_turns_are_shorter_than_straight_paths_and_left_turns() -> None:
    # right-hand traffic: a right turn cuts the box's near corner, a left turn crosses the box
    roadnet = grid_roadnet(2, 2)
    for signal in signalised_intersections(roadnet):
        lengths: dict[str, list[float]] = {"turn_right": [], "go_straight": [], "turn_left": []}
        for link in signal["roadLinks"]:
            lengths[link["type"]] += [_length(ll["points"]) for ll in link["laneLinks"]]
        assert max(lengths["turn_right"]) < min(lengths["go_straight"])
        # straight across the box (40 m), give or take the lane offsets
        assert min(lengths["go_straight"]) >= 40.0 and max(lengths["go_straight"]) < 41.0
        # a same-lane left turn is the longest arc through the box
        assert max(lengths["turn_left"]) > max(lengths["go_straight"])


@pytest.mark.datasets
def test_a_generated_grid_lists_intersections_and_roads_in_the_datasets_order(datasets_dir: Path) -> None:
    # agents and roads are indexed in file order: a 4 x 4 grid numbers them as hangzhou_4x4 does
    roadnet_path, _ = dataset_paths("hangzhou_4x4", datasets_dir)
    dataset = json.loads(roadnet_path.read_text())
    generated = grid_roadnet(4, 4)
    assert [i["id"] for i in generated["intersections"]] == [i["id"] for i in dataset["intersections"]]
    assert [r["id"] for r in generated["roads"]] == [r["id"] for r in dataset["roads"]]
    for ours, theirs in zip(generated["roads"], dataset["roads"]):
        assert (ours["startIntersection"], ours["endIntersection"]) == (
            theirs["startIntersection"], theirs["endIntersection"])
