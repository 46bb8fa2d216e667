"""The demand generators (uniform, peak and origin-destination demand) and their errors."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from envs.errors import ScenarioError
from envs.scenario.generate import (
    grid_roadnet,
    od_demand,
    peak_demand,
    peak_rate_profile,
    uniform_demand,
)
from tests.roadnet_dicts import (
    check_flow_format,
    entry_and_exit_roads,
    link_types,
    road_length,
    roads_by_id,
)

# ------------------------------------------------------------------------------------------
# demand
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid4() -> dict:
    return grid_roadnet(4, 4)


def _check_routes_follow_links(
    roadnet: dict, flow: list[dict], *, boundary_to_boundary: bool
) -> None:
    links = link_types(roadnet)
    entries, exits = entry_and_exit_roads(roadnet)
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
    check_flow_format(flow, 3600)
    _check_routes_follow_links(grid4, flow, boundary_to_boundary=True)
    assert max(len(e["route"]) for e in flow) <= 4 + 4 + 4 + 4  # cap, then at most 4 straight


def test_peak_demand_format_and_routes(grid4: dict) -> None:
    flow = peak_demand(grid4, base_rate=100, peak_rate=600, peak_width_s=300, horizon=1800, seed=1)
    check_flow_format(flow, 1800)
    _check_routes_follow_links(grid4, flow, boundary_to_boundary=True)


def test_demand_every_origin_is_a_boundary_entry(grid4: dict) -> None:
    flow = uniform_demand(grid4, rate_per_origin=600, horizon=3600, seed=3)
    entries, _ = entry_and_exit_roads(grid4)
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
    origins = len(entry_and_exit_roads(grid4)[0])
    expected = origins * rate * horizon / 3600
    for seed in range(3):
        count = len(uniform_demand(grid4, rate_per_origin=rate, horizon=horizon, seed=seed))
        assert abs(count - expected) < 5 * math.sqrt(expected), (seed, count, expected)


def test_peak_vehicle_count_and_shape(grid4: dict) -> None:
    horizon, base, peak, width = 3600, 150.0, 450.0, 600.0
    origins = len(entry_and_exit_roads(grid4)[0])
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
    links = link_types(roadnet)
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
    links = link_types(grid4)
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
    links = link_types(grid4)
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
    links = link_types(grid4)
    for entry in flow:
        turns = [links[(a, b)] for a, b in zip(entry["route"], entry["route"][1:])]
        assert all(t == "go_straight" for t in turns[2:])


def _all_shortest_distances(roadnet: dict, origin: str) -> dict[str, float]:
    """Bellman-Ford over the road graph (independent of the generator's Dijkstra)."""
    lengths = {r["id"]: road_length(r) for r in roadnet["roads"]}
    edges = list(link_types(roadnet))
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
    roads = roads_by_id(roadnet)
    return sum(road_length(roads[r]) for r in route)


def test_od_routes_are_shortest(grid4: dict) -> None:
    entries, exits = entry_and_exit_roads(grid4)
    pairs = [(o, d) for o in sorted(entries) for d in sorted(exits)][::7]
    od_rates = {pair: 200.0 for pair in pairs}
    flow = od_demand(grid4, od_rates=od_rates, horizon=3600, seed=0)
    check_flow_format(flow, 3600)
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
    road = roads_by_id(roadnet)[detoured_road]
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
