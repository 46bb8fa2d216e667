"""What a signal controller's runtime does with a tampered metadata JSON (its checksum covers the
model file only) and with inputs no detector should send: every edit that would change what the
signal shows is refused at load, naming the file, the field and the value; a reading or clock that
makes no sense never lets a decision break the timing rules (docs/deployment.md, "The metadata
JSON", "The runtime")."""

from __future__ import annotations

import numpy as np
import pytest

from agents.deploy.runtime import PolicyRuntime
from envs.errors import CommandError, ConfigError
from tests.deploy_fixtures import assert_refused_at_load, edit_metadata, readings_message


def _first(meta: dict) -> dict:
    return meta["intersections"][0]


def _no_clearance(meta: dict) -> None:
    for entry in meta["intersections"]:
        entry["intergreen_after_switch"] = [[False] * len(entry["phases"]) for _ in entry["phases"]]


@pytest.mark.parametrize("edit, field, value", [
    # every change served with no yellow and no all-red
    (_no_clearance, "intersections[0].intergreen_after_switch[0][1]", False),
    (lambda m: _first(m)["intergreen_after_switch"][1].__setitem__(0, False),
     "intersections[0].intergreen_after_switch[1][0]", False),
    # numpy read a string as true, 0 as false: only JSON booleans are a table's entries
    (lambda m: _first(m)["intergreen_after_switch"][0].__setitem__(1, "true"),
     "intersections[0].intergreen_after_switch[0][1]", "true"),
    (lambda m: _first(m)["intergreen_after_switch"][0].__setitem__(1, 1),
     "intersections[0].intergreen_after_switch[0][1]", 1),
    # a clearance the phases do not need is an edit too (keeping a phase ends no green)
    (lambda m: _first(m)["intergreen_after_switch"][0].__setitem__(0, True),
     "intersections[0].intergreen_after_switch[0][0]", True),
    (lambda m: _first(m)["phases"][0].update(green_movements="all"), "intersections[0].phases[0].green_movements",
     "all"),
])
def test_an_intergreen_table_other_than_the_phases_green_movements_give_is_refused(model_copy, edit, field, value):
    edit_metadata(model_copy, edit)
    assert_refused_at_load(model_copy, field, value)


@pytest.mark.parametrize("t", [float("nan"), float("inf"), -float("inf")])
def test_a_time_that_is_not_finite_is_refused_by_decide_arrays_and_changes_nothing(model_copy, t):
    runtime = PolicyRuntime(*model_copy)
    lay = runtime.layout
    lanes = {name: np.ones((len(lay.ids), runtime.max_lanes)) for name in runtime.lane_readings}
    lanes["lane_halting"] = np.zeros_like(lanes["lane_count"])

    def decide(at):
        return runtime.decide_arrays(at, phase=lay.actions[:, 0], time_in_phase=np.full(len(lay.ids), 100.0), **lanes)

    decide(0.0)
    with pytest.raises(ValueError, match="field 't' must be a finite number of seconds"):
        decide(t)
    assert runtime.last_t == 0.0 and np.isfinite(runtime.signals.switched_at).all()
    decision = decide(-5.0)  # a time going back after it is a clock reset, decided from the finite times
    assert decision.global_faults[0].startswith("clock reset: t went back from 0.0 to -5.0;")
    assert np.isfinite(runtime.signals.switched_at).all()


