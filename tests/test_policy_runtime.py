"""The policy runtime (agents/deploy/runtime.py and the modules it is made of): the timing
rules whatever the model says, and every fail-safe fault, fed JSON messages directly or driven
by the simulator (agents/deploy/simulated.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest

from envs.errors import ConfigError, ModelError
from agents.deploy.runtime import FALLBACK, POLICY, PolicyRuntime
from agents.deploy.simulated import SimulatedRuntime
from envs.engine.intersections import intersection_layout
from envs.engine.simulator import Simulator
from envs.engine.signals import green_elapsed
from envs.evaluation.metrics import episode_metrics
from tests.deploy_fixtures import (
    FakeSession, assert_refused_at_load, edit_metadata, follow, readings_message, simulator, sources, write_sealed,
)
from tests.minimal_scenario import assert_names_everything


@pytest.mark.parametrize("behaviour", ["always_switch", "never_switch"])
def test_min_green_max_green_and_intergreen_hold_whatever_the_model_says(uneven, behaviour):
    scenario, exported = uneven
    _, onnx_path, _ = exported["shared"]
    count = {"n": 0}

    def choose(feed):
        count["n"] += 1
        phase = feed["phase"]
        if behaviour == "never_switch":  # keep whatever runs (an action index where it is one)
            return np.where(phase < 3, phase, 0)
        return (phase + 1 + count["n"]) % 3  # a different action almost every time

    deployed = SimulatedRuntime(str(onnx_path))
    # the engine's own 5 s minimum green is off: the runtime's rule (the export's 5 s) is what holds
    sim = simulator(scenario, 2, 1800)
    sim = Simulator(sim.network, sim.demand, replace(sim.params, min_green_s=0))
    deployed.reset(sim)
    for c in deployed.runtimes:
        c.session = FakeSession(choose)
    greens = []  # the green each phase had shown when it was ended
    for _ in range(1800):
        before = sim.state
        elapsed = green_elapsed(sim.network, sim.params, before)
        sim.step(deployed.act(sim))
        switched = sim.state.phase != before.phase
        greens += elapsed[switched & (before.t.unsqueeze(1) > 0)].tolist()
    assert greens, "the runtime never changed phase"
    assert min(greens) >= 5  # min green
    assert max(greens) <= 20  # max green (20 s in this export)
    assert {s for d in deployed.decisions for c in d for s in c.source} == {POLICY}
    # every change the replies announce carries the engine's yellow + all-red for that pair
    removes = sim.network.phase_removes_green
    changes = 0
    for before, after in zip(deployed.decisions, deployed.decisions[1:]):
        for b, a in zip(before, after):
            for i in np.flatnonzero(a.phase != b.phase):
                clears = bool(removes[i, b.phase[i], a.phase[i]])
                assert (a.yellow_s[i], a.all_red_s[i]) == ((3.0, 2.0) if clears else (0.0, 0.0))
                changes += 1
    assert changes > 0


@pytest.mark.parametrize("damage, fault", [
    ("missing", "unreadable"),
    ("opset", "opset"),
    ("shape", "shape"),
    ("outputs", "outputs"),
])
def test_a_bad_model_file_puts_every_intersection_on_the_fixed_time_plan(model_copy, damage, fault, caplog):
    onnx_path, meta_path = model_copy
    meta = json.loads(meta_path.read_text())
    if damage == "missing":
        onnx_path.unlink()
    elif damage == "opset":
        meta["model"]["opset"] = 17
    elif damage == "shape":
        meta["model"]["inputs"]["lane_count"]["shape"] = ["batch", 99]
    elif damage == "outputs":
        del meta["model"]["outputs"]["logits"]
    write_sealed(meta_path, meta)  # the metadata as exported with this model entry: only the model differs
    with caplog.at_level(logging.WARNING, logger="gridlight.runtime"):
        runtime = PolicyRuntime(onnx_path, meta_path)
        reply = runtime.decide(readings_message(runtime, 0.0))
    assert runtime.session is None and fault in runtime.model_fault
    assert set(sources(reply)) == {FALLBACK}
    assert any(fault in f for f in reply["faults"])
    assert any(fault in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    # the fallback runs the fixed-time plan: phases advance through the plan over time
    message, seen = readings_message(runtime, 0.0), set()
    for _ in range(30):
        reply = runtime.decide(message)
        seen.update(c["phase"] for c in reply["commands"].values())
        message = follow(runtime, message, reply, 10.0)
    assert seen == {0, 1, 2, 3}


def test_missing_metadata_is_an_error_naming_the_file(model_copy):
    onnx_path, meta_path = model_copy
    meta_path.unlink()
    with pytest.raises(ModelError, match="no such metadata file") as refused:
        PolicyRuntime(onnx_path)
    assert_names_everything(refused.value, str(meta_path), "metadata", str(meta_path))
    meta_path.write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON") as refused:
        PolicyRuntime(onnx_path)
    assert_names_everything(refused.value, str(meta_path), "metadata", str(meta_path))


def test_a_mistyped_model_path_is_named_not_the_metadata_derived_from_it(tmp_path):
    typo = tmp_path / "lats.onnx"
    with pytest.raises(ModelError) as caught:
        PolicyRuntime(typo)
    assert str(caught.value).startswith(f"{typo}: field 'model' = '{typo}': no such ONNX model file")


def _first(meta: dict) -> dict:
    return meta["intersections"][0]


@pytest.mark.parametrize("edit, field, value", [
    (lambda m: m["timing"].update(min_green_s=-5), "timing.min_green_s", -5),
    (lambda m: m["timing"].update(max_green_s=float("nan")), "timing.max_green_s", float("nan")),
    (lambda m: m["timing"].update(decision_interval_s=0), "timing.decision_interval_s", 0),
    (lambda m: m["timing"].update(min_green_s="5"), "timing.min_green_s", "5"),
    (lambda m: m["timing"].update(yellow_s=True), "timing.yellow_s", True),
    (lambda m: m["timing"].update(min_green_s=50, max_green_s=20), "timing.max_green_s", 20),
    # the fail-safe must keep max green too: a 600 s or NaN plan green ran phases for 400 s
    (lambda m: _first(m)["fallback_plan"][1].update(green_s=600), "intersections[0].fallback_plan[1].green_s", 600),
    (lambda m: _first(m)["fallback_plan"][0].update(green_s=float("nan")),
     "intersections[0].fallback_plan[0].green_s", float("nan")),
    (lambda m: _first(m)["fallback_plan"][0].update(green_s=0), "intersections[0].fallback_plan[0].green_s", 0),
    (lambda m: _first(m)["actions"].__setitem__(0, -3), "intersections[0].actions[0]", -3),
    (lambda m: _first(m)["actions"].__setitem__(1, -1), "intersections[0].actions[1]", -1),
    (lambda m: _first(m)["actions"].__setitem__(0, 1.5), "intersections[0].actions[0]", 1.5),
    (lambda m: _first(m)["fallback_plan"][0].update(phase=-2), "intersections[0].fallback_plan[0].phase", -2),
    # no action (what the exporter wrote for a junction of right turns alone before it had one): was named
    # only as an empty fallback plan
    (lambda m: _first(m).update(actions=[], fallback_plan=[]), "intersections[0].actions", []),
    (lambda m: _first(m).update(lane_max_vehicles=[-1.0] * len(_first(m)["in_lanes"])),
     "intersections[0].lane_max_vehicles[0]", -1.0),
    # tables that do not match the readings: every message was a numpy broadcast error
    (lambda m: _first(m).update(lane_max_vehicles=[42.0] * 3), "intersections[0].lane_max_vehicles", [42.0] * 3),
    (lambda m: m["observation"].update(max_lanes=3), "observation.max_lanes", 3),
    # an edited action list: action 1 commanded phase 0 again
    (lambda m: _first(m)["actions"].__setitem__(1, 0), "intersections[0].actions[1]", 0),
    # narrower than the model's action head (4): every choice past the list's end was a fault
    (lambda m: [entry.update(actions=[0, 1]) for entry in m["intersections"]], "intersections[0].actions", [0, 1]),
    # features the model was not built for, where what is stored shows it (inputs, widths)
    (lambda m: m["observation"]["features"][2].update(size=8), "observation.features[2].size", 8),
    (lambda m: m["observation"]["features"][0].update(name="pressure"), "observation.features[0].name", "pressure"),
    (lambda m: m["observation"]["features"].append({"name": "approach_moving", "size": 12}), "observation.features",
     ["phase_onehot", "time_in_phase", "lane_count", "lane_halting", "intersection_id", "approach_moving"]),
])
def test_metadata_values_the_timing_rules_cannot_keep_are_refused_at_load(model_copy, edit, field, value):
    edit_metadata(model_copy, edit)
    assert_refused_at_load(model_copy, field, value)


@pytest.mark.parametrize("bad, fault", [
    (lambda e: e.pop("lane_count"), "lane_count: expected a list"),
    (lambda e: e.update(lane_count=e["lane_count"][:-1]), "lane_count: expected a list"),
    (lambda e: e.update(lane_halting=[float("nan")] * len(e["lane_halting"])), "NaN"),
    (lambda e: e.update(lane_count=[-1.0] * len(e["lane_count"])), "negative"),
    (lambda e: e.update(lane_count=[1e6] * len(e["lane_count"])), "above the lane's capacity"),
    (lambda e: e.update(lane_halting=[5.0] * len(e["lane_halting"])), "more halting"),
    (lambda e: e.update(phase=17), "phase: 17"),
    (lambda e: e.update(phase="green"), "phase: expected a number"),
    (lambda e: e.update(time_in_phase=float("nan")), "time_in_phase"),
    (lambda e: e.clear(), "lane_count"),
])
def test_bad_readings_fall_back_for_that_intersection_only_and_recover(model_copy, bad, fault, caplog):
    runtime = PolicyRuntime(*model_copy)
    first = readings_message(runtime, 0.0)
    reply = runtime.decide(first)
    assert set(sources(reply)) == {POLICY}
    message = follow(runtime, first, reply, 10.0)
    broken = json.loads(json.dumps(message))
    victim = runtime.layout.ids[1]
    bad(broken["intersections"][victim])
    with caplog.at_level(logging.INFO, logger="gridlight.runtime"):
        reply = runtime.decide(broken)
        assert reply["commands"][victim]["source"] == FALLBACK
        assert any(fault in f for f in reply["commands"][victim]["faults"]), reply["commands"][victim]
        others = [c["source"] for k, c in reply["commands"].items() if k != victim]
        assert set(others) == {POLICY}
        reply = runtime.decide(follow(runtime, message, reply, 10.0))  # good again
        assert reply["commands"][victim]["source"] == POLICY
    messages = [r.getMessage() for r in caplog.records]
    assert any("fail-safe at " + victim in m for m in messages)
    assert any(victim + " back on the policy" in m for m in messages)


def test_a_bad_lane_reading_is_named_by_its_lane_and_value_even_past_the_eighth_lane(model_copy):
    runtime = PolicyRuntime(*model_copy)
    k = int(np.argmax(runtime.layout.num_lanes))
    victim, lanes = runtime.layout.ids[k], int(runtime.layout.num_lanes[k])
    assert lanes > 8  # the message lists 8 values: the last lane's was never shown
    message = readings_message(runtime, 0.0)
    message["intersections"][victim]["lane_count"][-1] = 1e6
    fault = runtime.decide(message)["commands"][victim]["faults"][0]
    capacity = float(runtime.layout.lane_max[k, lanes - 1])
    assert fault.startswith(f"lane_count: above the lane's capacity at lane {lanes - 1} (1e+06, capacity {capacity:g};")


def test_missing_intersection_falls_back_and_unknown_ids_are_reported(model_copy):
    runtime = PolicyRuntime(*model_copy)
    message = readings_message(runtime, 0.0)
    victim = runtime.layout.ids[2]
    del message["intersections"][victim]
    message["intersections"]["nowhere"] = {}
    reply = runtime.decide(message)
    assert reply["commands"][victim]["source"] == FALLBACK
    assert reply["commands"][victim]["faults"] == ["readings missing"]
    assert any("nowhere" in f for f in reply["faults"])


def test_a_signal_that_did_not_follow_the_command_is_a_fault(model_copy):
    runtime = PolicyRuntime(*model_copy)
    message = readings_message(runtime, 0.0)
    reply = runtime.decide(message)
    nxt = follow(runtime, message, reply, 10.0)
    victim = runtime.layout.ids[0]
    nxt["intersections"][victim]["time_in_phase"] += 7.0  # the signal's clock disagrees
    reply = runtime.decide(nxt)
    assert reply["commands"][victim]["source"] == FALLBACK
    assert "controller commanded" in reply["commands"][victim]["faults"][0]


def test_a_signal_the_runtime_has_never_seen_gets_the_full_clearance(model_copy):
    runtime = PolicyRuntime(*model_copy)
    message = readings_message(runtime, 0.0)
    victim = runtime.layout.ids[0]
    del message["intersections"][victim]  # its phase is unknown
    command = runtime.decide(message)["commands"][victim]
    assert command["source"] == FALLBACK and (command["yellow_s"], command["all_red_s"]) == (3.0, 2.0)
    k = runtime.layout.index[victim]
    assert runtime.signals.prev_phase[k] == -1 and runtime.signals.known[k]


def test_a_bad_detector_reading_does_not_hide_the_signals_own_phase_min_green_holds(model_copy):
    """First decision, one intersection's lane counts missing but its phase and time in phase
    valid (3 s into a phase): the fallback plan must not cut that phase before min green. The
    runtime once learnt the phase only from all-good readings, took it as unknown (no min green)
    and switched away at once, inside the phase's own intergreen."""
    runtime = PolicyRuntime(*model_copy)
    victim = runtime.layout.ids[1]
    k = runtime.layout.index[victim]
    shown = int(runtime.layout.actions[k, 1])  # a phase the fixed-time plan does not start on
    message = readings_message(runtime, 0.0, tip=3.0)
    message["intersections"][victim]["phase"] = shown
    del message["intersections"][victim]["lane_count"]
    command = runtime.decide(message)["commands"][victim]
    assert command["source"] == FALLBACK and any("lane_count" in f for f in command["faults"])
    timing = runtime.timing
    # kept, or changed only once min green has passed after the (assumed) intergreen; before: phase 0 at once
    wait = timing.min_green_s + timing.intergreen_s - 3.0
    assert command["phase"] == shown or command["switch_in_s"] >= wait, command
    assert runtime.signals.known[k] and runtime.signals.cur_phase[k] == shown


