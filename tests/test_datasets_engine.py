"""The engine on the real CityFlow datasets (run under CI=true; skipped without the data)."""

from __future__ import annotations

import pytest

from agents.classical import FixedTime, MaxPressure
from envs.engine import Simulator
from envs.evaluation.metrics import episode_metrics
from envs.scenario import load_scenario
from envs.scenario.registry import known_datasets
from tests.engine_checks import run_controller_checked


@pytest.mark.parametrize("name", known_datasets())
def test_every_dataset_compiles_and_keeps_the_invariants(datasets_dir, name):
    scenario = load_scenario(name, data_dir=datasets_dir)
    sim = Simulator(scenario.network, scenario.demand(1))
    run_controller_checked(sim, MaxPressure(), 150)
    assert int((sim.state.veh_lane[:, :-1] >= 0).sum()) > 0


def test_max_pressure_beats_fixed_time_on_hangzhou_4x4(datasets_dir):
    scenario = load_scenario("hangzhou_4x4", data_dir=datasets_dir)
    travel = {}
    for name, controller in (("fixed_time", FixedTime()), ("max_pressure", MaxPressure())):
        sim = Simulator(scenario.network, scenario.demand(1))
        sim.run(3600, controller)
        metrics = episode_metrics(sim.demand, sim.state)
        travel[name] = float(metrics["travel_time/mean"][0])
        assert int(metrics["sim/pool_blocked"][0]) == 0
    assert travel["max_pressure"] < 0.8 * travel["fixed_time"], travel
