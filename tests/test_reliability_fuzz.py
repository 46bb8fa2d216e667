"""Issue 18, point 3: hypothesis mutates valid scenario files (roadnet and flow: fields dropped,
replaced by values of any JSON type, wrapped, emptied, bytes flipped) and valid service messages;
nothing but gridlight's own errors may escape, and the service answers every line.

The default suite runs a few hundred examples (EXAMPLES per test); ``pytest -m fuzz`` runs the
deep variants (DEEP_EXAMPLES per test)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.deploy.runtime import PolicyRuntime
from agents.deploy.service import handle_line
from envs.engine import Simulator
from envs.errors import GridlightError
from envs.scenario import scenario_from_dicts, scenario_from_files
from envs.scenario.cityflow import write_cityflow
from tests.deploy_fixtures import readings_message
from tests.minimal_scenario import minimal_flow, minimal_roadnet

EXAMPLES, DEEP_EXAMPLES = 100, 3000
COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                    HealthCheck.data_too_large])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    """Every (container path, key) in a JSON document, containers first."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _mutate(document, data) -> object:
    """One to three mutations of `document` chosen by hypothesis: drop, replace (any JSON type),
    wrap in a list, empty, duplicate."""
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = list(_paths(document))
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        kind = data.draw(st.sampled_from(["drop", "replace", "wrap", "empty", "duplicate"]), label="kind")
        if kind == "drop":
            del parent[key]
        elif kind == "replace":
            parent[key] = data.draw(json_values, label="value")
        elif kind == "wrap":
            parent[key] = [parent[key]]
        elif kind == "empty":
            parent[key] = type(parent[key])() if isinstance(parent[key], (list, dict, str)) else None
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[f"{key}_"] = copy.deepcopy(parent[key])
    return document


def _scenario_survives(roadnet, flow) -> None:
    try:
        scenario = scenario_from_dicts(roadnet, flow)
    except GridlightError:
        return
    sim = Simulator(scenario.network, scenario.demand(2))  # an accepted scenario must also run
    sim.run(20)


def _roadnet_and_flow(data):
    target = data.draw(st.sampled_from(["roadnet", "flow", "both"]), label="target")
    roadnet, flow = minimal_roadnet(), minimal_flow()
    if target in ("roadnet", "both"):
        roadnet = _mutate(roadnet, data)
    if target in ("flow", "both"):
        flow = _mutate(flow, data)
    return roadnet, flow


@settings(max_examples=EXAMPLES, **COMMON)
@given(st.data())
def test_mutated_scenario_documents_give_only_gridlight_errors(data):
    _scenario_survives(*_roadnet_and_flow(data))


@settings(max_examples=EXAMPLES // 2, **COMMON)
@given(st.data())
def test_mutated_scenario_file_bytes_give_only_gridlight_errors(data):
    with tempfile.TemporaryDirectory() as directory:
        roadnet_path, flow_path = write_cityflow(directory, minimal_roadnet(), minimal_flow())
        path = data.draw(st.sampled_from([roadnet_path, flow_path]), label="file")
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            at = data.draw(st.integers(0, len(raw) - 1), label="at")
            raw[at] = data.draw(st.integers(0, 255), label="byte")
        if data.draw(st.booleans(), label="truncate"):
            raw = raw[: data.draw(st.integers(0, len(raw)), label="length")]
        Path(path).write_bytes(bytes(raw))
        try:
            scenario_from_files(roadnet_path, flow_path)
        except GridlightError:
            pass


def _service_reply_is_an_answer(runtime, line) -> None:
    reply = handle_line(runtime, line, 1)
    json.dumps(reply)  # always a JSON-able reply
    assert "commands" in reply or "error" in reply
    assert "internal error" not in reply.get("error", ""), reply["error"]  # bad input, not a crash


@pytest.fixture(scope="module")
def runtime_files(tmp_path_factory):
    from tests.deploy_fixtures import copy_model, exported_uneven

    return copy_model(exported_uneven(tmp_path_factory)[1], tmp_path_factory.mktemp("fuzz"))


@settings(max_examples=EXAMPLES, **COMMON)
@given(st.data())
def test_mutated_service_messages_are_answered_and_never_crash_it(runtime_files, data):
    runtime = PolicyRuntime(*runtime_files)
    message = _mutate(readings_message(runtime, 0.0), data)
    _service_reply_is_an_answer(runtime, json.dumps(message))
    later = readings_message(runtime, 1e6)  # and it still decides afterwards
    assert "commands" in handle_line(runtime, json.dumps(later), 2)


@settings(max_examples=EXAMPLES // 2, **COMMON)
@given(st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_are_answered(runtime_files, line):
    _service_reply_is_an_answer(PolicyRuntime(*runtime_files), line)


def _deep(request) -> None:
    if "fuzz" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("deep fuzzing runs with: pytest -m fuzz tests/test_reliability_fuzz.py")


@pytest.mark.fuzz
@settings(max_examples=DEEP_EXAMPLES, **COMMON)
@given(st.data())
def test_deep_mutated_scenarios(request, data):
    _deep(request)
    _scenario_survives(*_roadnet_and_flow(data))


@pytest.mark.fuzz
@settings(max_examples=DEEP_EXAMPLES, **COMMON)
@given(st.data())
def test_deep_mutated_service_messages(request, runtime_files, data):
    _deep(request)
    runtime = PolicyRuntime(*runtime_files)
    _service_reply_is_an_answer(runtime, json.dumps(_mutate(readings_message(runtime, 0.0), data)))


