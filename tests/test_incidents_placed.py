"""Incidents at a place along a lane (envs/engine/incident_rules.py): a closure mid-lane holds the
vehicles behind it at any colour of the light and lets those past it go; a capacity drop at a
place slows only the rest of the lane; positions are configured, drawn and checked; the
invariants hold under random mid-lane incidents; a run whose incidents never become active is
the plain run."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.classical import FixedTime, MaxPressure
from envs.engine import Simulator, signal_state
from envs.errors import ConfigError
from envs.incidents.perturbations import Incident, IncidentSpec, Perturbation, sample_incidents, with_incidents
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet
from envs.scenario.network import lane_ids
from tests.engine_checks import run_controller_checked
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import small_grid

EAST = ["road_0_1_0", "road_1_1_0", "road_2_1_0"]  # straight through both signals of a 1x2 grid
GAP = DEFAULT_VEHICLE["minGap"]  # 2.5 m


@pytest.fixture(scope="module")
def corridor():
    """Two signals in a row, 200 m roads with two straight lanes, a steady eastbound stream."""
    roadnet = grid_roadnet(1, 2, lanes=("L", "S", "S", "R"), road_length=200.0)
    flow = [{"vehicle": dict(DEFAULT_VEHICLE), "route": EAST, "interval": 3.0, "startTime": 0, "endTime": 900}]
    return scenario_from_dicts(roadnet, flow, name="corridor")


def _middle_lanes(network) -> list[int]:
    """The two straight lanes of the corridor's middle road (200 m long)."""
    return [lane_ids(network).index(f"road_1_1_0_{k}") for k in (1, 2)]


def _simulator(scenario, incidents):
    sim = Simulator(scenario.network, with_incidents(scenario.demand(1), [incidents]))
    controller = FixedTime()
    controller.reset(sim)
    return sim, controller


def test_a_closure_mid_lane_holds_the_vehicles_behind_it_and_lets_those_past_it_leave(corridor):
    net = corridor.network
    lanes = _middle_lanes(net)
    place, start, end = 100.0, 265, 500  # at 265 s the stream is on both sides of the place
    sim, controller = _simulator(corridor, [Incident(lane, start, end, 0.0, place) for lane in lanes])
    closed = torch.tensor(lanes)
    movement = net.movement_of_pair[(net.road_ids.index("road_1_1_0"), net.road_ids.index("road_2_1_0"))]

    def on_lanes():
        state = sim.state
        on = torch.isin(state.veh_lane[0, :-1], closed)
        return dict(zip(state.veh_trip[0, :-1][on].tolist(), state.veh_pos[0, :-1][on].tolist()))

    for _ in range(start):
        sim.step(controller.act(sim))
    at_onset = on_lanes()
    past = {trip for trip, front in at_onset.items() if front > place}
    behind = {trip for trip, front in at_onset.items() if front <= place}
    assert len(past) >= 5 and len(behind) >= 5  # here 6 and 12
    held_on_green = 0
    for _ in range(start, end):
        sim.step(controller.act(sim))
        now = on_lanes()
        # nobody behind the blockage passes it; who arrived after its onset stops a gap short of it
        assert all(now[trip] <= place for trip in behind if trip in now)
        late = [front for trip, front in now.items() if trip not in at_onset]
        assert all(front <= place - GAP + 1e-4 for front in late)
        green, _ = signal_state(net, sim.params, sim.state.phase, sim.state.prev_phase, sim.state.phase_timer - 1)
        state = sim.state
        nearest = []  # per closed lane: the front and speed of its vehicle nearest the blockage
        for lane in lanes:
            on = (state.veh_lane[0, :-1] == lane) & (state.veh_pos[0, :-1] <= place)
            if bool(on.any()):
                k = int(torch.argmax(torch.where(on, state.veh_pos[0, :-1], -1e9)))
                nearest.append((float(state.veh_pos[0, k]), float(state.veh_speed[0, k])))
        stands = len(nearest) == 2 and all(place - GAP - 1e-3 <= f <= place and v == 0.0 for f, v in nearest)
        held_on_green += int(bool(green[0, movement]) and stands)
    assert not past & set(on_lanes())  # every vehicle past the place left the lanes during the closure
    assert held_on_green > 10  # the queue stood at the blockage through greens (not a red light)
    queue = len(on_lanes())
    for _ in range(end, 3000):
        sim.step(controller.act(sim))
    trips = int(sim.demand.num_trips[0])
    assert queue > 20 and int((sim.state.trip_finish[0, :trips] >= 0).sum()) == trips  # traffic resumed


