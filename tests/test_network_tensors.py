"""The compiled `Network` of the minimal roadnet (tests/minimal_scenario.py), tensor by tensor
against values worked out by hand from its JSON, and the lanes of the real datasets against
their files: each lane keeps its own road's length and its own speed, in file order."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from envs.scenario.cityflow import load_roadnet, parse_roadnet
from envs.scenario.network import compile_network, lane_ids
from envs.scenario.registry import dataset_paths
from tests.minimal_scenario import ROADNET_SOURCE, minimal_roadnet


@pytest.fixture(scope="module")
def network():
    roadnet = minimal_roadnet()
    roadnet["roads"][1]["lanes"][1]["maxSpeed"] = 14.0  # a_b: lanes of different speeds
    return compile_network(parse_roadnet(roadnet, ROADNET_SOURCE))


def test_lanes_are_numbered_road_by_road_from_the_leftmost(network) -> None:
    # roads w_a (290 m), a_b (280 m), b_e (290 m), b_n (290 m); two lanes each, lane 0 leftmost
    assert network.road_ids == ("w_a", "a_b", "b_e", "b_n")
    assert network.road_lanes.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert network.lane_road.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert network.lane_index.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert network.road_length.tolist() == [290.0, 280.0, 290.0, 290.0]
    assert network.lane_length.tolist() == [290.0, 290.0, 280.0, 280.0, 290.0, 290.0, 290.0, 290.0]
    assert network.lane_max_speed.tolist() == [11.0, 11.0, 11.0, 14.0, 11.0, 11.0, 11.0, 11.0]
    assert lane_ids(network) == ["w_a_0", "w_a_1", "a_b_0", "a_b_1", "b_e_0", "b_e_1", "b_n_0", "b_n_1"]
    # signals A = 0, B = 1; W, E, N are virtual (-1)
    assert network.road_start.tolist() == [-1, 0, 1, 1]
    assert network.road_end.tolist() == [0, 1, -1, -1]


def test_movements_keep_their_roads_lanes_and_paths(network) -> None:
    # K = 2 roadLinks per signal: m0 = A's w_a -> a_b, m1 padding, m2 = a_b -> b_e, m3 = a_b -> b_n
    assert network.movement_valid.tolist() == [True, False, True, True]
    assert network.movement_type.tolist() == [0, -1, 0, 1]  # straight, padding, straight, left
    assert network.movement_start_road[[0, 2, 3]].tolist() == [0, 1, 1]
    assert network.movement_end_road[[0, 2, 3]].tolist() == [1, 2, 3]
    assert not network.movement_turnaround.any()
    # laneLinks: m0 (0->0, 1->1), m2 (1->0, 1->1), m3 (0->0, 0->1)
    assert network.movement_from_lane[[0, 2, 3]].tolist() == [[True, True], [False, True], [True, False]]
    assert network.movement_to_lane[[0, 2, 3]].tolist() == [[True, True], [True, True], [True, True]]
    assert network.movement_in_lanes[[0, 2, 3]].tolist() == [[0, 1], [-1, 3], [2, -1]]
    assert network.movement_out_lanes[[0, 2, 3]].tolist() == [[2, 3], [4, 5], [6, 7]]
    assert network.movement_target[2].tolist() == [[False, False], [True, True]]
    # m0's lane 0 path is drawn: (-10, 1.5) -> (0, 1.5) -> (10, 1.5), 20 m; B's paths are not drawn:
    # the gap from a_b's end (290, 0) to b_e's start (310, 0), 20 m, and to b_n's (300, 10), 10 * sqrt 2
    assert network.link_length[0, 0, 0].item() == pytest.approx(20.0)
    assert network.link_length[2, 1].tolist() == pytest.approx([20.0, 20.0])
    assert network.link_length[3, 0].tolist() == pytest.approx([10 * math.sqrt(2)] * 2)


def test_phases_that_serve_a_non_right_movement_are_signal_phases(network) -> None:
    # A: phases [[0], []]; B: phases [[0] (straight), [1] (left)]
    assert network.signal_phase.tolist() == [[True, False], [True, True]]
    assert network.phase_duration.tolist() == [[30.0, 30.0], [30.0, 30.0]]


def test_storage_capacity_bounds_the_vehicles_the_lanes_hold(network) -> None:
    # n cars of 5 m with 2.5 m gaps fit in L metres while 7.5 n - 2.5 <= L: 39 on a 290 m lane,
    # 37 on a 280 m lane; six lanes of 290 m and two of 280 m
    assert network.storage_capacity() >= 6 * 39 + 2 * 37


@pytest.mark.datasets
@pytest.mark.parametrize("name", ["hangzhou_4x4", "jinan_3x4", "newyork_16x3"])
def test_every_lane_keeps_its_roads_length_and_its_own_speed(datasets_dir: Path, name: str) -> None:
    roadnet_path, _ = dataset_paths(name, datasets_dir)
    raw = json.loads(roadnet_path.read_text())
    network = compile_network(load_roadnet(roadnet_path))
    lengths, speeds, lane_names = [], [], []
    for road in raw["roads"]:
        points = [(p["x"], p["y"]) for p in road["points"]]
        length = sum(math.dist(a, b) for a, b in zip(points, points[1:]))
        for k, lane in enumerate(road["lanes"]):
            lengths.append(length)
            speeds.append(lane["maxSpeed"])
            lane_names.append(f"{road['id']}_{k}")
    assert lane_ids(network) == lane_names
    assert network.lane_length.tolist() == pytest.approx(lengths, rel=1e-6)
    assert network.lane_max_speed.tolist() == pytest.approx(speeds, rel=1e-6)
    assert len(set(lengths)) > 1  # the datasets' roads differ in length, so a mix-up shows
