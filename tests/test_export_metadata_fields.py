"""The exported metadata's fields a controller vendor reads (agents/deploy/export_metadata.py),
checked against where they come from rather than against the code that writes them: the
intersections' lanes, movements, phases and intergreens against the roadnet file, the model's
input and output types against the ONNX graph, ``phase_command`` against the metadata's actions,
and the training record against the checkpoint."""

from __future__ import annotations

import json
from importlib import metadata as importlib_metadata

import numpy as np
import onnx
import onnxruntime
import pytest

from agents.ppo.policy import load_policy
from tests.deploy_fixtures import exported_minimal
from tests.scenarios import uneven_grid_dicts

TURNS = {"go_straight": "straight", "turn_left": "left", "turn_right": "right"}


def _signalised(roadnet: dict) -> list[dict]:
    return [inter for inter in roadnet["intersections"] if not inter["virtual"]]


@pytest.fixture(scope="module")
def minimal(tmp_path_factory):
    return exported_minimal(tmp_path_factory)


@pytest.mark.parametrize("which", ["uneven", "minimal"])
def test_lanes_movements_phases_and_intergreens_are_the_roadnets(uneven, minimal, which):
    if which == "uneven":
        roadnet, meta_path = uneven_grid_dicts(horizon=3600)[0], uneven[1]["shared"][2]
    else:
        roadnet, meta_path = minimal[0], minimal[3]
    meta = json.loads(meta_path.read_text())
    inters = _signalised(roadnet)
    assert [e["id"] for e in meta["intersections"]] == [inter["id"] for inter in inters]
    for i, (entry, inter) in enumerate(zip(meta["intersections"], inters)):
        assert entry["index"] == i
        # reading order: road by road in file order, lane 0 first
        incoming = [road for road in roadnet["roads"] if road["endIntersection"] == inter["id"]]
        assert entry["in_lanes"] == [f"{road['id']}_{k}" for road in incoming for k in range(len(road["lanes"]))]
        links = inter["roadLinks"]
        # each movement's lanes (positions in in_lanes: what calls its phases for the max-red guard) are
        # the start lanes of its lane links
        assert entry["movements"] == [
            {"index": k, "from_road": link["startRoad"], "to_road": link["endRoad"], "type": TURNS[link["type"]],
             "in_lanes": sorted({entry["in_lanes"].index(f"{link['startRoad']}_{lane_link['startLaneIndex']}")
                                 for lane_link in link["laneLinks"]})}
            for k, link in enumerate(links)
        ]
        greens = [sorted(phase["availableRoadLinks"]) for phase in inter["trafficLight"]["lightphases"]]
        assert [p["index"] for p in entry["phases"]] == list(range(len(greens)))
        assert [p["green_movements"] for p in entry["phases"]] == greens
        assert [p["plan_duration_s"] for p in entry["phases"]] == [
            float(phase["time"]) for phase in inter["trafficLight"]["lightphases"]]
        # a phase is a signal phase when it serves a movement other than a right turn
        assert [p["signal"] for p in entry["phases"]] == [
            any(links[k]["type"] != "turn_right" for k in green) for green in greens]
        # switching p -> q shows yellow + all-red when some movement green in p is not in q
        assert entry["intergreen_after_switch"] == [[bool(set(p) - set(q)) for q in greens] for p in greens]
    if which == "minimal":  # A: one lane in, phase 1 serves nothing, so the table is not symmetric
        assert meta["intersections"][0]["intergreen_after_switch"] == [[False, True], [False, False]]
        assert meta["intersections"][0]["in_lanes"] == ["w_a_0"] and meta["observation"]["max_lanes"] == 2


def test_a_padding_lanes_reading_never_reaches_the_policy(minimal):
    # the lane inputs are zero-padded to the widest intersection; whatever a caller puts in the
    # padding, the graph reads only the intersection's own lanes
    _, _, onnx_path, _ = minimal
    rng = np.random.default_rng(0)
    rows = np.tile([0, 1], 20)
    feed = {
        "lane_count": rng.integers(0, 10, (rows.size, 2)).astype(np.float32),
        "phase": np.zeros(rows.size, dtype=np.int64),
        "time_in_phase": rng.uniform(0, 60, rows.size).astype(np.float32),
        "intersection": rows.astype(np.int64),
    }
    feed["lane_count"][rows == 0, 1] = 0.0
    feed["lane_halting"] = np.floor(feed["lane_count"] / 2)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], feed)[0]
    for name in ("lane_count", "lane_halting"):
        garbage = feed[name].copy()
        garbage[rows == 0, 1] = 7.0  # A's second lane does not exist
        np.testing.assert_array_equal(session.run(["logits"], {**feed, name: garbage})[0], logits)
    assert len(np.unique(logits[rows == 0, 0])) > 1  # A's logit follows its own lane


def _graph_types(values) -> dict:
    out = {}
    for value in values:
        tensor = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
        out[value.name] = (dtype, [d.dim_value if d.HasField("dim_value") else "batch" for d in tensor.shape.dim])
    return out


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_the_models_input_and_output_types_and_shapes_are_the_graphs(uneven, policy):
    _, exported = uneven
    _, onnx_path, meta_path = exported[policy]
    meta = json.loads(meta_path.read_text())
    graph = onnx.load(str(onnx_path)).graph
    for kind, values in (("inputs", graph.input), ("outputs", graph.output)):
        stated = {name: (spec["dtype"], spec["shape"]) for name, spec in meta["model"][kind].items()}
        assert stated == _graph_types(values), kind
    assert meta["observation"]["max_actions"] == meta["model"]["outputs"]["logits"]["shape"][1] == 4
    assert meta["observation"]["max_lanes"] == meta["model"]["inputs"]["lane_count"]["shape"][1] == 12


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_phase_command_is_the_chosen_actions_phase_for_rows_in_any_order(uneven, policy):
    _, exported = uneven
    _, onnx_path, meta_path = exported[policy]
    actions = [entry["actions"] for entry in json.loads(meta_path.read_text())["intersections"]]
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.permutation(len(actions)) for _ in range(50)])
    feed = {
        "lane_count": rng.integers(0, 20, (rows.size, 12)).astype(np.float32),
        "phase": np.array([rng.choice(actions[i]) for i in rows], dtype=np.int64),
        "time_in_phase": rng.uniform(0, 200, rows.size).astype(np.float32),
        "intersection": rows.astype(np.int64),
    }
    feed["lane_halting"] = np.floor(feed["lane_count"] * rng.uniform(0, 1, feed["lane_count"].shape)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    action, command = session.run(["action", "phase_command"], feed)
    assert len(set(command.tolist())) >= 3  # the commands vary
    assert command.tolist() == [actions[i][a] for i, a in zip(rows, action)]


def test_the_training_record_names_the_checkpoint_its_config_and_the_project_version(uneven):
    _, exported = uneven
    checkpoint, _, meta_path = exported["independent"]
    meta = json.loads(meta_path.read_text())
    _, trained = load_policy(checkpoint)
    assert meta["training"]["checkpoint"] == str(checkpoint)
    assert meta["training"]["config"] == trained["config"] and meta["training"]["agent"] == "ppo_independent"
    assert meta["project"] == {"name": "gridlight", "version": importlib_metadata.version("gridlight")}
