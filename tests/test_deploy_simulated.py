"""The simulated field device (agents/deploy/simulated.py): the readings it takes from the
simulator through faulty detectors, the copies it decides for, and what a reset starts afresh."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.classical import FixedTime
from agents.deploy.runtime import FALLBACK, POLICY
from agents.deploy.simulated import SimulatedRuntime, sim_readings
from envs.engine.intersections import intersection_layout
from envs.errors import ConfigError, ModelError
from envs.evaluation.mixture import ControllerMix
from envs.incidents.perturbations import DetectorFaults, DetectorFaultSpec, Perturbation
from tests.deploy_fixtures import FakeSession, edit_metadata, simulator
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import small_grid
from tests.test_runtime_timing import ended_greens


def sources(deployed: SimulatedRuntime) -> set[str]:
    return {s for decision in deployed.decisions for made in decision for s in made.source}


def test_noisy_detectors_read_whole_vehicles_within_each_lane_and_a_dead_one_reads_missing(uneven):
    """Noise far above what a lane holds: each counter is clipped to its lane's capacity and no
    lane reads more halting vehicles than vehicles, so the runtime finds nothing out of range
    and stays on the policy; a dead intersection's readings are missing (its fail-safe)."""
    scenario, exported = uneven
    spec = DetectorFaultSpec(noise_std=40.0, dead_p=0.5)
    faults = DetectorFaults(Perturbation(seed=0, detectors=spec), scenario.network,
                            intersection_layout(scenario.network).in_lanes, 1)
    faults.start_episode(0, "eval", 0)
    dead = set(faults.lane_owner[faults.dead[0]].tolist())
    assert dead and len(dead) < 4
    deployed = SimulatedRuntime(str(exported["shared"][1]))
    deployed.detectors = faults
    sim = simulator(scenario, 1, 300)
    sim.run(300, deployed)
    capacity = deployed.runtimes[0].layout.lane_max
    clipped = 0
    for decision in deployed.decisions:
        for i, source in enumerate(decision[0].source):
            assert source == (FALLBACK if i in dead else POLICY), (decision[0].t, i, decision[0].faults[i])
    assert len(deployed.decisions) == 60
    # the readings of the last decision, through the same faults: the ceiling was reached
    readings = sim_readings(sim, deployed.in_lanes, faults, deployed.lane_capacity, deployed.lane_readings)
    for i in range(4):
        count, halting = readings["lane_count"][0, i], readings["lane_halting"][0, i]
        if i in dead:
            assert np.isnan(count).all() and np.isnan(halting).all()
            continue
        clipped += int(((count == capacity[i]) & (capacity[i] > 0)).sum())
        assert (count <= capacity[i]).all() and (halting <= count).all()
        assert (count == np.round(count)).all()
    assert clipped > 0  # noise this large reaches the ceiling somewhere


def test_it_decides_only_for_the_copies_it_owns_in_a_mix(uneven):
    """evaluate.py runs it beside other controllers on one batch: the copies another controller
    drives are not its own (their signals would disagree with what it commanded)."""
    scenario, exported = uneven
    deployed = SimulatedRuntime(str(exported["shared"][1]))
    mix = ControllerMix([FixedTime(), deployed], torch.tensor([0, 1, 1]))
    sim = simulator(scenario, 3, 300)
    sim.run(300, mix)
    assert len(deployed.decisions) == 60
    assert all(len(made) == 2 for made in deployed.decisions)  # copies 1 and 2, at every decision
    assert sources(deployed) == {POLICY}  # no copy was taken for one with faulty readings


def test_copies_out_of_step_each_decide_on_their_own_clock(uneven):
    """After one copy restarts (`Simulator.reset_copies`) the copies' clocks differ: each copy's
    runtime is told its own time, so each decides at its own multiples of the interval."""
    scenario, exported = uneven
    sim = simulator(scenario, 2, 200)
    sim.run(3)
    sim.reset_copies(torch.tensor([True, False]))  # copy 0 at t = 0, copy 1 at t = 3
    deployed = SimulatedRuntime(str(exported["shared"][1]))
    sim.run(100, deployed)
    times = [int(made.t) for decision in deployed.decisions for made in decision]
    assert all(len(decision) == 1 for decision in deployed.decisions)  # never both at one step
    assert sorted(times) == sorted(list(range(0, 100, 5)) + list(range(5, 105, 5)))
    assert sources(deployed) == {POLICY}


def test_a_reset_starts_a_new_record_of_decisions(uneven):
    scenario, exported = uneven
    deployed = SimulatedRuntime(str(exported["shared"][1]))
    sim = simulator(scenario, 1, 100)
    sim.run(50, deployed)
    assert len(deployed.decisions) == 10
    sim.reset()
    sim.run(20, deployed)
    assert [int(made[0].t) for made in deployed.decisions] == [0, 5, 10, 15]


def test_a_policy_exported_for_other_intersections_is_refused_naming_them(uneven):
    scenario, exported = uneven
    other = small_grid(1, 2, horizon=60)
    deployed = SimulatedRuntime(str(exported["shared"][1]))
    with pytest.raises(ModelError) as caught:
        deployed.reset(simulator(other, 1, 60))
    assert caught.value.field == "intersections"
    assert caught.value.value == list(intersection_layout(other.network).ids)
    assert str(list(intersection_layout(scenario.network).ids)) in str(caught.value)


