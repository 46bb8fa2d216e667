"""Approach, per-movement and timing readings, their observation features (neighbour_mean
included) and the Efficient-MP / Advanced-MP controllers, against values worked out by hand on
a 1x1 grid with vehicles placed in the state."""

from __future__ import annotations

import pytest
import torch

from agents.classical import AdvancedMaxPressure, EfficientMaxPressure
from envs.engine import EngineParams, Simulator
from envs.engine.movement_readings import (
    approach_by_lane, approach_by_movement, effective_running, efficient_pressure, exit_queue_mean,
    movement_queue, movement_red_elapsed,
)
from envs.engine.state import with_fields
from envs.errors import ConfigError
from envs.rl.features import check_observation_names
from envs.rl.signal_env import BatchedSignalEnv
from tests.scenarios import single_route, small_grid

# The 1x1 grid (tests/scenarios.single_route): 300 m roads of lanes (left, straight, right), speed
# limit 11.111 m/s. Lanes: west approach 0-2, east exit 6-8, north exit 9-11, south exit 15-17,
# north approach 18-20. Movements: 0 W left (-> north exit), 1 W straight (-> east exit),
# 10 N straight (-> south exit); phases 0 E-W straight, 1 N-S straight, 2 E-W left, 3 N-S left
# (right turns green in all).
W_LEFT_LANE, W_STRAIGHT_LANE, N_STRAIGHT_LANE = 0, 1, 19
EAST_EXIT = (6, 7, 8)
W_LEFT, W_STRAIGHT, N_STRAIGHT = 0, 1, 10
LENGTH = 300.0

# (lane, distance to the stop line m, speed m/s, next movement; -1 = leaves the network next)
VEHICLES = [
    (W_STRAIGHT_LANE, 5.0, 0.0, W_STRAIGHT),  # a: queued
    (W_STRAIGHT_LANE, 12.5, 0.0, W_STRAIGHT),  # b: queued
    (W_STRAIGHT_LANE, 60.0, 8.0, W_STRAIGHT),  # c: running, 60 m <= 111.1 m reach in 10 s
    (W_STRAIGHT_LANE, 150.0, 11.0, W_STRAIGHT),  # d: running, beyond approach and reach
    (W_STRAIGHT_LANE, 105.0, 0.05, W_STRAIGHT),  # e: halting (< 0.1 m/s) beyond 100 m
    (N_STRAIGHT_LANE, 3.0, 0.0, N_STRAIGHT),  # f: queued
    (W_LEFT_LANE, 20.0, 5.0, W_LEFT),  # g: running
    (EAST_EXIT[0], 250.0, 0.0, -1),  # two halting on the east exit's lane 0, one on lane 1
    (EAST_EXIT[0], 292.0, 0.0, -1),
    (EAST_EXIT[1], 280.0, 0.0, -1),
]


def placed(phase=0, prev_phase=0, timer=100, vehicles=VEHICLES):
    """A simulator whose copy 0 holds exactly `vehicles`, in the given signal state."""
    scenario = single_route(["road_0_1_0", "road_1_1_0"], [0])
    sim = Simulator(scenario.network, scenario.demand(1), EngineParams(max_vehicles=16))
    state = sim.state
    lane, pos, speed, move = (state.veh_lane.clone(), state.veh_pos.clone(), state.veh_speed.clone(),
                              state.veh_move.clone())
    for slot, (on, to_stop, v, m) in enumerate(vehicles):
        lane[0, slot], pos[0, slot], speed[0, slot], move[0, slot] = on, LENGTH - to_stop, v, m
    sim.state = with_fields(
        state, veh_lane=lane, veh_pos=pos, veh_speed=speed, veh_move=move,
        phase=torch.tensor([[phase]]), prev_phase=torch.tensor([[prev_phase]]),
        phase_timer=torch.tensor([[timer]]),
    )
    return sim


