"""The grid generator (envs.scenario.generate.grid_roadnet): structure, geometry, errors."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.errors import ScenarioError
from envs.scenario import cityflow
from envs.scenario.generate import grid_roadnet
from tests.roadnet_dicts import road_heading, link_types, roads_by_id, signalised_intersections, virtual_ids

OPPOSITE = {0: 2, 1: 3, 2: 0, 3: 1}
LETTER_OF_TYPE = {"turn_left": "L", "go_straight": "S", "turn_right": "R"}

# ------------------------------------------------------------------------------------------
# roadnet structure
# ------------------------------------------------------------------------------------------

GRID_SIZES = [(1, 1), (1, 3), (2, 3), (4, 4), (8, 16)]


@pytest.mark.parametrize(("rows", "cols"), GRID_SIZES)
def test_grid_counts_and_ids(rows: int, cols: int) -> None:
    roadnet = grid_roadnet(rows, cols)
    signalised = signalised_intersections(roadnet)
    assert len(signalised) == rows * cols
    assert len(virtual_ids(roadnet)) == 2 * (rows + cols)  # one per row/column end, no corners
    # Every signal has 4 outgoing roads; every boundary intersection adds one road into the grid.
    assert len(roadnet["roads"]) == 4 * rows * cols + 2 * (rows + cols)
    assert {i["id"] for i in signalised} == {
        f"intersection_{x}_{y}" for x in range(1, cols + 1) for y in range(1, rows + 1)
    }
    ids = [r["id"] for r in roadnet["roads"]]
    assert len(set(ids)) == len(ids)
    for road in roadnet["roads"]:
        # road_{x}_{y}_{d} starts at intersection_{x}_{y}
        _, x, y, _ = road["id"].split("_")
        assert road["startIntersection"] == f"intersection_{x}_{y}"
        assert all(lane == {"width": 3.5, "maxSpeed": 11.111} for lane in road["lanes"])


@pytest.mark.parametrize(("rows", "cols"), GRID_SIZES)
def test_road_geometry_matches_heading(rows: int, cols: int) -> None:
    roadnet = grid_roadnet(rows, cols, road_length=250.0, boundary_length=400.0)
    points = {i["id"]: (i["point"]["x"], i["point"]["y"]) for i in roadnet["intersections"]}
    unit = {0: (1, 0), 1: (0, 1), 2: (-1, 0), 3: (0, -1)}
    virtual = virtual_ids(roadnet)
    for road in roadnet["roads"]:
        start, end = points[road["startIntersection"]], points[road["endIntersection"]]
        assert (road["points"][0]["x"], road["points"][0]["y"]) == start
        assert (road["points"][-1]["x"], road["points"][-1]["y"]) == end
        dx, dy = end[0] - start[0], end[1] - start[1]
        length = math.hypot(dx, dy)
        ux, uy = unit[road_heading(road["id"])]
        assert (dx / length, dy / length) == pytest.approx((ux, uy))
        touches_boundary = {road["startIntersection"], road["endIntersection"]} & virtual
        assert length == pytest.approx(400.0 if touches_boundary else 250.0)
        # exactly one end is virtual at most: no boundary-to-boundary roads
        assert len(touches_boundary) <= 1


@pytest.mark.parametrize(("rows", "cols"), GRID_SIZES)
def test_every_signal_has_all_turns_and_four_phases(rows: int, cols: int) -> None:
    roadnet = grid_roadnet(rows, cols, phase_time=25)
    roads = roads_by_id(roadnet)
    for inter in signalised_intersections(roadnet):
        links = inter["roadLinks"]
        # 4 approaches x (left, straight, right); boundary-adjacent turns lead onto boundary roads
        assert len(links) == 12
        assert Counter(link["type"] for link in links) == {
            "turn_left": 4, "go_straight": 4, "turn_right": 4,
        }
        for link in links:
            assert roads[link["startRoad"]]["endIntersection"] == inter["id"]
            assert roads[link["endRoad"]]["startIntersection"] == inter["id"]
        light = inter["trafficLight"]
        assert light["roadLinkIndices"] == list(range(12))
        phases = light["lightphases"]
        assert len(phases) == 4
        assert all(p["time"] == 25 for p in phases)


def _phase_movements(inter: dict, phase: dict) -> set[tuple[str, frozenset[int]]]:
    """The non-right movements of a phase as (type, approach headings)."""
    by_type: dict[str, set[int]] = {}
    for index in phase["availableRoadLinks"]:
        link = inter["roadLinks"][index]
        if link["type"] != "turn_right":
            by_type.setdefault(link["type"], set()).add(road_heading(link["startRoad"]))
    return {(t, frozenset(h)) for t, h in by_type.items()}


def test_phase_order_and_rights_in_every_phase() -> None:
    roadnet = grid_roadnet(3, 3)
    east_west, north_south = frozenset({0, 2}), frozenset({1, 3})
    expected = [
        {("go_straight", east_west)},
        {("go_straight", north_south)},
        {("turn_left", east_west)},
        {("turn_left", north_south)},
    ]
    for inter in signalised_intersections(roadnet):
        rights = {i for i, link in enumerate(inter["roadLinks"]) if link["type"] == "turn_right"}
        phases = inter["trafficLight"]["lightphases"]
        assert [_phase_movements(inter, p) for p in phases] == expected
        for phase in phases:
            assert rights <= set(phase["availableRoadLinks"])
            assert len(phase["availableRoadLinks"]) == len(set(phase["availableRoadLinks"])) == 6


def test_no_u_turns_and_turn_types_match_headings() -> None:
    roadnet = grid_roadnet(4, 4)
    roads = roads_by_id(roadnet)
    change = {"go_straight": 0, "turn_left": 1, "turn_right": 3}
    for (start, end), link_type in link_types(roadnet).items():
        h_in, h_out = road_heading(start), road_heading(end)
        assert h_out != OPPOSITE[h_in]
        assert roads[end]["endIntersection"] != roads[start]["startIntersection"]
        assert (h_out - h_in) % 4 == change[link_type]


def test_virtual_intersections_have_no_links_or_signals() -> None:
    roadnet = grid_roadnet(2, 3)
    virtual = [inter for inter in roadnet["intersections"] if inter["virtual"]]
    assert len(virtual) == 2 * (2 + 3)  # one at each end of every row and column
    for inter in virtual:
        assert inter["roadLinks"] == []
        assert inter["trafficLight"] == {"roadLinkIndices": [], "lightphases": []}  # no signal
        assert inter["width"] == 0
        assert len(inter["roads"]) == 2  # one road in, one road out


LANE_LAYOUTS = [("L", "S", "R"), ("LS", "SR"), ("LSR",), ("L", "S", "S", "R"), ("L", "LS", "SR")]


@pytest.mark.parametrize("lanes", LANE_LAYOUTS)
def test_lane_links_only_from_lanes_serving_the_turn(lanes: tuple[str, ...]) -> None:
    roadnet = grid_roadnet(2, 2, lanes=lanes, intersection_width=max(20.0, 3.5 * len(lanes)))
    for inter in signalised_intersections(roadnet):
        for link in inter["roadLinks"]:
            letter = LETTER_OF_TYPE[link["type"]]
            serving = {i for i, movements in enumerate(lanes) if letter in movements}
            pairs = {(ll["startLaneIndex"], ll["endLaneIndex"]) for ll in link["laneLinks"]}
            # each serving lane links to every lane of the destination road, nothing else
            assert pairs == {(s, e) for s in serving for e in range(len(lanes))}
            assert len(pairs) == len(link["laneLinks"])
            for ll in link["laneLinks"]:
                assert len(ll["points"]) >= 2


def _box_distance(point: dict, centre: tuple[float, float]) -> float:
    """Chebyshev distance: equals the half-width on the boundary of a square box."""
    return max(abs(point["x"] - centre[0]), abs(point["y"] - centre[1]))


def test_lane_link_points_run_from_stop_line_to_exit() -> None:
    width = 20.0
    roadnet = grid_roadnet(1, 1, intersection_width=width)
    inter = signalised_intersections(roadnet)[0]
    centre = (inter["point"]["x"], inter["point"]["y"])
    for link in inter["roadLinks"]:
        for ll in link["laneLinks"]:
            first, last = ll["points"][0], ll["points"][-1]
            # start and end lie on the box boundary, on the right-hand side of each road
            assert _box_distance(first, centre) == pytest.approx(width)
            assert _box_distance(last, centre) == pytest.approx(width)
            assert all(
                abs(p["x"] - centre[0]) <= width + 1e-9 and abs(p["y"] - centre[1]) <= width + 1e-9
                for p in ll["points"]
            )


lanes_strategy = st.lists(
    st.sampled_from(["L", "S", "R", "LS", "SR", "LR", "LSR"]), min_size=1, max_size=4
).filter(lambda lanes: set("".join(lanes)) == {"L", "S", "R"})


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 5), lanes=lanes_strategy)
def test_any_valid_grid_loads_through_the_loader(rows: int, cols: int, lanes: list[str]) -> None:
    roadnet = grid_roadnet(rows, cols, lanes=lanes)
    spec = cityflow.parse_roadnet(roadnet, "<generated:grid>")
    assert sum(not i.virtual for i in spec.intersections) == rows * cols
    assert all(len(i.phases) == 4 for i in spec.intersections if not i.virtual)
    assert all(len(r.lanes) == len(lanes) for r in spec.roads)


def test_grid_roadnet_is_deterministic_and_json_clean() -> None:
    a, b = grid_roadnet(3, 2), grid_roadnet(3, 2)
    assert a == b
    assert json.loads(json.dumps(a)) == a


# ------------------------------------------------------------------------------------------
# argument errors
# ------------------------------------------------------------------------------------------

GRID_ERRORS = [
    ({"rows": 0}, "rows", 0),
    ({"rows": -2}, "rows", -2),
    ({"rows": 2.5}, "rows", 2.5),
    ({"rows": True}, "rows", True),  # bool is an int subclass: True would be a 1-row grid
    ({"cols": 0}, "cols", 0),
    ({"road_length": 0.0}, "road_length", 0.0),
    ({"road_length": -300.0}, "road_length", -300.0),
    ({"road_length": math.inf}, "road_length", math.inf),
    ({"road_length": 30.0}, "road_length", 30.0),  # shorter than two intersection boxes
    ({"boundary_length": 0.0}, "boundary_length", 0.0),
    ({"speed_limit": 0.0}, "speed_limit", 0.0),
    ({"speed_limit": -1.0}, "speed_limit", -1.0),
    ({"speed_limit": True}, "speed_limit", True),
    ({"lane_width": -3.5}, "lane_width", -3.5),
    ({"intersection_width": 0.0}, "intersection_width", 0.0),
    ({"intersection_width": 5.0}, "intersection_width", 5.0),  # 3 lanes x 3.5 m do not fit
    ({"phase_time": 0}, "phase_time", 0),
    ({"lanes": ()}, "lanes", ()),
    ({"lanes": "LSR"}, "lanes", "LSR"),
    ({"lanes": ("L", "", "R")}, "lanes", ("L", "", "R")),
    ({"lanes": ("LX", "S", "R")}, "lanes", ("LX", "S", "R")),
    ({"lanes": ("ls", "r")}, "lanes", ("ls", "r")),
    ({"lanes": ("L", "S")}, "lanes", ("L", "S")),  # no lane turns right
    ({"lanes": ("LS", "S")}, "lanes", ("LS", "S")),
    ({"lanes": ("LL", "S", "R")}, "lanes", ("LL", "S", "R")),
]


@pytest.mark.parametrize(("overrides", "field", "value"), GRID_ERRORS)
def test_grid_argument_errors(overrides: dict, field: str, value) -> None:
    kwargs = {"rows": 2, "cols": 2, **overrides}
    rows, cols = kwargs.pop("rows"), kwargs.pop("cols")
    with pytest.raises(ScenarioError) as info:
        grid_roadnet(rows, cols, **kwargs)
    error = info.value
    assert error.file == "<generated:grid>"
    assert error.field == field
    assert error.value == value
    assert repr(field) in str(error) and repr(value) in str(error)


def test_numpy_scalar_arguments_give_the_same_json_clean_roadnet_as_python_numbers() -> None:
    # e.g. sizes read from an array: taken, and turned into Python numbers (np.float32 is no JSON number)
    given = grid_roadnet(np.int64(2), np.int32(3), road_length=np.float32(300), speed_limit=np.float32(11.5),
                         phase_time=np.int64(30))
    assert given == grid_roadnet(2, 3, road_length=300.0, speed_limit=11.5, phase_time=30.0)
    assert json.loads(json.dumps(given)) == given


@pytest.mark.parametrize(("overrides", "bound"), [({"rows": 0}, "must be an integer >= 1"),
                                                  ({"speed_limit": 0.0}, "must be a finite number > 0")])
def test_an_argument_error_says_the_bound_the_value_missed(overrides: dict, bound: str) -> None:
    with pytest.raises(ScenarioError) as info:
        grid_roadnet(**{"rows": 2, "cols": 2, **overrides})
    assert info.value.reason == bound
