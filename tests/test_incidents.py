"""Incidents in the engine (envs/incidents/perturbations.py): closures hold traffic, lane choice
avoids closed lanes, capacity drops slow a lane, the invariants hold under random incidents,
incidents are seeded per copy and split, and traffic placement weights lanes by their traffic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.classical import FixedTime, MaxPressure
from envs.engine import Simulator
from envs.errors import ConfigError
from envs.evaluation.metrics import episode_metrics
from envs.incidents.perturbations import (
    Incident,
    IncidentSpec,
    Perturbation,
    check_incident_lanes,
    lane_traffic,
    sample_incidents,
    with_incidents,
)
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet
from envs.scenario.network import lane_ids
from tests.engine_checks import run_controller_checked
from tests.minimal_scenario import assert_names_everything
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


def test_lane_choice_takes_the_lowest_index_among_equally_free_lanes(corridor):
    """engine.md: a head joins the lane of its next road with the most room, the lowest index on a
    tie, and so does a trip entering the network. The first vehicle enters its origin road, and
    then the middle road, with both straight lanes empty."""
    net = corridor.network
    names = lane_ids(net)
    sim = Simulator(net, corridor.demand(1))
    controller = FixedTime(plan="uniform", cycle_s=10_000)  # the route's green throughout
    controller.reset(sim)
    sim.step(controller.act(sim))
    assert [names[int(lane)] for lane in sim.state.veh_lane[0, :-1] if lane >= 0] == ["road_0_1_0_1"]
    joined = []
    while not joined and int(sim.state.t[0]) < 200:
        sim.step(controller.act(sim))
        joined = [names[int(lane)] for lane in sim.state.veh_lane[0, :-1] if lane >= 0
                  and names[int(lane)].startswith("road_1_1_0_")]
    assert joined == ["road_1_1_0_1"]


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
    # copy 1 runs the same trips with no closure, beside it (copies are independent)
    demand = with_incidents(corridor.demand(2), [incidents, []])
    sim = Simulator(net, demand)
    controller = FixedTime()
    controller.reset(sim)
    on_road = lambda state: set(  # noqa: E731  trips on the closed road
        state.veh_trip[0, :-1][torch.isin(state.veh_lane[0, :-1], torch.tensor(lanes))].tolist())
    queued, left_before = [], 0
    for t in range(3000):
        before = on_road(sim.state)
        sim.step(controller.act(sim))
        if t < 200:  # open until its onset: vehicles cross the stop line as on any lane
            left_before += len(before - on_road(sim.state))
        if 201 <= t < 500:  # the closure is in force for the step from t
            assert before <= on_road(sim.state), f"a vehicle left a closed lane at t={t}"
            queued.append(len(on_road(sim.state)))
    assert left_before > 5
    assert queued[-1] > queued[0] + 5  # the queue grew behind the closure
    after, clean = episode_metrics(sim.demand, sim.state)["travel_time/mean"].tolist()
    assert after > clean
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
    run_controller_checked(sim, MaxPressure(min_green_s=5), 300)


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


def test_the_perturbation_seed_and_each_part_draw_from_their_own_streams():
    from envs.incidents.perturbation_specs import stream_rng

    scenario = small_grid(3, 3, horizon=100)
    spec = IncidentSpec(count=3, start_s=[0, 1000], duration_s=60)
    # the perturbation's seed picks the draws: another seed, other incidents on the same copy
    draws = [sample_incidents(Perturbation(seed=s, incidents=spec), scenario.network, "eval", 0) for s in (3, 4)]
    assert draws[0] != draws[1]
    # incidents, surge and detectors of one copy draw from separate streams, not the same numbers
    perturbation = Perturbation(seed=3, incidents=spec)
    firsts = {part: tuple(stream_rng(perturbation, "eval", 0, part).random(4))
              for part in ("incidents", "surge", "detectors")}
    assert len(set(firsts.values())) == 3


def test_a_single_start_time_starts_every_incident_at_it():
    scenario = small_grid(3, 3, horizon=100)
    spec = Perturbation(seed=3, incidents=IncidentSpec(count=3, start_s=900, duration_s=60))
    assert [(i.start, i.end) for i in sample_incidents(spec, scenario.network, "eval", 2)] == [(900, 960)] * 3


@pytest.mark.parametrize("start_s", [[100.5, 600], [100, 100.7], 900.25])
def test_an_onset_window_of_part_seconds_is_refused_not_cut_to_whole_ones(start_s):
    # onsets are drawn in whole seconds: [100.5, 600] drew onsets from 100 s, before the window,
    # and [100, 100.7] only 100 s, silently
    with pytest.raises(ConfigError, match=r"incidents\.start_s.*whole seconds"):
        IncidentSpec(start_s=start_s)
    assert IncidentSpec(start_s=[100.0, 600.0]).start_s == [100.0, 600.0]  # whole seconds as floats stay fine


def test_a_network_without_signals_is_refused_before_any_draw_naming_the_key_as_typed():
    # one road between two boundaries: no lane ends at a signal. Was refused only when the first copy
    # drew its incidents, as "<perturbation>: field 'incidents.lanes'", after the run had started
    from tests.minimal_scenario import _boundary, _vehicle, make_road

    roadnet = {"intersections": [_boundary("W", -300, 0), _boundary("E", 300, 0)],
               "roads": [make_road("w_e", "W", "E", (-300, 0), (300, 0))]}
    flow = [{"vehicle": _vehicle(), "route": ["w_e"], "interval": 5.0, "startTime": 0, "endTime": 100}]
    network = scenario_from_dicts(roadnet, flow).network
    for at_signals in (False, True):  # evaluate.py's and train.py's check, and the detection task's
        with pytest.raises(ConfigError, match="has no lane ending at a signal") as caught:
            check_incident_lanes(Perturbation(name="incident", incidents=IncidentSpec()), network, "<config>",
                                 at_signals=at_signals)
        assert caught.value.source == "<config>" and caught.value.field == "perturbation.incidents.lanes"
    check_incident_lanes(Perturbation(name="incident", incidents=IncidentSpec(count=0)), network, "<config>")


def test_a_lane_listed_twice_is_refused():
    # the pool held it twice: with count 2 both closures fell on it, overlapping, and the second
    # scored as missed while the lane's one alarm counted for the first
    with pytest.raises(ConfigError, match="listed twice") as refused:
        IncidentSpec(count=2, lanes=["road_0_1_0_0", "road_1_0_1_0", "road_0_1_0_0"])
    assert refused.value.field == "incidents.lanes" and refused.value.value == "road_0_1_0_0"


def test_random_incidents_take_distinct_lanes_while_the_pool_has_enough():
    scenario = small_grid(2, 2, horizon=100)
    pool = IncidentSpec().lane_pool(scenario.network).size
    # as many incidents as lanes that end at a signal: each lane once, none twice
    spec = Perturbation(seed=3, incidents=IncidentSpec(count=int(pool), start_s=[0, 100], duration_s=60))
    lanes = [i.lane for i in sample_incidents(spec, scenario.network, "eval", 0)]
    assert len(lanes) == pool == len(set(lanes))


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
    with pytest.raises(ConfigError, match="incidents.placement") as refused:
        sample_incidents(spec, net, "eval", 0)  # traffic placement needs the copy's trips
    assert_names_everything(refused.value, "<perturbation>", "incidents.placement", "traffic")
    assert "needs the copy's trips" in refused.value.reason


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