def test_approach_counts_split_moving_and_halting_per_lane_and_per_movement():
    sim = placed()
    moving, halting = approach_by_lane(sim.network, sim.state, 100.0)
    assert moving[0, W_STRAIGHT_LANE] == 1 and halting[0, W_STRAIGHT_LANE] == 2  # c | a, b
    assert moving[0, W_LEFT_LANE] == 1 and halting[0, N_STRAIGHT_LANE] == 1
    assert moving.sum() == 2 and halting.sum() == 3  # the exit-road vehicles are > 100 m away
    moving, halting = approach_by_movement(sim.network, sim.state, 100.0)
    assert moving[0, W_STRAIGHT] == 1 and halting[0, W_STRAIGHT] == 2
    assert moving[0, W_LEFT] == 1 and halting[0, N_STRAIGHT] == 1
    assert moving.sum() == 2 and halting.sum() == 3  # leaving vehicles take no movement
    moving, halting = approach_by_movement(sim.network, sim.state, 200.0)
    assert moving[0, W_STRAIGHT] == 2 and halting[0, W_STRAIGHT] == 3  # now d and e too


def test_queue_efficient_pressure_and_effective_running_per_movement():
    sim = placed()
    queue = movement_queue(sim.network, sim.state)
    assert queue[0, W_STRAIGHT] == 3 and queue[0, N_STRAIGHT] == 1 and queue.sum() == 4  # a b e | f
    exits = exit_queue_mean(sim.network, sim.state)
    assert exits[0, W_STRAIGHT] == pytest.approx((2 + 1 + 0) / 3)  # the east exit's three lanes
    pressure = efficient_pressure(sim.network, sim.state)
    assert pressure[0, W_STRAIGHT] == pytest.approx(3 - 1.0)
    assert pressure[0, N_STRAIGHT] == pytest.approx(1.0) and pressure[0, W_LEFT] == 0.0
    running = effective_running(sim.network, sim.state, horizon_s=10.0)
    assert running[0, W_STRAIGHT] == 1 and running[0, W_LEFT] == 1 and running.sum() == 2  # c | g
    running = effective_running(sim.network, sim.state, horizon_s=14.0)  # reach 155.6 m: d too
    assert running[0, W_STRAIGHT] == 2


def test_red_elapsed_per_movement_and_green_time():
    # phase 0 (E-W straight) after phase 1 (N-S straight), 8 s ago: 5 s intergreen, 3 s green
    sim = placed(phase=0, prev_phase=1, timer=8)
    red = movement_red_elapsed(sim.network, sim.params, sim.state)[0]
    assert red[W_STRAIGHT] == 0 and red[7] == 0  # green now
    assert red[N_STRAIGHT] == 8 and red[4] == 8  # stopped by the switch
    assert red[W_LEFT] == 8  # red before the switch too: the lower bound the state allows
    assert red[2] == 0 and red[11] == 0  # right turns: green in every phase
    sim = placed(phase=0, prev_phase=1, timer=2)  # still in the intergreen
    assert movement_red_elapsed(sim.network, sim.params, sim.state)[0, W_STRAIGHT] == 2
    env_obs = _observe(sim, ["green_time", "movement_red_time"], normalise=False)[0, 0]
    assert env_obs[0] == 0.0 and env_obs[1 + W_STRAIGHT] == 2.0  # green_time clamps the intergreen
    sim = placed(phase=0, prev_phase=1, timer=8)
    env_obs = _observe(sim, ["green_time", "movement_red_time"], normalise=True)[0, 0]
    assert env_obs[0] == pytest.approx(3 / 120) and env_obs[1 + N_STRAIGHT] == pytest.approx(8 / 120)


def _observe(sim, names, normalise):
    from envs.rl.features import feature_context, observe
    from envs.engine.intersections import intersection_layout

    ctx = feature_context(sim.network, intersection_layout(sim.network), sim.params).at(sim.state)
    return observe(check_observation_names(names), ctx, normalise)


def test_features_are_the_readings_gathered_and_scaled():
    sim = placed()
    raw = _observe(sim, ["approach_moving", "approach_halting", "movement_approach_moving",
                         "movement_approach_halting", "movement_queue", "efficient_pressure",
                         "effective_running"], normalise=False)[0, 0]
    # incoming lanes road by road: west 0-2, then south 3-5, north 18-20, east 21-23 (12 lanes)
    lanes = [0, 1, 2, 3, 4, 5, 18, 19, 20, 21, 22, 23]
    moving, halting = raw[:12], raw[12:24]
    assert moving[lanes.index(W_STRAIGHT_LANE)] == 1 and halting[lanes.index(W_STRAIGHT_LANE)] == 2
    assert halting[lanes.index(N_STRAIGHT_LANE)] == 1 and moving.sum() == 2
    per_movement = raw[24:].reshape(5, 12)
    assert per_movement[:, W_STRAIGHT].tolist() == pytest.approx([1, 2, 3, 2, 1])
    assert per_movement[:, N_STRAIGHT].tolist() == pytest.approx([0, 1, 1, 1, 0])
    normalised = _observe(sim, ["approach_halting", "efficient_pressure", "effective_running"], True)[0, 0]
    assert normalised[lanes.index(W_STRAIGHT_LANE)] == pytest.approx(2 / (100 / 7.5))
    assert normalised[12 + W_STRAIGHT] == pytest.approx(2 / 20)
    assert normalised[24 + W_LEFT] == pytest.approx(1 / 20)