@pytest.mark.parametrize("session, fault", [
    (FakeSession(error="boom"), "inference failed: boom"),
    (FakeSession(choose=lambda feed: np.full(len(feed["phase"]), 9)), "outside the intersections' actions"),
    # one past intersection 0's last action (it has 3), and one action for every row: both outside
    (FakeSession(choose=lambda feed: np.where(feed["intersection"] == 0, 3, 0)), "outside the intersections' actions"),
    (FakeSession(choose=lambda feed: np.zeros(1, dtype=np.int64)), "outside the intersections' actions"),
    (FakeSession(choose=lambda feed: np.zeros(len(feed["phase"]), dtype=np.int64), sleep_s=0.03), "deadline"),
])
def test_inference_errors_bad_outputs_and_deadline_overruns_fall_back_then_recover(model_copy, session, fault):
    runtime = PolicyRuntime(*model_copy, deadline_ms=10.0)
    real = runtime.session
    runtime.session = session
    message = readings_message(runtime, 0.0)
    reply = runtime.decide(message)
    assert set(sources(reply)) == {FALLBACK}
    assert any(fault in f for f in reply["faults"]), reply["faults"]
    # and in each intersection's own faults: the reply names why every one of them fell back
    assert all(any(fault in f for f in c["faults"]) for c in reply["commands"].values()), reply["commands"]
    runtime.session = real
    reply = runtime.decide(follow(runtime, message, reply, 10.0))
    assert set(sources(reply)) == {POLICY}


