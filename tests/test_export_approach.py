"""Policies that observe the approach counts (``approach_moving``/``approach_halting``: vehicles
within 100 m of the stop line, the best deployable observation of docs/training.md) export and
deploy: the model takes the two extra per-lane readings, its actions equal the torch policy's,
the policy runtime asks messages for them (and only then), and in closed loop the deployed policy
reproduces the in-Python one."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from agents.deploy.export import INPUTS, export_policy
from agents.deploy.readings import BASE_LANE_READINGS, parse_readings
from agents.deploy.runtime import FALLBACK, POLICY, PolicyRuntime
from agents.deploy.service import handle_line, reply_line
from agents.deploy.simulated import SimulatedRuntime
from agents.ppo.policy import PolicyController
from envs.evaluation.metrics import episode_metrics
from tests.deploy_fixtures import (
    OBSERVATIONS, readings_message, recorded_decisions, session_actions, simulator, untrained, write_sealed,
)
from tests.scenarios import uneven_grid

APPROACH = ["approach_moving", "approach_halting"]


@pytest.fixture(scope="module")
def approach_exports(tmp_path_factory):
    """Untrained shared and independent policies observing lane totals and approach counts at 5 s
    decisions, and a shared one observing approach_moving alone: ``{name: (checkpoint, onnx, json)}``."""
    root = tmp_path_factory.mktemp("approach")
    scenario = uneven_grid(horizon=3600)
    out, lane_features, last = {}, OBSERVATIONS[:-1], OBSERVATIONS[-1:]  # intersection_id stays last
    for name, policy, observations in (("shared", "shared", lane_features + APPROACH + last),
                                       ("independent", "independent", lane_features + APPROACH + last),
                                       ("moving_only", "shared", lane_features + APPROACH[:1] + last)):
        checkpoint = untrained(scenario, policy, root / f"{name}.zip", observations=observations,
                               decision_interval_s=5)
        out[name] = (checkpoint, *export_policy(checkpoint, root / name, scenario=scenario, max_green_s=20.0))
    return scenario, out


def test_the_model_and_its_metadata_take_exactly_the_readings_the_policy_observes(approach_exports):
    _, exported = approach_exports
    for name, extra in (("shared", APPROACH), ("moving_only", APPROACH[:1])):
        _, onnx_path, meta_path = exported[name]
        inputs = [i.name for i in onnx.load(str(onnx_path)).graph.input]
        assert inputs == list(INPUTS) + extra
        meta = json.loads(meta_path.read_text())
        assert list(meta["model"]["inputs"]) == inputs
        assert meta["model"]["inputs"]["approach_moving"]["shape"][0] == "batch"
        assert set(meta["observation"]["readings"]) == set(inputs) - {"intersection"}
        assert "100 m" in meta["observation"]["readings"]["approach_moving"]
        assert PolicyRuntime(onnx_path).lane_readings == BASE_LANE_READINGS + tuple(extra)


@pytest.mark.parametrize("policy", ["shared", "independent", "moving_only"])
def test_onnx_actions_equal_torch_with_approach_readings(approach_exports, policy):
    scenario, exported = approach_exports
    checkpoint, onnx_path, _ = exported[policy]
    rows = recorded_decisions(checkpoint, scenario, 16, seconds=900)
    assert rows["action"].size >= 10_000
    assert rows["approach_halting"].max() > 0 and rows["approach_moving"].max() > 0  # the readings vary
    assert len(np.unique(rows["action"])) >= 2
    assert np.array_equal(session_actions(onnx_path, rows), rows["action"])
    # the approach readings matter to the graph: zeroing them changes some actions
    blind = {**rows, "approach_moving": np.zeros_like(rows["approach_moving"]),
             "approach_halting": np.zeros_like(rows["approach_halting"])}
    assert not np.array_equal(session_actions(onnx_path, blind), rows["action"])


def test_closed_loop_runtime_with_approach_readings_reproduces_the_policy(approach_exports):
    scenario, exported = approach_exports
    checkpoint, onnx_path, _ = exported["shared"]
    sims = []
    for controller in (PolicyController(str(checkpoint), max_green_s=20.0), SimulatedRuntime(str(onnx_path))):
        sim = simulator(scenario, 2, 1800)
        controller.reset(sim)
        sim.run(1800, controller)
        sims.append(sim)
    assert torch.equal(sims[0].state.phase, sims[1].state.phase)
    a, b = (episode_metrics(s.demand, s.state)["travel_time/mean"] for s in sims)
    assert torch.equal(a, b)
    assert {s for d in controller.decisions for copy in d for s in copy.source} == {POLICY}


def test_a_message_without_the_approach_readings_falls_back_naming_them(approach_exports):
    _, exported = approach_exports
    runtime = PolicyRuntime(exported["shared"][1])
    message = readings_message(runtime, 0.0)
    assert set(next(iter(message["intersections"].values()))) >= set(APPROACH)
    assert set(c["source"] for c in runtime.decide(message)["commands"].values()) == {POLICY}
    for entry in message["intersections"].values():
        del entry["approach_halting"]
    message["t"] = 5.0
    reply = runtime.decide(message)
    assert set(reply["commands"]) == set(message["intersections"])  # every one answered, none dropped
    for command in reply["commands"].values():
        assert command["source"] == FALLBACK
        assert any(f.startswith("approach_halting: expected a list") for f in command["faults"])


def test_approach_readings_are_range_checked_on_both_paths(approach_exports):
    _, exported = approach_exports
    onnx_path = exported["shared"][1]
    fast, reference = PolicyRuntime(onnx_path), PolicyRuntime(onnx_path)
    message = readings_message(fast, 0.0)
    first = message["intersections"][fast.layout.ids[0]]
    lanes = len(first["approach_moving"])
    first["approach_moving"] = [float(fast.layout.lane_max[0, 0]) + 1] + [0.0] * (lanes - 1)
    second = message["intersections"][fast.layout.ids[1]]
    second["approach_halting"] = [-1.0] * len(second["approach_halting"])
    line = json.dumps(message)
    text = reply_line(fast, line, 1)
    assert text == json.dumps(handle_line(reference, line, 1))
    reply = json.loads(text)["commands"]
    assert reply[fast.layout.ids[0]]["faults"][0].startswith("approach_moving: above the lane's capacity")
    assert reply[fast.layout.ids[1]]["faults"][0].startswith("approach_halting: negative")
    assert all(c["source"] == POLICY for k, c in reply.items() if k not in fast.layout.ids[:2])


def test_whole_message_parse_reads_the_approach_readings_as_the_per_intersection_parse(approach_exports):
    _, exported = approach_exports
    runtime = PolicyRuntime(exported["shared"][1])
    message = readings_message(runtime, 0.0)
    for k, entry in enumerate(message["intersections"].values()):  # a distinct value in every lane
        entry["approach_halting"] = [float(k + j) for j in range(len(entry["approach_halting"]))]
    whole = runtime.whole_message.parse(message["intersections"])
    one_by_one = parse_readings(runtime.layout, runtime.max_lanes, message["intersections"], runtime.lane_readings)
    assert list(whole.lanes) == list(one_by_one.lanes) == list(runtime.lane_readings)
    for name in runtime.lane_readings:
        np.testing.assert_array_equal(whole.lanes[name], one_by_one.lanes[name])
    assert whole.lanes["approach_halting"][1, 2] == 3.0


def test_a_metadata_that_drops_the_approach_features_the_model_takes_is_refused(approach_exports, tmp_path):
    # the approach counts listed exactly when the model takes them: here the model (model.inputs)
    # takes them and the features no longer list them, the other way round from test_policy_runtime's
    from envs.errors import ModelError

    _, onnx_path, meta_path = approach_exports[1]["shared"]
    onnx_copy, meta_copy = tmp_path / "m.onnx", tmp_path / "m.json"
    onnx_copy.write_bytes(onnx_path.read_bytes())
    meta = json.loads(meta_path.read_text())
    meta["observation"]["features"] = [f for f in meta["observation"]["features"] if f["name"] not in APPROACH]
    write_sealed(meta_copy, meta)
    with pytest.raises(ModelError) as caught:
        PolicyRuntime(onnx_copy, meta_copy)
    names = [f["name"] for f in meta["observation"]["features"]]
    assert str(caught.value).startswith(f"{meta_copy}: field 'observation.features' = {names!r}: ")