def test_neighbour_mean_averages_over_the_intersections_joined_by_a_road():
    scenario = small_grid(2, 2)
    sim = Simulator(scenario.network, scenario.demand(1))
    sim.state = with_fields(sim.state, phase_timer=torch.tensor([[100, 20, 30, 40]]))  # no intergreen
    obs = _observe(sim, ["green_time", "neighbour_mean:green_time"], normalise=False)[0]
    own = {name: float(obs[i, 0]) for i, name in enumerate(sim.network.intersection_ids)}
    assert sorted(own.values()) == [20.0, 30.0, 40.0, 100.0]
    for i, name in enumerate(sim.network.intersection_ids):
        x, y = map(int, name.split("_")[1:])  # "intersection_x_y": neighbours differ by 1 in x or y
        near = [v for other, v in own.items()
                if abs(int(other.split("_")[1]) - x) + abs(int(other.split("_")[2]) - y) == 1]
        assert len(near) == 2 and float(obs[i, 1]) == pytest.approx(sum(near) / 2)
    with pytest.raises(ConfigError, match="neighbour_mean:nothing"):
        check_observation_names(["neighbour_mean:nothing"])


def test_a_one_way_road_makes_neighbours_of_both_its_ends():
    from envs.rl.movement_features import neighbour_weights
    from envs.scenario import scenario_from_dicts
    from tests.minimal_scenario import minimal_flow, minimal_roadnet

    # junctions A and B are joined only by the one-way road a_b (A -> B): "joined by a road" is
    # either direction, so each is the other's one neighbour (a grid's two-way roads cannot show it)
    network = scenario_from_dicts(minimal_roadnet(), minimal_flow(), name="one_way").network
    assert list(network.intersection_ids) == ["A", "B"]
    assert neighbour_weights(network).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_every_new_feature_fits_its_bounds_in_a_running_env():
    names = ["approach_moving", "approach_halting", "movement_approach_moving", "movement_approach_halting",
             "movement_queue", "efficient_pressure", "effective_running", "green_time", "movement_red_time",
             "neighbour_mean:efficient_pressure", "neighbour_mean:approach_moving"]
    for normalise in (True, False):
        env = BatchedSignalEnv(small_grid(2, 2, rate=900.0), 2, episode_s=600, decision_interval_s=5,
                               observations=names, normalise=normalise)
        env.reset(seed=0)
        gen = torch.Generator().manual_seed(0)
        for _ in range(12):
            env.step(torch.randint(0, 4, (2, 4), generator=gen))
        obs = env.observe()
        assert obs.shape[-1] == 12 * 2 + 12 * 5 + 1 + 12 + 12 + 12
        assert torch.all(obs >= env.obs_low) and torch.all(obs <= env.obs_high)
        assert obs.abs().sum() > 0


def test_efficient_mp_picks_the_largest_efficient_pressure_once_min_green_has_passed():
    sim = placed(phase=1, prev_phase=1, timer=100)  # N-S straight, long established
    controller = EfficientMaxPressure(min_green_s=10)
    controller.reset(sim)
    pressure = controller.phase_pressure(sim)[0, 0]
    # W straight 2 | N straight 1 | - | N left -1 (its east exit holds 1 per lane); right turns,
    # green in every phase, left out (S right's -1 would lower all four alike)
    assert pressure.tolist() == pytest.approx([2.0, 1.0, 0.0, -1.0])
    assert controller.act(sim).tolist() == [[0]]
    sim = placed(phase=1, prev_phase=0, timer=12)  # 5 s intergreen + 7 s green < 10 s
    assert controller.act(sim).tolist() == [[-1]]


