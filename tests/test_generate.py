"""Tests for the synthetic scenario generator (envs.scenario.generate) and its presets."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.errors import ScenarioError
from envs.scenario import generate
from envs.scenario.generate import (
    DEFAULT_VEHICLE,
    grid_roadnet,
    od_demand,
    peak_demand,
    peak_rate_profile,
    uniform_demand,
)
from envs.scenario import presets
from envs.scenario.presets import DEFAULT_PRESET, PRESETS

OPPOSITE = {0: 2, 1: 3, 2: 0, 3: 1}
LETTER_OF_TYPE = {"turn_left": "L", "go_straight": "S", "turn_right": "R"}


def _cityflow():
    """The loader module; tests that validate through it skip (with a reason) until it exists."""
    return pytest.importorskip(
        "envs.scenario.cityflow", reason="envs/scenario/cityflow.py (the loader) not written yet"
    )


# ------------------------------------------------------------------------------------------
# helpers over the raw CityFlow dicts
# ------------------------------------------------------------------------------------------


def _heading(road_id: str) -> int:
    return int(road_id.rsplit("_", 1)[1])


def _signalised(roadnet: dict) -> list[dict]:
    return [i for i in roadnet["intersections"] if not i["virtual"]]


def _virtual_ids(roadnet: dict) -> set[str]:
    return {i["id"] for i in roadnet["intersections"] if i["virtual"]}


def _roads_by_id(roadnet: dict) -> dict[str, dict]:
    return {r["id"]: r for r in roadnet["roads"]}


def _link_types(roadnet: dict) -> dict[tuple[str, str], str]:
    """(startRoad, endRoad) -> roadLink type, over every intersection."""
    return {
        (link["startRoad"], link["endRoad"]): link["type"]
        for inter in roadnet["intersections"]
        for link in inter["roadLinks"]
    }


def _road_length(road: dict) -> float:
    pts = road["points"]
    return sum(math.dist((a["x"], a["y"]), (b["x"], b["y"])) for a, b in zip(pts, pts[1:]))


def _entry_and_exit_roads(roadnet: dict) -> tuple[set[str], set[str]]:
    virtual = _virtual_ids(roadnet)
    entries = {r["id"] for r in roadnet["roads"] if r["startIntersection"] in virtual}
    exits = {r["id"] for r in roadnet["roads"] if r["endIntersection"] in virtual}
    return entries, exits


# ------------------------------------------------------------------------------------------
# roadnet structure
# ------------------------------------------------------------------------------------------

GRID_SIZES = [(1, 1), (1, 3), (2, 3), (4, 4), (8, 16)]


@pytest.mark.parametrize(("rows", "cols"), GRID_SIZES)
def test_grid_counts_and_ids(rows: int, cols: int) -> None:
    roadnet = grid_roadnet(rows, cols)
    signalised = _signalised(roadnet)
    assert len(signalised) == rows * cols
    assert len(_virtual_ids(roadnet)) == 2 * (rows + cols)  # one per row/column end, no corners
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
    virtual = _virtual_ids(roadnet)
    for road in roadnet["roads"]:
        start, end = points[road["startIntersection"]], points[road["endIntersection"]]
        assert (road["points"][0]["x"], road["points"][0]["y"]) == start
        assert (road["points"][-1]["x"], road["points"][-1]["y"]) == end
        dx, dy = end[0] - start[0], end[1] - start[1]
        length = math.hypot(dx, dy)
        ux, uy = unit[_heading(road["id"])]
        assert (dx / length, dy / length) == pytest.approx((ux, uy))
        touches_boundary = {road["startIntersection"], road["endIntersection"]} & virtual
        assert length == pytest.approx(400.0 if touches_boundary else 250.0)
        # exactly one end is virtual at most: no boundary-to-boundary roads
        assert len(touches_boundary) <= 1


@pytest.mark.parametrize(("rows", "cols"), GRID_SIZES)
def test_every_signal_has_all_turns_and_four_phases(rows: int, cols: int) -> None:
    roadnet = grid_roadnet(rows, cols, phase_time=25)
    roads = _roads_by_id(roadnet)
    for inter in _signalised(roadnet):
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
            by_type.setdefault(link["type"], set()).add(_heading(link["startRoad"]))
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
    for inter in _signalised(roadnet):
        rights = {i for i, link in enumerate(inter["roadLinks"]) if link["type"] == "turn_right"}
        phases = inter["trafficLight"]["lightphases"]
        assert [_phase_movements(inter, p) for p in phases] == expected
        for phase in phases:
            assert rights <= set(phase["availableRoadLinks"])
            assert len(phase["availableRoadLinks"]) == len(set(phase["availableRoadLinks"])) == 6


def test_no_u_turns_and_turn_types_match_headings() -> None:
    roadnet = grid_roadnet(4, 4)
    roads = _roads_by_id(roadnet)
    change = {"go_straight": 0, "turn_left": 1, "turn_right": 3}
    for (start, end), link_type in _link_types(roadnet).items():
        h_in, h_out = _heading(start), _heading(end)
        assert h_out != OPPOSITE[h_in]
        assert roads[end]["endIntersection"] != roads[start]["startIntersection"]
        assert (h_out - h_in) % 4 == change[link_type]


def test_virtual_intersections_have_no_links_or_signals() -> None:
    roadnet = grid_roadnet(2, 3)
    for inter in roadnet["intersections"]:
        if inter["virtual"]:
            assert inter["roadLinks"] == []
            assert inter["width"] == 0
            assert len(inter["roads"]) == 2  # one road in, one road out


LANE_LAYOUTS = [("L", "S", "R"), ("LS", "SR"), ("LSR",), ("L", "S", "S", "R"), ("L", "LS", "SR")]


@pytest.mark.parametrize("lanes", LANE_LAYOUTS)
def test_lane_links_only_from_lanes_serving_the_turn(lanes: tuple[str, ...]) -> None:
    roadnet = grid_roadnet(2, 2, lanes=lanes, intersection_width=max(20.0, 3.5 * len(lanes)))
    for inter in _signalised(roadnet):
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
    inter = _signalised(roadnet)[0]
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
    cityflow = _cityflow()
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
# demand
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid4() -> dict:
    return grid_roadnet(4, 4)


def _check_flow_format(flow: list[dict], horizon: int) -> None:
    departures = [entry["startTime"] for entry in flow]
    assert departures == sorted(departures)
    for entry in flow:
        assert entry["vehicle"] == DEFAULT_VEHICLE
        assert entry["interval"] == 1.0
        assert isinstance(entry["startTime"], int)
        assert entry["startTime"] == entry["endTime"]
        assert 0 <= entry["startTime"] < horizon


def _check_routes_follow_links(
    roadnet: dict, flow: list[dict], *, boundary_to_boundary: bool
) -> None:
    links = _link_types(roadnet)
    entries, exits = _entry_and_exit_roads(roadnet)
    for entry in flow:
        route = entry["route"]
        if boundary_to_boundary:
            assert route[0] in entries
            assert route[-1] in exits
            assert not set(route[:-1]) & exits  # the walk stops at the first exit road
        for a, b in zip(route, route[1:]):
            assert (a, b) in links


def test_uniform_demand_format_and_routes(grid4: dict) -> None:
    flow = uniform_demand(grid4, rate_per_origin=300, horizon=3600, seed=1)
    _check_flow_format(flow, 3600)
    _check_routes_follow_links(grid4, flow, boundary_to_boundary=True)
    assert max(len(e["route"]) for e in flow) <= 4 + 4 + 4 + 4  # cap, then at most 4 straight


def test_peak_demand_format_and_routes(grid4: dict) -> None:
    flow = peak_demand(grid4, base_rate=100, peak_rate=600, peak_width_s=300, horizon=1800, seed=1)
    _check_flow_format(flow, 1800)
    _check_routes_follow_links(grid4, flow, boundary_to_boundary=True)


def test_demand_every_origin_is_a_boundary_entry(grid4: dict) -> None:
    flow = uniform_demand(grid4, rate_per_origin=600, horizon=3600, seed=3)
    entries, _ = _entry_and_exit_roads(grid4)
    assert {e["route"][0] for e in flow} == entries  # and every entry road is used


@pytest.mark.parametrize(
    "make",
    [
        lambda net, seed: uniform_demand(net, rate_per_origin=300, horizon=900, seed=seed),
        lambda net, seed: peak_demand(
            net, base_rate=100, peak_rate=500, peak_width_s=200, horizon=900, seed=seed
        ),
        lambda net, seed: od_demand(
            net, od_rates={("road_0_1_0", "road_4_4_0"): 400, ("road_1_0_1", "road_4_4_1"): 300},
            horizon=900, seed=seed,
        ),
    ],
    ids=["uniform", "peak", "od"],
)
def test_same_seed_same_flow_different_seed_different(grid4: dict, make) -> None:
    assert make(grid4, 7) == make(grid4, 7)
    assert make(grid4, 7) != make(grid4, 8)


def test_uniform_vehicle_count_is_poisson(grid4: dict) -> None:
    rate, horizon = 300.0, 3600
    origins = len(_entry_and_exit_roads(grid4)[0])
    expected = origins * rate * horizon / 3600
    for seed in range(3):
        count = len(uniform_demand(grid4, rate_per_origin=rate, horizon=horizon, seed=seed))
        assert abs(count - expected) < 5 * math.sqrt(expected), (seed, count, expected)


def test_peak_vehicle_count_and_shape(grid4: dict) -> None:
    horizon, base, peak, width = 3600, 150.0, 450.0, 600.0
    origins = len(_entry_and_exit_roads(grid4)[0])
    profile = peak_rate_profile(horizon, base, peak, (1800.0,), width)
    expected = origins * profile.sum() / 3600
    flow = peak_demand(
        grid4, base_rate=base, peak_rate=peak, peak_times=(1800.0,), peak_width_s=width,
        horizon=horizon, seed=0,
    )
    assert abs(len(flow) - expected) < 5 * math.sqrt(expected)
    steps = np.array([e["startTime"] for e in flow])
    in_peak = np.sum((steps >= 1500) & (steps < 2100))
    in_edges = np.sum(steps < 300) + np.sum(steps >= 3300)
    assert in_peak > 1.5 * in_edges  # the same 600 s of time, far more traffic around the peak


def test_peak_rate_profile_values() -> None:
    profile = peak_rate_profile(3600, 100.0, 400.0, (1000.0, 2600.0), 200.0)
    assert profile.max() == pytest.approx(400.0, abs=0.5)
    assert profile[999] == pytest.approx(400.0, abs=0.5)
    assert profile[2599] == pytest.approx(400.0, abs=0.5)
    assert profile[1800] == pytest.approx(100.0, abs=0.5)  # four widths from both peaks
    assert profile.min() >= 100.0
    # default peak time is the middle of the horizon
    default = peak_demand(
        grid_roadnet(1, 1), base_rate=0, peak_rate=3600, peak_width_s=60, horizon=600
    )
    mean_step = np.mean([e["startTime"] for e in default])
    assert abs(mean_step - 300) < 20


def _first_turns(roadnet: dict, flow: list[dict]) -> Counter:
    links = _link_types(roadnet)
    return Counter(links[(e["route"][0], e["route"][1])] for e in flow)


@pytest.mark.parametrize("ratios", [(0.2, 0.6, 0.2), (0.5, 0.1, 0.4)])
def test_first_turn_fractions_follow_ratios(ratios: tuple[float, float, float]) -> None:
    roadnet = grid_roadnet(1, 1)
    flow = uniform_demand(roadnet, rate_per_origin=3600, horizon=3600, turn_ratios=ratios, seed=5)
    turns = _first_turns(roadnet, flow)
    total = sum(turns.values())
    assert total > 12000
    for link_type, ratio in zip(("turn_left", "go_straight", "turn_right"), ratios):
        sd = math.sqrt(ratio * (1 - ratio) / total)
        assert abs(turns[link_type] / total - ratio) < max(5 * sd, 0.01), (link_type, turns)


def test_zero_ratio_turns_never_taken(grid4: dict) -> None:
    flow = uniform_demand(grid4, rate_per_origin=600, horizon=1800, turn_ratios=(0, 1, 0), seed=2)
    links = _link_types(grid4)
    for entry in flow:
        route = entry["route"]
        assert all(links[(a, b)] == "go_straight" for a, b in zip(route, route[1:]))
        assert len(route) == 5  # straight across a 4x4 grid: entry road + 4 more


def test_route_cap_forces_straight_when_walk_would_wander(grid4: dict) -> None:
    # Turning left or right at random (never straight) wanders around the grid; past the cap
    # (rows + cols + 4 = 12 roads) every route must go straight out of the grid.
    cap = 4 + 4 + 4
    flow = uniform_demand(
        grid4, rate_per_origin=300, horizon=1800, turn_ratios=(0.5, 0, 0.5), seed=0
    )
    links = _link_types(grid4)
    _check_routes_follow_links(grid4, flow, boundary_to_boundary=True)
    assert any(len(e["route"]) > cap for e in flow)  # some walks really did hit the cap
    for entry in flow:
        route = entry["route"]
        turns = [links[(a, b)] for a, b in zip(route, route[1:])]
        assert all(t != "go_straight" for t in turns[: cap - 1])
        assert all(t == "go_straight" for t in turns[cap - 1 :])
        assert len(route) <= cap + 4  # at most 4 straight roads to leave a 4x4 grid


def test_explicit_route_cap(grid4: dict) -> None:
    flow = uniform_demand(
        grid4, rate_per_origin=300, horizon=900, turn_ratios=(1, 0, 0), seed=0, max_route_roads=3
    )
    links = _link_types(grid4)
    for entry in flow:
        turns = [links[(a, b)] for a, b in zip(entry["route"], entry["route"][1:])]
        assert all(t == "go_straight" for t in turns[2:])


def _all_shortest_distances(roadnet: dict, origin: str) -> dict[str, float]:
    """Bellman-Ford over the road graph (independent of the generator's Dijkstra)."""
    lengths = {r["id"]: _road_length(r) for r in roadnet["roads"]}
    edges = list(_link_types(roadnet))
    dist = {origin: lengths[origin]}
    for _ in range(len(lengths)):
        changed = False
        for a, b in edges:
            if a in dist and dist[a] + lengths[b] < dist.get(b, math.inf) - 1e-9:
                dist[b] = dist[a] + lengths[b]
                changed = True
        if not changed:
            break
    return dist


def _route_length(roadnet: dict, route: list[str]) -> float:
    roads = _roads_by_id(roadnet)
    return sum(_road_length(roads[r]) for r in route)


def test_od_routes_are_shortest(grid4: dict) -> None:
    entries, exits = _entry_and_exit_roads(grid4)
    pairs = [(o, d) for o in sorted(entries) for d in sorted(exits)][::7]
    od_rates = {pair: 200.0 for pair in pairs}
    flow = od_demand(grid4, od_rates=od_rates, horizon=3600, seed=0)
    _check_flow_format(flow, 3600)
    _check_routes_follow_links(grid4, flow, boundary_to_boundary=True)
    routes = {(e["route"][0], e["route"][-1]): e["route"] for e in flow}
    assert set(routes) == set(pairs)
    for (origin, destination), route in routes.items():
        best = _all_shortest_distances(grid4, origin)[destination]
        assert _route_length(grid4, route) == pytest.approx(best)
    expected = 200.0 * len(pairs)
    assert abs(len(flow) - expected) < 5 * math.sqrt(expected)


def test_od_route_avoids_a_lengthened_road() -> None:
    roadnet = grid_roadnet(3, 3)
    origin, destination = "road_0_1_0", "road_3_3_0"  # west entry of row 1 -> east exit of row 3
    plain = od_demand(roadnet, od_rates={(origin, destination): 3600}, horizon=60, seed=0)
    detoured_road = plain[0]["route"][1]
    # Stretch the road the plain route uses with a detour point; a shortest route must avoid it.
    road = _roads_by_id(roadnet)[detoured_road]
    a, b = road["points"][0], road["points"][-1]
    road["points"] = [a, {"x": (a["x"] + b["x"]) / 2 + 900, "y": (a["y"] + b["y"]) / 2 + 900}, b]
    flow = od_demand(roadnet, od_rates={(origin, destination): 3600}, horizon=60, seed=0)
    route = flow[0]["route"]
    assert detoured_road not in route
    best = _all_shortest_distances(roadnet, origin)[destination]
    assert _route_length(roadnet, route) == pytest.approx(best)


def test_od_unreachable_pair_names_the_pair(grid4: dict) -> None:
    pair = ("road_0_1_0", "road_0_2_0")  # the destination is itself an entry road: nothing leads in
    with pytest.raises(ScenarioError) as info:
        od_demand(grid4, od_rates={pair: 100}, horizon=60, seed=0)
    assert info.value.file == "<generated:demand>"
    assert repr(pair) in str(info.value)
    assert "unreachable" in str(info.value)


# ------------------------------------------------------------------------------------------
# argument errors
# ------------------------------------------------------------------------------------------

GRID_ERRORS = [
    ({"rows": 0}, "rows", 0),
    ({"rows": -2}, "rows", -2),
    ({"rows": 2.5}, "rows", 2.5),
    ({"cols": 0}, "cols", 0),
    ({"road_length": 0.0}, "road_length", 0.0),
    ({"road_length": -300.0}, "road_length", -300.0),
    ({"road_length": math.inf}, "road_length", math.inf),
    ({"road_length": 30.0}, "road_length", 30.0),  # shorter than two intersection boxes
    ({"boundary_length": 0.0}, "boundary_length", 0.0),
    ({"speed_limit": 0.0}, "speed_limit", 0.0),
    ({"speed_limit": -1.0}, "speed_limit", -1.0),
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


NET = grid_roadnet(2, 2)
PAIR = ("road_0_1_0", "road_2_2_0")


def _uniform(**kw):
    return uniform_demand(NET, **{"rate_per_origin": 100, "horizon": 600, "seed": 0, **kw})


def _peak(**kw):
    args = {"base_rate": 100, "peak_rate": 300, "peak_width_s": 100, "horizon": 600, "seed": 0}
    return peak_demand(NET, **{**args, **kw})


def _od(**kw):
    args = {"od_rates": {("road_0_1_0", "road_2_2_0"): 100}, "horizon": 600, "seed": 0}
    return od_demand(NET, **{**args, **kw})


DEMAND_ERRORS = [
    (_uniform, {"rate_per_origin": -1}, "rate_per_origin", -1),
    (_uniform, {"rate_per_origin": math.nan}, "rate_per_origin", None),
    (_uniform, {"horizon": 0}, "horizon", 0),
    (_uniform, {"horizon": -60}, "horizon", -60),
    (_uniform, {"horizon": 10.5}, "horizon", 10.5),
    (_uniform, {"turn_ratios": (0.3, 0.3, 0.3)}, "turn_ratios", (0.3, 0.3, 0.3)),
    (_uniform, {"turn_ratios": (0.2, 0.6, 0.2 + 2e-6)}, "turn_ratios", (0.2, 0.6, 0.2 + 2e-6)),
    (_uniform, {"turn_ratios": (0.6, 0.6, -0.2)}, "turn_ratios", (0.6, 0.6, -0.2)),
    (_uniform, {"turn_ratios": (0.5, 0.5)}, "turn_ratios", (0.5, 0.5)),
    (_uniform, {"seed": -1}, "seed", -1),
    (_uniform, {"seed": 1.5}, "seed", 1.5),
    (_uniform, {"max_route_roads": 0}, "max_route_roads", 0),
    (_peak, {"base_rate": -5}, "base_rate", -5),
    (_peak, {"peak_rate": -5}, "peak_rate", -5),
    (_peak, {"peak_width_s": 0}, "peak_width_s", 0),
    (_peak, {"horizon": 0}, "horizon", 0),
    (_peak, {"peak_times": (math.inf,)}, "peak_times", (math.inf,)),
    (_peak, {"turn_ratios": (1, 1, 1)}, "turn_ratios", (1, 1, 1)),
    (_od, {"od_rates": {("road_0_1_0", "road_2_2_0"): -10}}, f"od_rates[{PAIR!r}]", -10),
    (_od, {"od_rates": {("no", "road_2_2_0"): 10}}, "od_rates[('no', 'road_2_2_0')] origin", "no"),
    (_od, {"od_rates": {(PAIR[0], "x"): 10}}, f"od_rates[{(PAIR[0], 'x')!r}] destination", "x"),
    (_od, {"od_rates": {"road_0_1_0": 10}}, "od_rates['road_0_1_0']", "road_0_1_0"),
    (_od, {"horizon": -1}, "horizon", -1),
    (_od, {"seed": -3}, "seed", -3),
]


@pytest.mark.parametrize(("make", "overrides", "field", "value"), DEMAND_ERRORS)
def test_demand_argument_errors(make, overrides: dict, field: str, value) -> None:
    with pytest.raises(ScenarioError) as info:
        make(**overrides)
    error = info.value
    assert error.file == "<generated:demand>"
    assert error.field == field
    assert repr(field) in str(error)
    if value is not None:  # NaN != NaN, so only its presence in the message is checked
        assert error.value == value
        assert repr(value) in str(error)
    else:
        assert "nan" in str(error)


def test_demand_rejects_something_that_is_not_a_roadnet() -> None:
    with pytest.raises(ScenarioError) as info:
        uniform_demand({"roads": []}, rate_per_origin=10, horizon=60, seed=0)
    assert info.value.field == "roadnet"


# ------------------------------------------------------------------------------------------
# presets, loader round trip, CLI
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(PRESETS))
def preset(request) -> tuple[str, dict, list, dict]:
    roadnet, flow, info = PRESETS[request.param](seed=0)
    return request.param, roadnet, flow, info


EXPECTED_SIGNALS = {
    "grid_1x1": 1, "grid_4x4": 16, "grid_4x4_peak": 16, "grid_6x6": 36, "grid_16x8": 128,
}


def test_preset_shapes_and_info(preset) -> None:
    name, roadnet, flow, info = preset
    assert len(_signalised(roadnet)) == EXPECTED_SIGNALS[name]
    assert info["preset"] == name and info["seed"] == 0
    assert info["vehicles"] == len(flow) > 0
    assert info["horizon"] == 3600
    assert json.loads(json.dumps(info)) == info  # provenance must be storable as JSON
    _check_flow_format(flow, info["horizon"])


def test_preset_round_trips_through_the_loader(preset, tmp_path) -> None:
    cityflow = _cityflow()
    name, roadnet, flow, _ = preset
    roadnet_spec = cityflow.parse_roadnet(roadnet, f"<generated:{name}>")
    flow_spec = cityflow.parse_flow(flow, f"<generated:{name}>", roadnet_spec)
    assert len(flow_spec.flows) == len(flow)
    assert sum(not i.virtual for i in roadnet_spec.intersections) == EXPECTED_SIGNALS[name]
    assert cityflow.count_departures(flow_spec.flows) == len(flow)

    cityflow.write_cityflow(tmp_path, roadnet, flow)
    reloaded_roadnet = json.loads((tmp_path / "roadnet.json").read_text())
    reloaded_flow = json.loads((tmp_path / "flow.json").read_text())
    assert reloaded_roadnet == roadnet
    assert reloaded_flow == flow
    reloaded_spec = cityflow.load_roadnet(tmp_path / "roadnet.json")
    assert reloaded_spec.roads == roadnet_spec.roads
    assert len(cityflow.load_flow(tmp_path / "flow.json", reloaded_spec).flows) == len(flow)


def test_default_preset_is_grid_4x4() -> None:
    assert DEFAULT_PRESET == "grid_4x4"
    roadnet, flow, info = PRESETS[DEFAULT_PRESET]()
    assert (info["rows"], info["cols"], info["road_length"]) == (4, 4, 300.0)
    assert info["lanes"] == ["L", "S", "R"]
    assert info["rate_per_origin"] == presets.UNIFORM_RATE_PER_ORIGIN
    assert PRESETS["grid_4x4"](seed=0)[1] == flow
    assert PRESETS["grid_4x4"](seed=1)[1] != flow


def test_cli_writes_a_loadable_scenario(tmp_path, capsys) -> None:
    out = tmp_path / "scenario"
    assert generate.main(["--preset", "grid_1x1", "--seed", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    roadnet = json.loads((out / "roadnet.json").read_text())
    flow = json.loads((out / "flow.json").read_text())
    assert f"{len(flow)} vehicles" in printed
    assert f"{len(roadnet['roads'])} roads" in printed
    assert flow == PRESETS["grid_1x1"](seed=3)[1]
