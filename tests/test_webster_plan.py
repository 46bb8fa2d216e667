"""Webster's plan (agents/classical/webster.py) where the hand computation in
tests/test_webster_sotl.py leaves it open: flows per incoming lane, the start-up loss and the
engine's minimum green in the plan, equal shares when nothing competes, which cover of phases is
run, and the design window."""

from __future__ import annotations

import copy

import pytest

from agents.classical import FixedTimeWebster
from agents.classical.webster import OversaturationWarning
from envs.engine import EngineParams
from envs.errors import ConfigError
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet
from tests.test_webster_sotl import HAND, ROUTES, W_LEFT, W_STRAIGHT, one_intersection, planned

# 1x1 grid links: 0 W left, 1 W straight, 2 W right, 3 S left, 4 S straight, 5 S right, 6 E left,
# 7 E straight, 8 E right, 9 N left, 10 N straight, 11 N right
RIGHTS = [2, 5, 8, 11]
MORE_ROUTES = {**ROUTES, "s_straight": ["road_1_0_1", "road_1_1_1"], "e_left": ["road_2_1_2", "road_1_1_3"]}


def scenario_on(roadnet: dict, counts: dict[str, int], horizon: int = 3600):
    """`counts[route]` vehicles spread evenly over [0, horizon) on `roadnet` (as `one_intersection`)."""
    flow = [{"vehicle": DEFAULT_VEHICLE, "route": MORE_ROUTES[name], "interval": 1.0,
             "startTime": (k * horizon) // n, "endTime": (k * horizon) // n}
            for name, n in counts.items() for k in range(n)]
    flow.append({"vehicle": DEFAULT_VEHICLE, "route": ROUTES["w_right"], "interval": 1.0,
                 "startTime": horizon - 1, "endTime": horizon - 1})
    return scenario_from_dicts(roadnet, flow, name="test_webster_plan")


def with_phases(phases: list[tuple[list[int], list[int]]]) -> dict:
    """The 1x1 grid with the signal phases `phases`: (protected, permissive) link indices each,
    right turns added (permissive greens yield, so they may cross, as SUMO's permitted movements)."""
    roadnet = grid_roadnet(1, 1)
    light = next(x for x in roadnet["intersections"] if not x["virtual"])["trafficLight"]
    light["lightphases"] = [{"time": 30, "availableRoadLinks": sorted(major + minor + RIGHTS),
                             "permissiveRoadLinks": minor} for major, minor in phases]
    return roadnet


def test_webster_divides_a_movements_flow_by_its_incoming_lanes():
    # two straight lanes per approach: 360 veh/h going straight is 180 veh/h per lane
    roadnet = grid_roadnet(1, 1, lanes=("L", "S", "S", "R"))
    c = planned(scenario_on(roadnet, {"w_straight": 360, "w_left": 90}))
    assert float(c.flow_vph[0, W_STRAIGHT]) == pytest.approx(180.0)
    assert float(c.flow_vph[0, W_LEFT]) == pytest.approx(90.0)  # one left lane


def test_webster_counts_the_start_up_loss_in_the_lost_time():
    c = planned(one_intersection(HAND), EngineParams(min_green_s=0), min_green_s=2, startup_lost_s=2.0)
    assert float(c.lost_time_s[0]) == pytest.approx(4 * (3 + 2 + 2))  # yellow + all-red + start-up
    assert float(c.optimal_cycle_s[0]) == pytest.approx((1.5 * 28 + 5) / (1 - 0.4), rel=1e-5)


def test_webster_holds_every_green_at_the_engines_minimum_when_it_is_the_longer():
    # the plan asks 10 s, the engine holds a phase 15 s: g_min = max(10, 15)
    c = planned(one_intersection(HAND), EngineParams(min_green_s=15), min_green_s=10)
    assert float(c.green_s[0].min()) == pytest.approx(15.0)  # phases 2 and 3, held at the minimum


def test_webster_shares_the_green_equally_when_no_movement_competes():
    # only a right turn (green in every phase): Y = 0, C = max(35 s, min_cycle 40 s), 20 s green in 4
    c = planned(one_intersection({}), EngineParams(min_green_s=0), min_green_s=2)
    assert float(c.critical_sum[0]) == 0.0 and float(c.design_cycle_s[0]) == pytest.approx(40.0)
    assert c.green_s[0].tolist() == pytest.approx([5.0] * 4)
    assert c.durations[0].tolist() == [10.0] * 4 and float(c.cycle_s[0]) == 40.0


def test_webster_runs_the_lowest_indexed_of_equally_good_covers():
    # phase 4 repeats phase 0: {0, 1, 2, 3} and {1, 2, 3, 4} give the same plan, the lower indices run
    roadnet = grid_roadnet(1, 1)
    light = next(x for x in roadnet["intersections"] if not x["virtual"])["trafficLight"]
    light["lightphases"].append(copy.deepcopy(light["lightphases"][0]))
    c = planned(scenario_on(roadnet, HAND))
    assert c.phases_used[0].tolist() == [True, True, True, True, False]


def test_an_oversaturated_webster_cover_takes_the_smaller_y_before_the_fewer_phases():
    """Every cover is oversaturated (no cycle is shorter: all are infinite), so the smallest Y
    decides, then the fewest phases. W straight (y 0.9) is in phases 0, 1 and 2: the only 2-phase
    cover, {0, 1}, counts it twice (Y 1.8); {0, 3, 4} serves it once (Y 1.1)."""
    # W straight with N and S straight | W straight with W and E left | W straight | N straight, W left
    # | S straight, E left
    phases = [([1], [4, 10]), ([0, 1], [6]), ([1], []), ([10], [0]), ([4], [6])]
    counts = {"w_straight": 1620, "n_straight": 180, "s_straight": 180, "w_left": 180, "e_left": 180}
    with pytest.warns(OversaturationWarning):
        c = planned(scenario_on(with_phases(phases), counts))
    assert c.phases_used[0].tolist() == [True, False, False, True, True]  # the lowest of three Y = 1.1 covers
    assert float(c.critical_sum[0]) == pytest.approx(1.1, rel=1e-5)


def test_webster_takes_the_earliest_of_equally_busy_windows():
    # 60 vehicles in [1000, 1295] and one every 100 s: the 300 s windows from 996 to 1000 all hold
    # 63 departures; the design window is the first of them
    burst = [{"vehicle": DEFAULT_VEHICLE, "route": ROUTES["n_straight"], "interval": 1.0,
              "startTime": 1000 + 5 * k, "endTime": 1000 + 5 * k} for k in range(60)]
    busy = planned(one_intersection({"w_straight": 36}, extra=burst), window="busiest", window_s=300)
    assert int(busy.window_start[0]) == 996


def test_webster_refuses_a_window_length_that_the_whole_horizon_window_would_ignore():
    with pytest.raises(ConfigError) as refused:
        FixedTimeWebster(window_s=600)  # window="horizon" designs over the whole demand
    assert refused.value.field == "window_s" and "busiest" in str(refused.value)
    assert FixedTimeWebster(window="busiest", window_s=600).window_s == 600
