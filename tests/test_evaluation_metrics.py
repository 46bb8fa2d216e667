"""The metrics hub against references that read the engine state trip by trip and second by
second (docs/evaluation.md, Metrics): travel times counting unfinished and never-entered trips,
the named percentiles, the finished-only mean, the time-averaged queues, and NaN without trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.engine import Simulator
from envs.evaluation.discharge import EAST_OUT, STRAIGHT_EW, STRAIGHT_NS, WEST_IN, timed_rate
from envs.evaluation.metrics import episode_metrics
from tests.scenarios import single_route


def _travel(sim) -> tuple[np.ndarray, np.ndarray]:
    """Per departed trip: (finish or t) - depart, and whether it finished."""
    state, t = sim.state, int(sim.state.t[0])
    trips = sim.demand.max_trips
    depart = sim.demand.per_copy(sim.demand.depart)[0, :trips].numpy()
    finish = state.trip_finish[0, :trips].numpy()
    departed = depart < t
    done = finish >= 0
    return np.where(done, finish - depart, t - depart)[departed].astype(float), done[departed]


def test_travel_times_count_unfinished_and_waiting_trips_and_the_queues_are_time_averages():
    # 80 departures in 40 s on one approach, red for the first 60 s, then green: at 120 s some
    # trips are done, some in the network and some still waiting at the origin
    scenario = single_route([WEST_IN, EAST_OUT], [k // 2 for k in range(80)])
    sim = Simulator(scenario.network, scenario.demand(1))
    depart = sim.demand.per_copy(sim.demand.depart)[0, : sim.demand.max_trips].numpy()
    halting, waiting, stops, was_halted = [], [], np.zeros(len(depart)), {}
    for k in range(120):
        sim.step(torch.tensor([[STRAIGHT_NS if k < 60 else STRAIGHT_EW]]))
        state, t = sim.state, k + 1
        halting.append(int((state.veh_halted[0, :-1] & (state.veh_lane[0, :-1] >= 0)).sum()))
        now = {int(state.veh_trip[0, s]): bool(state.veh_halted[0, s])
               for s in range(state.veh_lane.shape[1] - 1) if state.veh_lane[0, s] >= 0}
        for trip, halted in now.items():  # moving -> halting; entering at rest is not a stop
            stops[trip] += halted and was_halted.get(trip) is False
        was_halted = now
        waiting.append(int(((depart < t) & (state.trip_enter[0, : len(depart)].numpy() < 0)).sum()))
    travel, done = _travel(sim)
    assert 0 < done.sum() < done.size and waiting[-1] > 0 and max(halting) > 0
    got = {name: float(value[0]) for name, value in episode_metrics(sim.demand, sim.state).items()}
    assert got["travel_time/mean"] == pytest.approx(travel.mean(), rel=1e-6)
    assert got["travel_time/finished_mean"] == pytest.approx(travel[done].mean(), rel=1e-6)
    assert travel[done].mean() != pytest.approx(travel.mean())  # the two means differ here
    for name, q in (("travel_time/p50", 0.5), ("travel_time/p90", 0.9), ("travel_time/p95", 0.95)):
        assert got[name] == pytest.approx(np.quantile(travel, q), rel=1e-6), name
    assert got["throughput"] == done.sum() and got["vehicles/departed"] == travel.size
    assert got["stops"] == pytest.approx(stops[depart < 120].mean(), rel=1e-6) and stops.max() > 0
    assert got["queue/halting"] == pytest.approx(np.mean(halting), rel=1e-6)
    assert got["queue/halting_now"] == halting[-1]
    assert got["entry_queue"] == pytest.approx(np.mean(waiting), rel=1e-6)
    assert got["entry_queue_now"] == got["vehicles/waiting"] == waiting[-1]


def test_before_any_trip_departs_the_means_are_nan_and_the_counts_zero():
    scenario = single_route([WEST_IN, EAST_OUT], [50, 60])
    sim = Simulator(scenario.network, scenario.demand(1))
    sim.step(torch.tensor([[STRAIGHT_EW]]))
    got = {name: float(value[0]) for name, value in episode_metrics(sim.demand, sim.state).items()}
    for name in ("travel_time/mean", "travel_time/finished_mean", "travel_time/p95", "delay", "stops"):
        assert np.isnan(got[name]), name  # no departed trip: no value, rather than a 0 s that looks perfect
    assert got["throughput"] == got["vehicles/departed"] == got["queue/halting"] == 0.0


def test_the_saturation_flow_is_timed_from_the_4th_to_the_64th_crossing():
    # one crossing every 2 s: the 4th at 8 s, the 64th at 128 s, 60 vehicles in 120 s = 1800 veh/h
    assert timed_rate(np.arange(200) // 2) == pytest.approx(1800.0)
    # a slow start (the first four take 20 s) is left out: still 1800 veh/h after it
    assert timed_rate(np.concatenate([np.repeat(np.arange(4), 5), 4 + np.arange(200) // 2])) == pytest.approx(1800.0)
