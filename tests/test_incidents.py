"""Incidents in the engine and demand surges (envs/incidents/perturbations.py): closures hold traffic,
lane choice avoids closed lanes, capacity drops slow a lane, the invariants hold under random
incidents, perturbations are seeded per copy and split, and bad configs name the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.classical import FixedTime, MaxPressure
from envs.engine import EngineParams, Simulator
from envs.errors import ScenarioError
from envs.rl.features import lane_flows
from envs.evaluation.metrics import episode_metrics
from envs.incidents.perturbations import (
    _rng, Incident, IncidentSpec, Perturbation, SurgeSpec, lane_traffic, perturbation_from_config, sample_incidents,
    surge_trips, with_incidents,
)
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet
from envs.scenario.network import lane_ids
from tests.engine_checks import check_all
from tests.scenarios import small_grid

EAST = ["road_0_1_0", "road_1_1_0", "road_2_1_0"]  # straight through both signals of a 1x2 grid


@pytest.fixture(scope="module")
def corridor():
    """Two signals in a row, roads with two straight lanes, a steady eastbound stream."""
    roadnet = grid_roadnet(1, 2, lanes=("L", "S", "S", "R"), road_length=200.0)
    flow = [{"vehicle": dict(DEFAULT_VEHICLE), "route": EAST, "interval": 3.0, "startTime": 0, "endTime": 900}]
    return scenario_from_dicts(roadnet, flow, name="corridor")


def _lane(network, name: str) -> int:
    return lane_ids(network).index(name)


def _run(scenario, incidents, steps, copies=1):
    demand = with_incidents(scenario.demand(copies), [list(incidents)] * copies)
    sim = Simulator(scenario.network, demand)
    controller = FixedTime()
    controller.reset(sim)
    history = []
    for _ in range(steps):
        sim.step(controller.act(sim))
        history.append(sim.state.lane_count[0].clone())
    return sim, torch.stack(history)


def test_lane_choice_avoids_a_closed_lane_where_another_serves_the_route(corridor):
    net = corridor.network
    closed, other = _lane(net, "road_1_1_0_1"), _lane(net, "road_1_1_0_2")
    entry_closed = _lane(net, "road_0_1_0_1")
    _, clean = _run(corridor, [], 900)
    assert clean[:, closed].sum() > 0 and clean[:, other].sum() > 0  # both lanes carry traffic
    incidents = [Incident(closed, 0, 10_000, 0.0), Incident(entry_closed, 0, 10_000, 0.0)]
    sim, counts = _run(corridor, incidents, 900)
    assert int(counts[:, closed].max()) == 0  # nobody turned into the closed lane
    assert int(counts[:, entry_closed].max()) == 0  # nobody entered on the closed origin lane
    assert counts[:, other].sum() > 0
    assert int((sim.state.trip_finish >= 0).sum()) > 50  # and traffic still flows (84 here)


def test_a_closure_holds_every_vehicle_behind_it_until_it_clears(corridor):
    net = corridor.network
    lanes = [_lane(net, f"road_1_1_0_{k}") for k in (1, 2)]  # every lane of the route's middle road
    incidents = [Incident(lane, 200, 500, 0.0) for lane in lanes]
    demand = with_incidents(corridor.demand(1), [incidents])
    sim = Simulator(net, demand)
    controller = FixedTime()
    controller.reset(sim)
    on_road = lambda state: set(  # noqa: E731  trips on the closed road
        state.veh_trip[0, :-1][torch.isin(state.veh_lane[0, :-1], torch.tensor(lanes))].tolist())
    queued = []
    for t in range(3000):
        before = on_road(sim.state)
        sim.step(controller.act(sim))
        if 201 <= t < 500:  # the closure is in force for the step from t
            assert before <= on_road(sim.state), f"a vehicle left a closed lane at t={t}"
            queued.append(len(on_road(sim.state)))
    assert queued[-1] > queued[0] + 5  # the queue grew behind the closure
    after = episode_metrics(sim.demand, sim.state)
    clean, _ = _run(corridor, [], 3000)
    assert float(after["travel_time/mean"][0]) > float(episode_metrics(clean.demand, clean.state)["travel_time/mean"][0])
    trips = int(sim.demand.num_trips[0])
    assert int((sim.state.trip_finish[0, :trips] >= 0).sum()) == trips  # all done after it cleared


def test_a_capacity_drop_caps_the_speed_on_its_lane(corridor):
    net = corridor.network
    lane = _lane(net, "road_1_1_0_1")
    other = _lane(net, "road_1_1_0_2")
    demand = with_incidents(corridor.demand(1), [[Incident(lane, 0, 900, 0.3), Incident(other, 0, 900, 0.3)]])
    sim = Simulator(net, demand)
    controller = FixedTime()
    controller.reset(sim)
    limit = float(net.lane_max_speed[lane])
    fastest, entering = 0.0, 0.0
    slowed = torch.tensor([lane, other])
    for _ in range(600):
        was_on = torch.isin(sim.state.veh_lane[0, :-1], slowed)
        sim.step(controller.act(sim))
        on = torch.isin(sim.state.veh_lane[0, :-1], slowed)
        stayed = on & was_on  # a vehicle keeps the speed it crossed with for the step it enters
        if bool(stayed.any()):
            fastest = max(fastest, float(sim.state.veh_speed[0, :-1][stayed].max()))
        if bool((on & ~was_on).any()):
            entering = max(entering, float(sim.state.veh_speed[0, :-1][on & ~was_on].max()))
    assert 0.0 < fastest <= 0.3 * limit + 1e-4
    assert entering > 0.3 * limit  # (so the cap is the incident's doing)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), count=st.integers(1, 6), capacity=st.sampled_from([0.0, 0.2, 0.6]),
       duration=st.integers(1, 300))
def test_invariants_hold_under_random_incidents(seed, count, capacity, duration):
    """Conservation, FIFO lanes, gaps, no conflicting greens, no red discharge — with closures
    and capacity drops scattered over two copies (different per copy)."""
    scenario = small_grid(2, 2, rate=700.0, horizon=300, seed=1)
    spec = Perturbation(seed=seed, incidents=IncidentSpec(count=count, start_s=[0, 200], duration_s=duration,
                                                          capacity=capacity))
    per_copy = [sample_incidents(spec, scenario.network, "eval", k) for k in range(2)]
    sim = Simulator(scenario.network, with_incidents(scenario.demand(2), per_copy))
    controller = MaxPressure(min_green_s=5)
    controller.reset(sim)
    for _ in range(300):
        before = sim.snapshot()
        sim.step(controller.act(sim))
        check_all(sim.network, sim.demand, sim.params, before, sim.state)


def test_incidents_are_seeded_per_copy_and_split():
    scenario = small_grid(3, 3, horizon=100)
    spec = Perturbation(seed=3, incidents=IncidentSpec(count=2, start_s=[0, 1000], duration_s=60))
    a = [sample_incidents(spec, scenario.network, "eval", k) for k in range(4)]
    assert a == [sample_incidents(spec, scenario.network, "eval", k) for k in range(4)]  # reproducible
    assert len({tuple(x) for x in a}) == 4  # different per copy
    assert a[0] != sample_incidents(spec, scenario.network, "train", 0)  # splits never share a draw
    ends = scenario.network.road_end[scenario.network.lane_road]
    assert all(int(ends[i.lane]) >= 0 and 0 <= i.start <= 1000 and i.end == i.start + 60 for x in a for i in x)
    named = IncidentSpec(count=3, lanes=["road_1_1_0_1"])
    chosen = sample_incidents(Perturbation(incidents=named), scenario.network, "eval", 0)
    assert {i.lane for i in chosen} == {lane_ids(scenario.network).index("road_1_1_0_1")}


def test_lane_traffic_shares_each_trip_among_the_lanes_serving_its_movement(corridor):
    net, trips = corridor.network, corridor.trips
    traffic, n = lane_traffic(net, trips), trips.num_trips
    for road in ("road_0_1_0", "road_1_1_0"):  # straight through: the two straight lanes share it
        assert [traffic[_lane(net, f"{road}_{k}")] for k in range(4)] == [0.0, n / 2, n / 2, 0.0]
    assert [traffic[_lane(net, f"road_2_1_0_{k}")] for k in range(4)] == [n / 4] * 4  # last road: every lane
    assert traffic.sum() == pytest.approx(3 * n)  # once per road of the route


def test_traffic_placement_never_draws_a_lane_without_traffic_and_is_reproducible(corridor):
    net, trips = corridor.network, corridor.trips
    busy = {_lane(net, f"{road}_{k}") for road in ("road_0_1_0", "road_1_1_0") for k in (1, 2)}
    spec = Perturbation(seed=4, incidents=IncidentSpec(count=1, placement="traffic"))
    draws = [sample_incidents(spec, net, "eval", k, trips=trips) for k in range(40)]
    assert draws == [sample_incidents(spec, net, "eval", k, trips=trips) for k in range(40)]  # reproducible
    assert {i.lane for copy in draws for i in copy} == busy  # of 16 lanes ending at a signal, the 4 used
    uniform = Perturbation(seed=4, incidents=IncidentSpec(count=1))  # the default placement
    assert {i.lane for k in range(40) for i in sample_incidents(uniform, net, "eval", k)} - busy
    many = sample_incidents(Perturbation(seed=4, incidents=IncidentSpec(count=6, placement="traffic")), net,
                            "eval", 0, trips=trips)  # more incidents than busy lanes: repeats, never an idle lane
    assert len(many) == 6 and {i.lane for i in many} <= busy
    with pytest.raises(ScenarioError, match="incidents.placement"):
        sample_incidents(spec, net, "eval", 0)  # traffic placement needs the copy's trips


def test_traffic_placement_draws_lanes_in_proportion_to_their_traffic():
    scenario = small_grid(2, 2, rate=900.0, horizon=600, seed=2)
    net, trips = scenario.network, scenario.trips
    pool = IncidentSpec().lane_pool(net)
    share = lane_traffic(net, trips)[pool] / lane_traffic(net, trips)[pool].sum()
    spec = Perturbation(seed=1, incidents=IncidentSpec(count=1, placement="traffic"))
    draws = 600
    drawn = [sample_incidents(spec, net, "train", k, trips=trips)[0].lane for k in range(draws)]
    frequency = np.array([drawn.count(lane) for lane in pool]) / draws
    assert (frequency[share == 0] == 0).all()
    # within 4 binomial standard deviations of its traffic share, lane by lane
    assert (np.abs(frequency - share) <= 4 * np.sqrt(share * (1 - share) / draws) + 1e-9).all()


def test_a_surge_scales_departures_inside_its_window_only():
    scenario = small_grid(2, 2, rate=1200.0, horizon=1800, seed=0)
    trips = scenario.trips
    spec = Perturbation(seed=1, surge=SurgeSpec(scale=2.5, start_s=600, end_s=1200))
    surged = surge_trips(trips, spec, "eval", 0)
    inside = lambda d: ((d >= 600) & (d < 1200)).sum()  # noqa: E731
    assert (surged.depart[(surged.depart < 600) | (surged.depart >= 1200)]
            == trips.depart[(trips.depart < 600) | (trips.depart >= 1200)]).all()
    assert 2.3 < inside(surged.depart) / inside(trips.depart) < 2.7
    assert (np.diff(surged.depart) >= 0).all()
    sim = Simulator(scenario.network, scenario.demand(trips=[surged]))
    sim.run(200)  # the surged table is a valid demand


def test_a_ramped_surge_follows_its_trapezoid_and_a_step_surge_is_unchanged_by_ramp_zero():
    scenario = small_grid(2, 2, rate=1200.0, horizon=1800, seed=0)
    trips = scenario.trips
    ramped = SurgeSpec(scale=3.0, start_s=0, end_s=1800, ramp_s=600)
    assert ramped.factor(np.array([-1, 0, 300, 600, 900, 1200, 1500, 1800])).tolist() == [
        1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 2.0, 1.0]
    surged = surge_trips(trips, Perturbation(seed=2, surge=ramped), "eval", 0)
    band = lambda d, lo, hi: ((d >= lo) & (d < hi)).sum()  # noqa: E731
    # mean factor on [0, 600) is 2 (the climb), on [600, 1200) 3 (the plateau), [1200, 1800) 2
    for (lo, hi), mean_factor in {(0, 600): 2.0, (600, 1200): 3.0, (1200, 1800): 2.0}.items():
        ratio = band(surged.depart, lo, hi) / band(trips.depart, lo, hi)
        assert abs(ratio - mean_factor) < 0.15, (lo, hi, ratio)
    # the climb is gradual: the first 200 s of it gain far less than its last 200 s
    assert band(surged.depart, 0, 200) / band(trips.depart, 0, 200) < 1.5
    assert band(surged.depart, 400, 600) / band(trips.depart, 400, 600) > 2.5
    # ramp_s 0 is the window's step, draw for draw: each trip inside is kept floor(2.5) + Bernoulli(0.5)
    # times from the surge stream's uniforms, each trip outside once
    step = Perturbation(seed=1, surge=SurgeSpec(scale=2.5, start_s=600, end_s=1200))
    assert step.surge.factor(np.array([599, 600, 1199, 1200])).tolist() == [1.0, 2.5, 2.5, 1.0]
    uniforms = _rng(step, "eval", 3, "surge").random(trips.num_trips)
    inside = (trips.depart >= 600) & (trips.depart < 1200)
    kept = np.where(inside, 2 + (uniforms < 0.5), 1)
    assert np.array_equal(surge_trips(trips, step, "eval", 3).depart, np.repeat(trips.depart, kept))


@pytest.mark.parametrize("config, field", [
    ({"incidents": {"lanes": ["road_9_9_9_0"]}}, "incidents.lanes"),
    ({"incidents": {"duration_s": -5}}, "incidents.duration_s"),
    ({"incidents": {"capacity": 1.5}}, "incidents.capacity"),
    ({"incidents": {"count": -1}}, "incidents.count"),
    ({"incidents": {"start_s": [900, 100]}}, "incidents.start_s"),
    ({"incidents": {"when": 3}}, "perturbation.incidents.when"),
    ({"incidents": {"placement": "random"}}, "incidents.placement"),
    ({"surge": {"scale": -2}}, "surge.scale"),
    ({"surge": {"start_s": 900, "end_s": 100}}, "surge.[start_s, end_s]"),
    ({"surge": {"start_s": 0, "end_s": 600, "ramp_s": 400}}, "surge.ramp_s"),
    ({"surge": {"ramp_s": -1}}, "surge.ramp_s"),
    ({"seed": -1}, "perturbation.seed"),
    ({"detectors": {"dropout_p": 1.5}}, "detectors.dropout_p"),
    ({"detectors": {"dead_p": -0.1}}, "detectors.dead_p"),
    ({"detectors": {"noise_std": -1}}, "detectors.noise_std"),
    ({"colour": "red"}, "perturbation.colour"),
])
def test_bad_perturbation_configs_name_the_field_and_value(config, field):
    scenario = small_grid(2, 2, horizon=100)
    with pytest.raises(ScenarioError) as error:
        perturbation = perturbation_from_config(config)
        sample_incidents(perturbation, scenario.network, "eval", 0)
    assert field in str(error.value)
    value = str(list(config.values())[0])
    assert any(str(v) in str(error.value) for v in _leaves(config)), (str(error.value), value)


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        yield from value
    else:
        yield value


def test_without_incidents_the_engine_is_unchanged():
    scenario = small_grid(2, 2, rate=700.0, horizon=300, seed=1)
    runs = []
    for demand in (scenario.demand(1), with_incidents(scenario.demand(1), [[]])):
        sim = Simulator(scenario.network, demand, EngineParams())
        controller = MaxPressure()
        controller.reset(sim)
        sim.run(400, controller)
        runs.append(sim.state)
    assert torch.equal(runs[0].veh_pos, runs[1].veh_pos) and torch.equal(runs[0].trip_finish, runs[1].trip_finish)


def test_compiled_engine_matches_eager_under_incidents():
    scenario = small_grid(2, 2, rate=700.0, horizon=300, seed=1)
    spec = Perturbation(seed=5, incidents=IncidentSpec(count=3, start_s=[0, 100], duration_s=120, capacity=0.0))
    demand = with_incidents(scenario.demand(2), [sample_incidents(spec, scenario.network, "eval", k) for k in range(2)])
    states = []
    for compiled in (False, True):
        sim = Simulator(scenario.network, demand, compile=compiled)
        controller = MaxPressure()
        controller.reset(sim)
        sim.run(250, controller)
        states.append(sim.state)
    for name in ("veh_lane", "trip_finish", "lane_count", "phase"):
        assert torch.equal(getattr(states[0], name), getattr(states[1], name)), name
    for name in ("veh_pos", "veh_speed"):  # fused float arithmetic, as in test_engine_compiled
        torch.testing.assert_close(getattr(states[0], name), getattr(states[1], name), rtol=1e-4, atol=1e-3)


def test_evaluate_reports_degradation_under_a_perturbation(tmp_path):
    import csv
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "evaluate.py", "scenario=grid_1x1", "controllers=[fixed_time,max_pressure]",
         "perturbation=mixed", "perturbation.incidents.start_s=[60,120]", "perturbation.surge.start_s=0",
         "perturbation.surge.end_s=600", "eval.seeds=2", "eval.steps=600", "eval.plots=false",
         "eval.progress=false", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Degradation against the clean case" in done.stdout and "travel time change (%)" in done.stdout
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert {r["condition"] for r in rows} == {"clean", "mixed"} and len(rows) == 8
    by = {(r["controller"], r["condition"], r["seed"]): float(r["travel_time/mean"]) for r in rows}
    # a closure plus a 1.3x surge slows every controller on every seed
    assert all(by[(c, "mixed", s)] > by[(c, "clean", s)] for c in ("fixed_time", "max_pressure") for s in "01")
    bad = subprocess.run(
        [sys.executable, "evaluate.py", "scenario=grid_1x1", "perturbation=incident",
         "perturbation.incidents.duration_s=-1", f"hydra.run.dir={tmp_path / 'bad'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode != 0 and "incidents.duration_s" in bad.stderr and "-1" in bad.stderr


def test_training_env_draws_incidents_and_surges_with_each_episode():
    from envs.rl.signal_env import BatchedSignalEnv

    config = {"name": "mixed", "incidents": {"count": 2, "start_s": [0, 50], "duration_s": 100},
              "surge": {"scale": 2.0, "start_s": 0, "end_s": 300}}
    env = BatchedSignalEnv("grid_1x1", copies=3, episode_s=300, demand={"mode": "poisson"}, perturbation=config)
    clean = BatchedSignalEnv("grid_1x1", copies=3, episode_s=300, demand={"mode": "poisson"})
    env.reset(seed=0)
    clean.reset(seed=0)
    demand = env.sim.demand
    assert demand.incident_lane.shape == (3, 2)
    assert len({tuple(row) for row in demand.incident_lane.tolist()} | {0}) >= 2  # per copy
    assert int(demand.num_trips.sum()) > 1.5 * int(clean.sim.demand.num_trips.sum())  # the surge
    first = demand.incident_start.clone()
    env.reset()  # the next episodes draw new samples, with new incidents
    assert not torch.equal(first, env.sim.demand.incident_start)
    assert env.describe()["perturbation"]["name"] == "mixed"
    with pytest.raises(ScenarioError, match="perturbation"):
        BatchedSignalEnv("grid_1x1", demand={"mode": "original"}, perturbation=config)


# ---- detector faults -------------------------------------------------------------------------------


def _faults(scenario, copies=2, **spec):
    from envs.engine.intersections import intersection_layout
    from envs.incidents.perturbations import DetectorFaults, DetectorFaultSpec

    perturbation = Perturbation(seed=1, detectors=DetectorFaultSpec(**spec))
    faults = DetectorFaults(perturbation, scenario.network, intersection_layout(scenario.network).in_lanes, copies)
    return faults


def test_detector_faults_freeze_stuck_lanes_kill_dead_intersections_and_leave_clean_copies_true():
    scenario = small_grid(2, 2, horizon=100)
    lanes = scenario.network.num_lanes
    faults = _faults(scenario, stuck_p=0.5, dead_p=0.5, stuck_at_s=10)
    faults.start_episode(1, "eval", 0)  # copy 0 stays clean
    t = torch.tensor([20, 20])
    first = torch.arange(2 * lanes, dtype=torch.float32).reshape(2, lanes)
    seen = faults.apply("lane_count", first, t, missing=float("nan"))
    assert torch.equal(seen[0], first[0])  # a clean copy reads the truth
    dead, stuck = faults.dead[1], faults.stuck[1] & ~faults.dead[1]
    assert bool(dead.any()) and bool(stuck.any())
    assert torch.isnan(seen[1][dead]).all()
    later = faults.apply("lane_count", first + 100, t + 10, missing=float("nan"))
    assert torch.equal(later[1][stuck], first[1][stuck])  # frozen at the reading from stuck_at_s
    healthy = ~faults.dead[1] & ~faults.stuck[1]
    assert torch.equal(later[1][healthy], first[1][healthy] + 100)
    # every lane of a dead intersection is dead: its incoming lanes, nothing else
    owner = faults.lane_owner
    for i in owner[dead].unique().tolist():
        assert bool(dead[owner == i].all())


def test_detector_noise_reads_whole_vehicles_within_the_lane_and_dropouts_hit_at_their_rate():
    scenario = small_grid(2, 2, horizon=100)
    faults = _faults(scenario, copies=64, noise_std=2.0, dropout_p=0.2)
    for b in range(64):
        faults.start_episode(b, "eval", b)
    true = torch.full((64, scenario.network.num_lanes), 3.0)
    upper = torch.full((scenario.network.num_lanes,), 6.0)
    seen = faults.apply("lane_count", true, torch.zeros(64, dtype=torch.int64), upper=upper)
    assert torch.equal(seen, seen.round()) and float(seen.min()) >= 0 and float(seen.max()) <= 6
    lost = faults.apply("lane_count", true, torch.zeros(64, dtype=torch.int64), missing=float("nan"))
    assert 0.15 < float(torch.isnan(lost).float().mean()) < 0.25


def test_max_pressure_reads_faulty_detectors_and_runs_fixed_time_where_they_are_all_dead():
    scenario = small_grid(2, 2, rate=900.0, horizon=900, seed=3)
    sim = Simulator(scenario.network, scenario.demand(copies=2), EngineParams(min_green_s=0))
    sim.run(300, MaxPressure(min_green_s=0))  # load the network
    truth = MaxPressure(min_green_s=0)
    truth.reset(sim)
    # copy 1 gets faults: dead intersections (all their incoming detectors silent); copy 0 is clean
    faults = _faults(scenario, dead_p=0.5)
    faults.start_episode(1, "eval", 0)
    dead_inter = faults.lane_owner[faults.dead[1]].unique()
    assert 0 < len(dead_inter) < scenario.network.num_intersections  # some dead, some alive
    faulty = MaxPressure(min_green_s=0, detectors=faults)
    faulty.reset(sim)
    plan = FixedTime()
    plan.reset(sim)
    seen, true_command, fixed = faulty.act(sim), truth.act(sim), plan.act(sim)
    assert torch.equal(seen[0], true_command[0])  # the clean copy reads the truth
    dead = torch.zeros(scenario.network.num_intersections, dtype=torch.bool)
    dead[dead_inter] = True
    assert torch.equal(seen[1][dead], fixed[1][dead])  # blind intersections run the plan
    # live intersections decide on their own (true) counts: here only the dead lanes differ,
    # and a dead lane reads 0 where it is some live intersection's exit, so compare pressures
    inflow, outflow = faulty.movement_flows(sim)
    lanes = scenario.network.num_lanes
    counts = torch.where(faults.dead[1], 0.0, sim.state.lane_count[1, :lanes].to(torch.float32))
    expected_in, expected_out = lane_flows(scenario.network, counts.unsqueeze(0), counts.unsqueeze(0))
    assert torch.equal(inflow[1:], expected_in) and torch.equal(outflow[1:], expected_out)


def test_sotl_reads_faulty_approach_detectors_split_by_true_shares_and_falls_back_when_blind():
    from agents.classical import SOTL

    scenario = small_grid(2, 2, rate=900.0, horizon=900, seed=3)
    sim = Simulator(scenario.network, scenario.demand(copies=2), EngineParams(min_green_s=0))
    sim.run(300, MaxPressure(min_green_s=0))
    truth = SOTL(min_green_s=0)
    truth.reset(sim)
    faults = _faults(scenario, dead_p=0.5)
    faults.start_episode(1, "eval", 0)
    faulty = SOTL(min_green_s=0, detectors=faults)
    faulty.reset(sim)
    true_counts, seen = truth.approaching(sim, 80.0), faulty.approaching(sim, 80.0)
    assert torch.equal(seen[0], true_counts[0])  # the clean copy reads the truth
    dead_inter = faults.lane_owner[faults.dead[1]].unique()
    assert float(seen[1, dead_inter].sum()) == 0.0 < float(true_counts[1, dead_inter].sum())
    alive = torch.ones(scenario.network.num_intersections, dtype=torch.bool)
    alive[dead_inter] = False
    assert torch.equal(seen[1, alive], true_counts[1, alive])  # live detectors report the truth
    plan = FixedTime()
    plan.reset(sim)
    assert torch.equal(faulty.act(sim)[1, ~alive], plan.act(sim)[1, ~alive])
    # noise: a lane's reported count is split over its vehicles' movements; counts stay >= 0
    noisy = SOTL(min_green_s=0, detectors=_faults(scenario, noise_std=3.0))
    noisy.detectors.start_episode(1, "eval", 0)
    noisy.reset(sim)
    counts = noisy.approaching(sim, 80.0)
    assert torch.equal(counts[0], true_counts[0]) and not torch.equal(counts[1], true_counts[1])
    assert float(counts.min()) >= 0.0


def test_detector_faults_change_observations_never_rewards():
    from envs.rl.signal_env import BatchedSignalEnv

    faulty = {"name": "f", "detectors": {"noise_std": 2.0, "dropout_p": 0.3}}
    envs = [BatchedSignalEnv("grid_1x1", copies=2, episode_s=300, demand={"mode": "poisson"}, perturbation=p)
            for p in (None, faulty)]
    obs = [env.reset(seed=0)[0] for env in envs]
    differ = False
    for _ in range(20):
        actions = torch.zeros(2, 1, dtype=torch.int64)
        (o0, r0, *_), (o1, r1, *_) = (env.step(actions) for env in envs)
        assert torch.equal(r0, r1)  # the same traffic, the same rewards
        differ |= not torch.equal(o0, o1)
    assert differ and torch.equal(envs[0].sim.state.veh_pos, envs[1].sim.state.veh_pos)


def test_detector_noise_is_the_same_for_every_copy_on_one_episode_sample():
    scenario = small_grid(2, 2, horizon=100)
    faults = _faults(scenario, copies=3, noise_std=2.0, dropout_p=0.3)
    for copy, index in enumerate((4, 4, 5)):  # two controllers on seed 4, one on seed 5
        faults.start_episode(copy, "eval", index)
    true = torch.full((3, scenario.network.num_lanes), 5.0)
    seen = faults.apply("lane_count", true, torch.tensor([30, 30, 30]), missing=float("nan"))
    assert torch.equal(torch.nan_to_num(seen[0], -1.0), torch.nan_to_num(seen[1], -1.0))
    assert not torch.equal(torch.nan_to_num(seen[0], -1.0), torch.nan_to_num(seen[2], -1.0))
