"""The service's fast path (agents/deploy/service.py `reply_line`: orjson, the whole message's
readings at once, the reply written directly) answers every line with exactly the text the
reference path gives (`handle_line`: json.loads, intersection by intersection, json.dumps), and
leaves the runtime in the same state: valid messages, messages with bad readings at some
intersections and good ones at the others, malformed messages, and hypothesis' mutations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.deploy.runtime import PolicyRuntime
from agents.deploy.service import handle_line, reply_line
from tests.deploy_fixtures import edit_metadata, follow, readings_message
from tests.test_reliability_fuzz import COMMON, EXAMPLES, _mutate

# the service decodes with orjson only when it is installed (a tensordict dependency, so it is)
orjson = pytest.importorskip("orjson")


def _state(runtime: PolicyRuntime) -> tuple:
    signals, guard = runtime.signals, runtime.guard
    # the max-red guard's red times and overrides (NaN, a phase in its green, never equals itself in a list)
    red = () if guard is None else (np.nan_to_num(guard.red_since, nan=-1.0).tolist(), guard.running.tolist(),
                                    guard.overriding.tolist(), guard.count)
    return (runtime.last_t, signals.known.tolist(), signals.cur_phase.tolist(), signals.prev_phase.tolist(),
            signals.switched_at.tolist(), dict(runtime.fault_log._active), dict(runtime.fault_log.counts), red)


def _same_answer(fast: PolicyRuntime, reference: PolicyRuntime, line, number: int = 1) -> str:
    text = reply_line(fast, line, number)
    assert text == json.dumps(handle_line(reference, line, number))
    assert _state(fast) == _state(reference)
    return text


def _set(message: dict, k: int, **fields) -> dict:
    changed = json.loads(json.dumps(message))
    entry = changed["intersections"][list(changed["intersections"])[k]]
    entry.update(fields)
    return changed


@pytest.fixture(params=[None, 20.0], ids=["no_max_red", "max_red_20"])
def two_runtimes(model_copy, request):
    """Two runtimes of the export, without and with the max-red guard (20 s, the least the export's
    timing allows: it takes intersections from the policy within the first test's minute)."""
    if request.param is not None:
        edit_metadata(model_copy, lambda meta: meta["timing"].update(max_red_s=request.param))
    return PolicyRuntime(*model_copy), PolicyRuntime(*model_copy)


def _bad_readings(message: dict, runtime: PolicyRuntime) -> list[tuple[dict, bool]]:
    """(message, whether the fast path takes it whole): one or two intersections bad, the rest good."""
    lanes = int(runtime.layout.num_lanes[1])
    capacity = float(runtime.layout.lane_max[1, 0])
    return [
        (message, True),  # all good
        (_set(message, 1, lane_count=[-1.0] + [2.0] * (lanes - 1)), True),
        (_set(message, 1, lane_count=[capacity + 1] * lanes), True),
        (_set(message, 1, lane_halting=[5.0] * lanes, lane_count=[1.0] * lanes), True),  # halting > count
        (_set(_set(message, 0, phase=99), 2, time_in_phase=-3.0), True),
        (_set(message, 1, phase=1.5), True),
        (_set(message, 0, time_in_phase=1e6), True),  # valid but not what was commanded
        (_set(message, 0, time_in_phase=1e30), False),  # beyond 2**63: maybe an integer orjson made a float
        (_set(message, 1, lane_count=[2] * (lanes + 1)), False),  # wrong number of lanes
        (_set(message, 1, lane_count="many"), False),
        (_set(message, 1, phase=True), False),
        (_set(message, 1, phase=None), False),
        (_set(message, 1, lane_halting=[2**70] * lanes), False),  # orjson reads a float: json.loads judges
        ({**message, "intersections": {k: v for k, v in list(message["intersections"].items())[1:]}}, False),
        ({**message, "intersections": {**message["intersections"], "nowhere": {}}}, True),  # unknown id
    ]


def test_fast_and_reference_paths_give_identical_replies(two_runtimes):
    fast, reference = two_runtimes
    message = readings_message(fast, 0.0)
    number, sources = 0, set()
    for step in range(6):
        number += 1
        line = json.dumps(message).encode() + b"\n"
        reply = json.loads(_same_answer(fast, reference, line, number))
        assert "commands" in reply
        sources |= {command["source"] for command in reply["commands"].values()}
        for bad, whole in _bad_readings(follow(fast, message, reply, 1.0), fast):
            number += 1
            probe = PolicyRuntime(fast.model_path, fast.metadata_path)  # deciding here changes no state under test
            assert (probe.decide_text(orjson.loads(json.dumps(bad))) is not None) == whole
            _same_answer(fast, reference, json.dumps(bad).encode(), number)
        message = follow(fast, message, reply, 10.0)
    assert ("max_red" in sources) == (fast.guard is not None)  # the guard overrode the policy on both paths


@pytest.mark.parametrize("line", [
    b"", b"\n", b"   \n", b"\xff\xfe not utf-8", b"{broken", b"null", b"[1, 2]", b'{"t": "soon"}',
    b'{"t": NaN, "intersections": {}}', b'{"t": 1e400, "intersections": {}}', b'{"t": 0, "intersections": []}',
    b'{"t": 123456789012345678901234567890, "intersections": {}}', b"[" * 100_000, "\ufeff{}".encode(),
    '{"t": 0, "intersections": {"\ud800": {}}}'.encode("utf-8", "surrogatepass"),
])
def test_malformed_lines_get_the_reference_error_text(two_runtimes, line):
    _same_answer(*two_runtimes, line)
    _same_answer(*two_runtimes, line.decode("utf-8", "surrogateescape"))  # a str line (tests, stdin in text)


def test_a_time_going_back_is_the_same_clock_reset_on_both_paths(two_runtimes):
    fast, reference = two_runtimes
    replies = [json.loads(_same_answer(fast, reference, json.dumps(readings_message(fast, t))))
               for t in (10.0, 5.0, 2**62, 2**64, 10.0)]
    assert [any(f.startswith("clock reset") for f in reply["faults"]) for reply in replies] == [
        False, True, False, False, True]
    assert all("commands" in reply for reply in replies)


def test_whole_message_parse_equals_the_per_intersection_parse(model_copy):
    from agents.deploy.readings import parse_readings

    runtime = PolicyRuntime(*model_copy)
    message = readings_message(runtime, 0.0)
    for k, entry in enumerate(message["intersections"].values()):  # a distinct value in every lane
        entry["lane_count"] = [float(10 * k + j) for j in range(len(entry["lane_count"]))]
    whole = runtime.whole_message.parse(message["intersections"])
    one_by_one = parse_readings(runtime.layout, runtime.max_lanes, message["intersections"])
    for name in ("lane_count", "lane_halting", "phase", "time_in_phase"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(one_by_one, name))
    assert whole.lane_count[1, 2] == 12.0 and whole.faults == one_by_one.faults == [[]] * len(runtime.layout.ids)


@settings(max_examples=EXAMPLES, **COMMON)
@given(st.data())
def test_mutated_messages_get_identical_replies(model_copy, data):
    fast, reference = PolicyRuntime(*model_copy), PolicyRuntime(*model_copy)
    message = readings_message(fast, 0.0)
    _same_answer(fast, reference, json.dumps(message))
    _same_answer(fast, reference, json.dumps(_mutate(message, data)), 2)
    _same_answer(fast, reference, json.dumps(readings_message(fast, 1e6)), 3)