@pytest.mark.parametrize("deadline_ms", [float("nan"), float("inf"), -5.0, 0, True, "50"])
def test_a_deadline_that_is_not_a_finite_number_above_0_is_refused(model_copy, deadline_ms):
    """Called directly (the service checks --deadline-ms itself): NaN turned the deadline off."""
    with pytest.raises(ConfigError) as caught:
        PolicyRuntime(*model_copy, deadline_ms=deadline_ms)
    assert str(caught.value).startswith(f"<config>: field 'deadline_ms' = {deadline_ms!r}: ")
    runtime = PolicyRuntime(*model_copy, deadline_ms=None)  # None: no deadline, as documented
    runtime.session = FakeSession(choose=lambda feed: np.zeros(len(feed["phase"]), dtype=np.int64), sleep_s=0.03)
    assert set(sources(runtime.decide(readings_message(runtime, 0.0)))) == {POLICY}


def test_dead_detectors_in_the_simulator_fall_back_then_return_to_the_policy(uneven):
    """Faults injected into the readings of one intersection from 600 s to 1200 s."""
    scenario, exported = uneven
    _, onnx_path, _ = exported["shared"]

    def dead_detector(t, readings):
        if 600 <= t < 1200:
            readings = {k: v.copy() for k, v in readings.items()}
            readings["lane_count"][2, :] = np.nan
        return readings

    deployed = SimulatedRuntime(str(onnx_path), faults=dead_detector)
    sim = simulator(scenario, 2, 1800)
    sim.run(1800, deployed)
    by_time = [(int(d[0].t), d[0].source[2], d[0].source[1]) for d in deployed.decisions]
    assert all(src == (FALLBACK if 600 <= t < 1200 else POLICY) for t, src, _ in by_time)
    assert all(other == POLICY for *_, other in by_time)
    assert float(episode_metrics(sim.demand, sim.state)["throughput"].min()) > 0