def test_a_policy_for_another_network_is_refused_before_a_runtime_is_loaded_per_copy(uneven, caplog):
    """The checks read one runtime's metadata: a refused model loads it once, not once per copy
    (`evaluate.py deployed=` on the wrong network printed a "loaded" line per copy first)."""
    deployed = SimulatedRuntime(str(uneven[1]["shared"][1]))
    with caplog.at_level("INFO", logger="gridlight.runtime"), pytest.raises(ModelError):
        deployed.reset(simulator(small_grid(1, 2, horizon=60), 8, 60))
    assert sum("loaded" in record.getMessage() for record in caplog.records) == 1
    assert deployed.runtimes == []


def test_a_max_green_in_half_seconds_ends_greens_without_a_false_signal_fault(uneven, model_copy):
    """export.py takes max_green_s=21.5: the runtime then ends a kept phase at a half second. The
    simulator steps whole seconds; that change must show in the next decision's readings as it
    would in the field (rounded up onto that decision's second it came after them: the runtime
    saw the old phase, called the signal faulty and ran the fail-safe)."""
    edit_metadata(model_copy, lambda meta: meta["timing"].update(max_green_s=21.5))
    deployed = SimulatedRuntime(str(model_copy[0]))
    keep = FakeSession(lambda feed: np.where(feed["phase"] < 3, feed["phase"], 0))  # never switch
    ended = ended_greens(uneven[0], deployed, 600, keep)
    assert sources(deployed) == {POLICY}
    cut = sorted({green for *_, green in ended if green > 5})  # ended by max green, not the first cut
    assert cut and set(cut) <= {21, 22}, cut


def test_a_min_green_in_half_seconds_is_refused_naming_it(uneven, model_copy):
    """Whole-second steps cannot hold a 5.5 s min green: changes start at the second before a
    half second, so the simulator would cut such greens to 5 s; it refuses instead."""
    edit_metadata(model_copy, lambda meta: meta["timing"].update(min_green_s=5.5))
    deployed = SimulatedRuntime(str(model_copy[0]))
    with pytest.raises(ModelError) as caught:
        deployed.reset(simulator(uneven[0], 1, 60))
    assert_names_everything(caught.value, str(model_copy[1]), "timing.min_green_s", 5.5)


def test_a_policy_exported_for_another_network_with_the_same_ids_is_refused_naming_it(uneven):
    """grid_4x4's model on hangzhou_4x4 (the same intersection and lane ids, other phases) ran
    without a fault: it commanded hangzhou's phases by grid_4x4's indices. Here the second
    intersection's phases are reordered: same ids, lanes and action count, other greens."""
    from envs.scenario import scenario_from_dicts
    from tests.scenarios import uneven_grid_dicts

    scenario, exported = uneven
    roadnet, flow, _ = uneven_grid_dicts(60)
    signalised = [x for x in roadnet["intersections"] if not x["virtual"]]
    phases = signalised[1]["trafficLight"]["lightphases"]
    signalised[1]["trafficLight"]["lightphases"] = phases[1:] + phases[:1]
    other = scenario_from_dicts(roadnet, flow, name="reordered")
    assert list(intersection_layout(other.network).ids) == list(intersection_layout(scenario.network).ids)
    _, onnx_path, meta_path = exported["shared"]
    greens = [phase["green_movements"] for phase in json.loads(meta_path.read_text())["intersections"][1]["phases"]]
    deployed = SimulatedRuntime(str(onnx_path))
    with pytest.raises(ModelError) as caught:
        deployed.reset(simulator(other, 1, 60))
    assert_names_everything(caught.value, str(meta_path), "intersections[1].phases", greens)
    deployed.reset(simulator(scenario, 1, 60))  # its own network passes


@pytest.mark.parametrize("rule, value", [("min_green_s", 15), ("yellow_s", 5), ("all_red_s", 0)])
def test_evaluate_refuses_engine_timing_other_than_the_exported_runtimes_naming_the_key(uneven, rule, value):
    """evaluate.py deployed=M engine.min_green_s=15 ran: the engine held greens the runtime (min
    green 5) had ended, and its row was false signal faults and fail-safe (engine.yellow_s=5
    too), where a checkpoint is refused. Its own timing passes, and so does a shorter min green,
    which the runtime's own rule overrides."""
    from agents.lineup import deployed_policies
    from tests.test_evaluate import evaluate_config

    onnx_path = str(uneven[1]["shared"][1])
    with pytest.raises(ConfigError) as caught:
        deployed_policies(evaluate_config(f"deployed={onnx_path}", f"engine.{rule}={value}"), [])
    assert_names_everything(caught.value, onnx_path, f"engine.{rule}", value)
    for same in ("engine.min_green_s=5", "engine.min_green_s=0"):  # the runtime keeps its own min green
        assert list(deployed_policies(evaluate_config(f"deployed={onnx_path}", same), [])) == ["ppo_shared_onnx"]