def test_advanced_mp_keeps_a_green_whose_running_vehicles_outweigh_the_best_pressure():
    # phase 2 (E-W left) is green; 1 running vehicle (g) on it vs the best efficient pressure 2
    sim = placed(phase=2, prev_phase=2, timer=100)
    controller = AdvancedMaxPressure(min_green_s=10, horizon_s=10.0, weight=1.0)
    controller.reset(sim)
    assert controller.running_on_green(sim).tolist() == [[1.0]]
    assert controller.act(sim).tolist() == [[0]]  # 1 < 2: switch to phase 0
    heavier = AdvancedMaxPressure(min_green_s=10, horizon_s=10.0, weight=2.0)
    heavier.reset(sim)
    assert heavier.act(sim).tolist() == [[-1]]  # 2 x 1 >= 2: keep
    # phase 0 green: c runs on W straight (1 < 2), so it is also the best phase: command 0
    sim = placed(phase=0, prev_phase=0, timer=100)
    assert controller.act(sim).tolist() == [[0]]
    longer = AdvancedMaxPressure(min_green_s=10, horizon_s=14.0)  # d reaches too: 2 >= 2, keep
    longer.reset(sim)
    assert longer.act(sim).tolist() == [[-1]]


@pytest.mark.parametrize("field, value", [("min_green_s", -1.0), ("horizon_s", 0.0), ("weight", float("nan")),
                                          ("weight", -1.0)])
def test_advanced_mp_rejects_bad_parameters(field, value):
    sim = placed()
    with pytest.raises(ConfigError, match=field):
        AdvancedMaxPressure(**{field: value}).reset(sim)


def test_efficient_mp_switches_once_the_green_has_shown_exactly_min_green():
    # phase 1 after phase 0: 5 s intergreen, then 10 s of green; phase 0 has the largest pressure
    controller = EfficientMaxPressure(min_green_s=10)
    for timer, command in ((14, -1), (15, 0)):  # 9 s of green: keep; 10 s: switch
        sim = placed(phase=1, prev_phase=0, timer=timer)
        controller.reset(sim)
        assert controller.act(sim).tolist() == [[command]]


SOUTH_EXIT = (15, 16, 17)


def test_efficient_mp_breaks_a_pressure_tie_to_the_phase_with_more_halting_vehicles():
    """E-W straight: 1 queued on W straight, an empty east exit (1 - 0); N-S straight: 2 queued on
    N straight before a south exit holding 1 per lane (2 - 1). The tie goes to N-S straight, the
    larger queue, not to the lower index."""
    vehicles = [(W_STRAIGHT_LANE, 5.0, 0.0, W_STRAIGHT), (N_STRAIGHT_LANE, 3.0, 0.0, N_STRAIGHT),
                (N_STRAIGHT_LANE, 10.5, 0.0, N_STRAIGHT)] + [(lane, 250.0, 0.0, -1) for lane in SOUTH_EXIT]
    sim = placed(phase=2, prev_phase=2, timer=100, vehicles=vehicles)
    controller = EfficientMaxPressure(min_green_s=10)
    controller.reset(sim)
    pressure = controller.phase_pressure(sim)[0, 0]
    assert float(pressure[0]) == pytest.approx(1.0) and float(pressure[1]) == pytest.approx(1.0)
    assert controller.act(sim).tolist() == [[1]]


def test_readings_at_their_thresholds_halting_is_strictly_slower_and_the_distance_is_inclusive():
    """A vehicle at exactly 0.1 m/s is moving (halting is *slower than* halting_speed, CityFlow's
    rule), in the lane detectors' count as in the approach detectors'; one exactly distance_m
    from the stop line is within it."""
    from envs.engine.readings import lane_halting

    sim = placed(vehicles=[(W_STRAIGHT_LANE, 60.0, 0.1, W_STRAIGHT), (W_STRAIGHT_LANE, 40.0, 0.0, W_STRAIGHT)])
    moving, halting = approach_by_lane(sim.network, sim.state, 60.0)
    assert (int(moving[0, W_STRAIGHT_LANE]), int(halting[0, W_STRAIGHT_LANE])) == (1, 1)
    assert int(lane_halting(sim.state, sim.network.num_lanes)[0, W_STRAIGHT_LANE]) == 1
    moving, _ = approach_by_lane(sim.network, sim.state, 59.5)
    assert int(moving[0, W_STRAIGHT_LANE]) == 0