def test_dead_detectors_from_the_fault_model_put_exactly_their_intersections_on_the_fallback(uneven):
    from envs.incidents.perturbations import DetectorFaults, DetectorFaultSpec, Perturbation

    scenario, exported = uneven
    _, onnx_path, _ = exported["shared"]
    perturbation = Perturbation(seed=0, detectors=DetectorFaultSpec(dead_p=0.5))
    faults = DetectorFaults(perturbation, scenario.network, intersection_layout(scenario.network).in_lanes, 2)
    for copy in range(2):
        faults.start_episode(copy, "eval", copy)
    deployed = SimulatedRuntime(str(onnx_path))
    deployed.detectors = faults
    sim = simulator(scenario, 2, 900)
    sim.run(900, deployed)
    dead = [set(faults.lane_owner[faults.dead[c]].tolist()) for c in range(2)]
    assert any(dead) and not all(len(d) == 4 for d in dead)
    for decision in deployed.decisions:
        for copy, made in enumerate(decision):
            for i, source in enumerate(made.source):
                assert source == (FALLBACK if i in dead[copy] else POLICY)
    assert float(episode_metrics(sim.demand, sim.state)["throughput"].min()) > 0  # traffic kept moving


def test_a_lasting_fault_is_logged_and_counted_once_when_it_starts_not_at_every_decision(model_copy, caplog):
    # "Every fault is logged on stderr when it starts and when it clears": a detector stuck for
    # three decisions is one warning and one start in fault_counts, not three
    runtime = PolicyRuntime(*model_copy)
    victim = runtime.layout.ids[1]
    message = readings_message(runtime, 0.0)
    reply = None
    with caplog.at_level(logging.INFO, logger="gridlight.runtime"):
        for _ in range(3):
            message = follow(runtime, message, reply, 10.0) if reply else message
            message["intersections"][victim]["lane_count"][0] = -1.0
            reply = runtime.decide(message)
            assert reply["commands"][victim]["source"] == FALLBACK
    started = [r for r in caplog.records if r.getMessage().startswith(f"fail-safe at {victim}: lane_count")]
    assert len(started) == 1 and runtime.fault_counts == {"lane_count": 1}


def test_a_signal_still_on_its_old_phase_is_a_fault_even_with_the_expected_time(model_copy):
    # commanded phase b at t = 0, the signal reports phase a for 5 s at t = 5: the time is what the
    # runtime expects, the phase is not, so the signal did not do what it was told
    runtime = PolicyRuntime(*model_copy)
    runtime.session = FakeSession(choose=lambda feed: np.ones(len(feed["phase"]), dtype=np.int64))
    victim = runtime.layout.ids[1]
    a, b = (int(p) for p in runtime.layout.actions[1, :2])
    message = readings_message(runtime, 0.0, tip=100.0)
    reply = runtime.decide(message)
    assert reply["commands"][victim]["phase"] == b and reply["commands"][victim]["switch_in_s"] == 0.0
    message = follow(runtime, message, reply, 5.0)
    message["intersections"][victim]["phase"] = a
    command = runtime.decide(message)["commands"][victim]
    assert command["source"] == FALLBACK
    assert command["faults"] == [f"signal reports phase {a} for 5 s; the controller commanded phase {b} 5 s ago; "
                                 f"phase {a} taken as just started: commanded as a change from phase {b} once its "
                                 f"min green is over, with the longest clearance into phase {a} (the reading may be "
                                 "wrong)"]