def _float_action_model(meta: dict, path) -> None:
    """An ONNX model with the export's input and output names and shapes whose ``action`` is a
    float (phase + 1.7: 1.7 where phase 0 runs), written to `path` with its checksum in `meta`."""
    import hashlib

    from onnx import TensorProto, helper

    inputs = meta["model"]["inputs"]
    lanes, actions = inputs["lane_count"]["shape"][1], meta["model"]["outputs"]["logits"]["shape"][1]
    kinds = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}
    graph = helper.make_graph(
        [helper.make_node("Cast", ["phase"], ["phase_f"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["phase_f", "offset"], ["action"]),
         helper.make_node("Identity", ["phase"], ["phase_command"]),
         helper.make_node("MatMul", ["lane_count", "weights"], ["logits"])],
        "float_action",
        [helper.make_tensor_value_info(name, kinds[spec["dtype"]], spec["shape"]) for name, spec in inputs.items()],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("phase_command", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", actions])],
        [helper.make_tensor("offset", TensorProto.FLOAT, [], [1.7]),
         helper.make_tensor("weights", TensorProto.FLOAT, [lanes, actions], [0.0] * (lanes * actions))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", meta["model"]["opset"])])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    meta["model"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["float_action", "metadata_dtype"])
def test_a_model_whose_input_or_output_types_are_not_the_metadatas_is_a_model_fault(model_copy, damage):
    # a float action 1.7 passed the range check and was truncated to action 1: a choice the model never made
    onnx_path, _ = model_copy
    if damage == "float_action":
        edit_metadata(model_copy, lambda meta: _float_action_model(meta, onnx_path))
    else:  # the metadata says the phase is a float: a feed built from it would fail every inference
        edit_metadata(model_copy, lambda meta: meta["model"]["inputs"]["phase"].update(dtype="float32"))
    runtime = PolicyRuntime(*model_copy)
    reply = runtime.decide(readings_message(runtime, 0.0))
    assert runtime.session is None
    name = "action" if damage == "float_action" else "phase"
    assert f"model {'output' if name == 'action' else 'input'} {name!r} has type" in runtime.model_fault
    assert {c["source"] for c in reply["commands"].values()} == {"fallback"}


@pytest.mark.parametrize("name, value", [
    ("lane_count", "one_row"),  # broadcast to every intersection: an inference error each decision
    ("lane_count", "wider"),
    ("lane_halting", "scalar"),
    ("phase", "scalar"),  # was a TypeError: len() of unsized object
    ("time_in_phase", "one_more"),
])
def test_readings_of_the_wrong_shape_are_refused_by_decide_arrays_naming_the_reading(model_copy, name, value):
    runtime = PolicyRuntime(*model_copy)
    lay = runtime.layout
    count, lanes_wide = len(lay.ids), runtime.max_lanes
    arrays = {lane: np.zeros((count, lanes_wide)) for lane in runtime.lane_readings}
    arrays |= {"phase": lay.actions[:, 0], "time_in_phase": np.full(count, 100.0)}
    good = arrays[name]
    arrays[name] = {"one_row": good[:1].reshape(-1), "wider": np.zeros((count, lanes_wide + 1)),
                    "scalar": good.reshape(-1)[0], "one_more": np.append(good, good[:1])}[value]
    with pytest.raises(CommandError) as caught:
        runtime.decide_arrays(0.0, **arrays)
    shape = np.shape(arrays[name])
    assert str(caught.value).startswith(f"<decide_arrays>: field {name!r} = {shape!r}: expected shape ")
    assert runtime.last_t is None  # nothing decided


@pytest.mark.parametrize("plan, field, value", [
    # the fallback held phase 0 for ever: its next step was phase 0 again (200 s of a 20 s max green)
    ([0, 0, 1], "intersections[0].fallback_plan[1].phase", 0),
    ([0, 1, 2, 1], "intersections[0].fallback_plan[3].phase", 1),
    ([2], "intersections[0].fallback_plan", [{"phase": 2, "green_s": 10.0}]),
])
def test_a_fallback_plan_that_would_hold_a_phase_past_max_green_is_refused(model_copy, plan, field, value):
    edit_metadata(model_copy, lambda m: _first(m).update(fallback_plan=[{"phase": p, "green_s": 10.0} for p in plan]))
    assert_refused_at_load(model_copy, field, value)


@pytest.mark.parametrize("argument, value", [
    ("timing_tolerance_s", float("nan")),  # no time in phase was ever a mismatch
    ("timing_tolerance_s", -1.0),  # every decision a fault
    ("timing_tolerance_s", float("inf")),
    ("threads", 0),  # onnxruntime's 'every core'
    ("threads", -2),
    ("threads", True),
])
def test_a_tolerance_or_thread_count_the_runtime_cannot_use_is_refused(model_copy, argument, value):
    with pytest.raises(ConfigError) as caught:
        PolicyRuntime(*model_copy, **{argument: value})
    assert str(caught.value).startswith(f"<config>: field {argument!r} = {value!r}: must be ")