def test_a_capacity_drop_at_a_place_slows_only_the_rest_of_the_lane(corridor):
    net = corridor.network
    lanes = _middle_lanes(net)
    place, factor = 100.0, 0.3
    sim, controller = _simulator(corridor, [Incident(lane, 0, 900, factor, place) for lane in lanes])
    limit = float(net.lane_max_speed[lanes[0]])
    slowed = torch.tensor(lanes)
    fastest_past, fastest_before = 0.0, 0.0
    for _ in range(600):
        was_lane, was_pos = sim.state.veh_lane[0, :-1].clone(), sim.state.veh_pos[0, :-1].clone()
        sim.step(controller.act(sim))
        state = sim.state
        same = torch.isin(state.veh_lane[0, :-1], slowed) & (state.veh_lane[0, :-1] == was_lane)
        speed = state.veh_speed[0, :-1]
        was_past = same & (was_pos >= place)  # past the place for the whole step: the drop applies
        before = same & (state.veh_pos[0, :-1] < place)
        if bool(was_past.any()):
            fastest_past = max(fastest_past, float(speed[was_past].max()))
        if bool(before.any()):
            fastest_before = max(fastest_before, float(speed[before].max()))
    assert 0.0 < fastest_past <= factor * limit + 1e-4
    assert fastest_before > 2 * factor * limit  # before the place the lane runs at its normal limit


def test_incident_positions_are_configured_drawn_and_checked():
    scenario = small_grid(3, 3, horizon=100)
    net = scenario.network
    length = net.lane_length.cpu().numpy()
    for bad in (1.5, -0.1, "middle", float("nan"), True):
        with pytest.raises(ConfigError, match="incidents.position") as refused:
            IncidentSpec(position=bad)
        assert_names_everything(refused.value, "<perturbation>", "incidents.position", bad)
        assert "a fraction of the lane's length in [0, 1]" in refused.value.reason

    def draw(position, index=0, seed=3):
        spec = Perturbation(seed=seed, incidents=IncidentSpec(count=3, start_s=[0, 1000], position=position))
        return sample_incidents(spec, net, "eval", index)

    at_line, drawn = draw("stop_line"), draw("random")
    assert all(i.position is None for i in at_line)
    # the same lanes and times: positions are drawn after them, so stop-line runs keep their draws
    assert [(i.lane, i.start, i.end) for i in at_line] == [(i.lane, i.start, i.end) for i in drawn]
    assert all(0.0 <= i.position <= length[i.lane] for i in drawn)
    assert drawn == draw("random") and drawn != draw("random", index=1) and drawn != draw("random", seed=4)
    assert [i.position for i in draw(0.25)] == pytest.approx([0.25 * length[i.lane] for i in at_line])
    # many draws cover the lane: uniform over its length
    fractions = [i.position / length[i.lane] for k in range(100) for i in draw("random", index=k)]
    assert min(fractions) < 0.05 and max(fractions) > 0.95 and 0.4 < sum(fractions) / len(fractions) < 0.6
    demand = with_incidents(scenario.demand(2), [at_line, drawn])
    assert demand.incident_pos.tolist()[0] == [-1.0] * 3  # a stop-line incident beside placed ones
    assert with_incidents(scenario.demand(1), [at_line]).incident_pos is None
    beyond = with_incidents(scenario.demand(1), [[Incident(0, 0, 10, 0.0, float(length[0]) + 5.0)]])
    with pytest.raises(ConfigError, match="incident_pos") as refused:
        Simulator(net, beyond)
    assert_names_everything(refused.value, "<engine>", "demand.incident_pos", float(length[0]) + 5.0)
    assert 'beyond the end of its lane' in refused.value.reason


@pytest.mark.parametrize("idle_incidents", [
    [Incident(0, 10_000, 10_100, 0.0, 10.0), Incident(3, 10_000, 10_100, 0.5, 20.0)],  # along the lane
    [Incident(0, 10_000, 10_100, 0.0), Incident(3, 10_000, 10_100, 0.5)],  # at the stop line
], ids=["placed", "stop_line"])
def test_incidents_that_never_become_active_leave_the_plain_run_unchanged(idle_incidents):
    scenario = small_grid(2, 2, rate=700.0, horizon=200, seed=1)
    idle = [idle_incidents] * 2
    runs = []
    for demand in (scenario.demand(2), with_incidents(scenario.demand(2), idle)):
        sim = Simulator(scenario.network, demand)
        controller = MaxPressure(min_green_s=5)
        controller.reset(sim)
        for _ in range(200):
            sim.step(controller.act(sim))
        runs.append(sim.state)
    assert runs[1].t[0] == 200
    for name, plain, placed in zip(runs[0]._fields, runs[0], runs[1]):
        assert torch.equal(plain, placed), name


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 6), capacity=st.sampled_from([0.0, 0.2, 0.6]),
       duration=st.integers(1, 300), position=st.sampled_from(["random", 0.0, 0.5, 1.0]))
def test_invariants_hold_under_random_mid_lane_incidents(seed, count, capacity, duration, position):
    """Conservation, FIFO lanes, gaps, no conflicting greens, no red discharge — with closures
    and capacity drops at random places (and some at their stop lines) over two copies."""
    scenario = small_grid(2, 2, rate=700.0, horizon=300, seed=1)

    def draw(position, stream_seed):
        spec = Perturbation(seed=stream_seed, incidents=IncidentSpec(
            count=count, start_s=[0, 200], duration_s=duration, capacity=capacity, position=position))
        return [sample_incidents(spec, scenario.network, "eval", k) for k in range(2)]

    placed, at_line = draw(position, seed), draw("stop_line", seed + 1)
    per_copy = [placed[0] + at_line[0][:1], placed[1]]
    sim = Simulator(scenario.network, with_incidents(scenario.demand(2), per_copy))
    run_controller_checked(sim, MaxPressure(min_green_s=5), 300)
