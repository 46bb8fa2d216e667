"""The evaluation's figures are what evaluation.md defines, each checked against a reference that
does not share the hub's code path: delay (entry wait included) and throughput per trip from the
engine state, the percentiles against numpy's, the 95% interval's width against the normal
approximation, and the degradation table's sign."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.classical import FixedTime
from envs.engine import Simulator
from envs.evaluation.discharge import EAST_OUT, STRAIGHT_EW, WEST_IN
from envs.evaluation.metrics import episode_metrics, masked_quantile, population
from envs.evaluation.report import PRIMARY, degradation_table
from envs.evaluation.stats import bootstrap_mean
from tests.scenarios import single_route


def _reference(sim, trips: int) -> tuple[float, int, int]:
    """(mean delay, finished, waiting) over the departed trips, per trip from the engine state."""
    state, t = sim.state, int(sim.state.t[0])
    depart = sim.demand.per_copy(sim.demand.depart)[0, :trips].tolist()
    slot_of = {int(state.veh_trip[0, s]): s for s in range(state.veh_lane.shape[1] - 1) if state.veh_lane[0, s] >= 0}
    delays, finished, waiting = [], 0, 0
    for trip in (k for k in range(trips) if depart[k] < t):
        enter, finish = int(state.trip_enter[0, trip]), int(state.trip_finish[0, trip])
        if enter < 0:  # never got in: all of its time so far is delay
            delays.append(t - depart[trip])
            waiting += 1
            continue
        in_network = float(state.veh_delay[0, slot_of[trip]]) if trip in slot_of else float(state.trip_delay[0, trip])
        delays.append(enter - depart[trip] + in_network)
        finished += finish >= 0
    return float(np.mean(delays)), finished, waiting


def test_delay_counts_the_entry_wait_and_throughput_counts_finished_trips():
    # 51 departures in the first 50 s onto one route: a queue waits at the origin, then drains
    scenario = single_route([WEST_IN, EAST_OUT], [0] + list(range(0, 50)))
    trips = scenario.trips.num_trips
    sim = Simulator(scenario.network, scenario.demand(1))
    controller = FixedTime()
    for until, seen in ((150, lambda finished, waiting: waiting > 0 and finished > 0),  # some wait, one is done
                        (300, lambda finished, waiting: waiting == 0 and 20 < finished < trips)):
        sim.run(until - int(sim.state.t[0]), controller)
        delay, finished, waiting = _reference(sim, trips)
        assert seen(finished, waiting), (until, finished, waiting)
        metrics = episode_metrics(sim.demand, sim.state)
        assert float(metrics["delay"][0]) == pytest.approx(delay, rel=1e-6)
        assert int(metrics["throughput"][0]) == finished


@pytest.mark.parametrize("size", [1, 2, 7, 100])
def test_percentiles_are_numpys_linear_interpolation(size):
    gen = torch.Generator().manual_seed(size)
    values = torch.rand(3, 120, generator=gen) * 500
    mask = torch.zeros(3, 120, dtype=torch.bool)
    for row in range(3):
        mask[row, torch.randperm(120, generator=gen)[:size]] = True
    for q in (0.5, 0.9, 0.95):
        got = masked_quantile(values, mask, q)
        for row in range(3):
            assert float(got[row]) == pytest.approx(np.quantile(values[row][mask[row]].numpy(), q), rel=1e-5)


def test_the_interval_is_a_95_percent_one():
    values = np.random.default_rng(3).normal(10.0, 2.0, 200)
    estimate = bootstrap_mean(values)
    normal = 2 * 1.96 * values.std(ddof=1) / np.sqrt(values.size)  # the normal approximation's width
    assert estimate.high - estimate.low == pytest.approx(normal, rel=0.08)
    assert estimate.low < values.mean() < estimate.high


def test_the_degradation_is_perturbed_minus_clean_in_percent_of_clean():
    def rows(travel, throughput):
        return [{"controller": "sotl", "seed": k, PRIMARY: travel[k], "throughput": throughput[k]} for k in range(2)]

    table = degradation_table(rows([100.0, 100.0], [50.0, 50.0]), rows([110.0, 120.0], [40.0, 45.0]), ["sotl"], 2)
    cells = [cell.strip() for cell in table.splitlines()[2].split("|")[1:-1]]
    assert cells[0] == "sotl" and cells[1:3] == ["100.0", "115.0"]
    assert cells[3].startswith("15.0 [")  # slower under the perturbation: +
    assert cells[4:6] == ["50", "42"] and cells[6].startswith("-15.0 [")  # fewer trips: -


def test_travel_time_is_delay_plus_one_entry_second_plus_the_distance_at_the_speed_limit():
    # the leaderboard's "free-flow part" (travel time - delay) and its "largest possible reduction"
    # rest on this split: one trip alone on a green 300 m + 40 m + 300 m route at 11.111 m/s
    scenario = single_route([WEST_IN, EAST_OUT], [5])
    sim = Simulator(scenario.network, scenario.demand(1))
    for _ in range(120):
        sim.step(torch.tensor([[STRAIGHT_EW]]))
    assert int(sim.state.trip_finish[0, 0]) >= 0
    metrics = episode_metrics(sim.demand, sim.state)
    free_flow = float(metrics["travel_time/mean"][0] - metrics["delay"][0])
    at_limit = (300.0 + 40.0 + 300.0) / 11.111
    # the second it enters (placed at rest, no distance, no delay), then the route at the limit,
    # its last step counted whole (the trip ends at the step's end, past the end of the road)
    assert 1.0 + at_limit <= free_flow < 2.0 + at_limit
    assert float(metrics["delay"][0]) == pytest.approx(11.111 / (2 * 2.0), abs=0.1)  # the start: v / (2 a)


def test_per_trip_travel_minus_delay_is_zero_while_waiting_and_at_least_the_entry_second_once_in():
    scenario = single_route([WEST_IN, EAST_OUT], [k // 3 for k in range(240)])  # more than the road admits
    sim = Simulator(scenario.network, scenario.demand(1))
    sim.run(100, FixedTime())
    pop = population(sim.demand, sim.state)
    departed, gap = pop["departed"][0], (pop["travel"] - pop["delay"])[0]
    trips = sim.demand.max_trips
    entered = sim.state.trip_enter[0, :trips] >= 0
    finish = sim.state.trip_finish[0, :trips]
    end = torch.where(finish >= 0, finish, sim.state.t[0])
    waiting, inside = departed & ~entered, departed & entered
    assert waiting.any() and inside.any()
    assert torch.equal(gap[waiting], torch.zeros(int(waiting.sum())))  # its whole time so far is delay
    assert (gap[inside] >= 1.0 - 1e-4).all()  # the entry second: neither delay nor distance
    assert (gap[inside] <= (end - sim.state.trip_enter[0, :trips])[inside] + 1e-4).all()  # at most its time inside
