"""The engine on the real CityFlow datasets (run under CI=true; skipped without the data)."""

from __future__ import annotations

import pytest
import torch

from agents.classical import FixedTime, MaxPressure
from envs.engine import Simulator
from envs.evaluation.metrics import episode_metrics
from envs.evaluation.mixture import ControllerMix
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
    # the dataset's own trips twice: fixed time drives copy 0, max pressure copy 1 (one batched run)
    sim = Simulator(scenario.network, scenario.demand(2))
    sim.run(3600, ControllerMix([FixedTime(), MaxPressure()], torch.tensor([0, 1])))
    metrics = episode_metrics(sim.demand, sim.state)
    fixed_time, max_pressure = metrics["travel_time/mean"].tolist()
    assert metrics["sim/pool_blocked"].tolist() == [0, 0]
    assert max_pressure < 0.8 * fixed_time, (fixed_time, max_pressure)


def _lights(scenario, controller, params, seconds: int):
    """Per second, the green and yellow movement masks ``[2, T, M + 1]`` of copy 0, as each step shows them."""
    from envs.engine.signals import switch_signals

    sim = Simulator(scenario.network, scenario.demand(1), params=params)
    controller.reset(sim)
    shown = []
    for _ in range(seconds):
        command = controller.act(sim)
        signals = switch_signals(sim.network, sim.params, sim.state, command)
        shown.append(torch.stack([signals.green[0], signals.yellow[0]])[:, None])
        sim.step(command)
    return torch.cat(shown, 1)


def test_fixed_time_gives_each_written_phase_its_green_and_shows_the_plans_lights(datasets_dir, monkeypatch):
    from agents.classical import fixed_time
    from envs.engine.state import EngineParams

    scenario = load_scenario("hangzhou_4x4", data_dir=datasets_dir)
    net = scenario.network
    assert not bool(net.signal_phase[0, 0]) and float(net.phase_duration[0, 0]) == 5.0  # the transition phase 0
    # phase 1's own movements (not green in the transition) are green 30 s per 245 s cycle, as written;
    # commanding phase 0 let the engine's 5 s minimum green hold it and gave phase 1 only 25 s
    lights = _lights(scenario, FixedTime(), EngineParams(), 1000)
    own = (net.phase_green[0, 1] & ~net.phase_green[0, 0]).nonzero()[:, 0]  # movement slots of intersection 0
    green = lights[0, :, own].all(1).tolist()
    runs = [len(run) for run in "".join("g" if g else "." for g in green).split(".") if run]
    assert runs[:-1] == [30] * (len(runs) - 1) and len(runs) == 5, runs  # the last run may be cut at 1000 s
    # with no intergreen and no minimum green (the CityFlow fidelity runs) the transition is shown
    # for its written 5 s: the lights are the written plan's, second by second, on every intersection
    unhurried = EngineParams(yellow_s=0, all_red_s=0, min_green_s=0)
    as_run = _lights(scenario, FixedTime(), unhurried, 600)
    monkeypatch.setattr(fixed_time, "folded_transitions", lambda green, signal, phases, *rest: phases.clone())
    assert torch.equal(as_run, _lights(scenario, FixedTime(), unhurried, 600))
