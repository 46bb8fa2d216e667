"""The runtime's max-red guard (agents/deploy/max_red.py): a policy that never asks for a phase
gets it served within ``timing.max_red_s`` when vehicles wait there, never when nobody does; the
guard keeps min green, yellow and all-red; its override shows in the reply, the log and a count;
the metadata's ``max_red_s`` is checked, and an export without it runs as before."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from agents.deploy.runtime import MAX_RED, POLICY, PolicyRuntime
from envs.errors import ModelError
from tests.deploy_fixtures import FakeSession, assert_refused_at_load, edit_metadata, follow, readings_message

INTERVAL, MIN_GREEN, CLEARANCE = 5.0, 5.0, 5.0  # the uneven export's timing (yellow 3 s + all-red 2 s)


def always_first_action(feed):
    return np.zeros(len(feed["phase"]), dtype=np.int64)


def with_max_red(model_copy, max_red_s) -> PolicyRuntime:
    edit_metadata(model_copy, lambda meta: meta["timing"].update(max_red_s=max_red_s))
    return PolicyRuntime(*model_copy)


def halting_on(runtime: PolicyRuntime, message: dict, waiting) -> dict:
    """`message` with one halting vehicle on the lanes `waiting(i, lane)` says, none elsewhere."""
    for i, entry in enumerate(message["intersections"].values()):
        entry["lane_halting"] = [1.0 if waiting(i, lane) else 0.0 for lane in range(len(entry["lane_halting"]))]
    return message


def run(runtime: PolicyRuntime, seconds: float, waiting=lambda i, lane: True):
    """An obedient cabinet under `runtime` (its policy always asking for its first action) for
    `seconds`, vehicles halting where `waiting` says: per intersection the changes
    ``(start, phase, yellow_s, all_red_s, previous phase's green so far)`` and every reply."""
    runtime.session = FakeSession(always_first_action)
    message = halting_on(runtime, readings_message(runtime, 0.0, tip=0.0), waiting)
    running = [int(p) for p in runtime.layout.actions[:, 0]]
    green_from = [0.0] * len(running)
    changes, replies = [[] for _ in running], []
    while message["t"] <= seconds:
        t = message["t"]
        reply = runtime.decide(message)
        replies.append(reply)
        for i, command in enumerate(reply["commands"].values()):
            start = t + command["switch_in_s"]
            if command["phase"] != running[i] and not (changes[i] and changes[i][-1][0] == start):
                changes[i].append((start, command["phase"], command["yellow_s"], command["all_red_s"],
                                   start - green_from[i]))
                running[i], green_from[i] = command["phase"], start + command["yellow_s"] + command["all_red_s"]
        message = halting_on(runtime, follow(runtime, message, reply, INTERVAL), waiting)
    return changes, replies


def reds(changes, phases, seconds: float, first: int) -> dict[int, list[float]]:
    """Per phase, each red it showed: from the start of the change that ended its green (0 for one
    red from the start; `first` is green then) to the start of its next green (`seconds` for one
    still red at the end)."""
    out = {p: [] for p in phases}
    since = {p: None if p == first else 0.0 for p in phases}
    for k, (start, phase, yellow, all_red, _) in enumerate(changes):
        before = changes[k - 1][1] if k else first
        if before in since:
            since[before] = start
        if phase in since and since[phase] is not None:
            out[phase].append(start + yellow + all_red - since[phase])
            since[phase] = None
    for p, began in since.items():
        if began is not None:
            out[p].append(seconds - began)
    return out


def test_a_phase_the_policy_never_asks_for_is_served_within_max_red_where_vehicles_wait(model_copy):
    max_red, seconds = 40.0, 600.0
    without, _ = run(PolicyRuntime(*model_copy), seconds)
    guarded, replies = run(with_max_red(model_copy, max_red), seconds)
    runtime = PolicyRuntime(*model_copy)
    for i, actions in enumerate(runtime.layout.actions.tolist()):
        actions = [a for a in actions if a >= 0]
        # without the guard: the policy keeps its first phase, max green moves it to the next, and
        # the others never get a green
        assert {phase for _, phase, *_ in without[i]} == set(actions[:2]), i
        red = reds(guarded[i], actions, seconds, actions[0])
        # with it: each phase red at most max red, plus the min green and clearance of each of the
        # others starved with it that went first (two at most here: the policy's own phases are served)
        starved_with = len(actions) - 3
        assert all(r <= max_red + starved_with * (MIN_GREEN + CLEARANCE) for p in actions for r in red[p]), (i, red)
        assert min(max(red[p]) for p in actions[2:]) <= max_red  # the first served keeps max red itself
        assert {phase for _, phase, *_ in guarded[i]} == set(actions), i
    sources = {c["source"] for reply in replies for c in reply["commands"].values()}
    assert sources == {POLICY, MAX_RED}


def test_one_starved_phase_is_served_within_max_red_exactly_and_no_other_is_forced(model_copy):
    """Vehicles wait only on lanes of the movements the last action's phase alone gives green:
    that phase is served, within max red; a phase nobody waits for that neither the policy nor max green
    asks for never is."""
    runtime = with_max_red(model_copy, 30.0)
    meta = json.loads(model_copy[1].read_text())
    only_last = []
    for entry in meta["intersections"]:
        last = entry["phases"][entry["actions"][-1]]["green_movements"]
        elsewhere = {k for a in entry["actions"][:-1] for k in entry["phases"][a]["green_movements"]}
        mine = {m["index"]: m["in_lanes"] for m in entry["movements"]}
        lanes = {lane for k in last if k not in elsewhere for lane in mine[k]}
        shared = {lane for k in elsewhere for lane in mine.get(k, [])}
        only_last.append(lanes - shared)
    assert all(only_last)
    seconds = 400.0
    changes, _ = run(runtime, seconds, lambda i, lane: lane in only_last[i])
    for i, actions in enumerate(runtime.layout.actions.tolist()):
        actions = [a for a in actions if a >= 0]
        served = {phase for _, phase, *_ in changes[i]}
        # the policy's phase, max green's next (where the starved one did not take its place) and the starved one
        assert actions[-1] in served and served <= {actions[0], actions[1], actions[-1]}, (i, served)
        assert all(r <= 30.0 for r in reds(changes[i], [actions[-1]], seconds, actions[0])[actions[-1]]), i


def test_nobody_waiting_the_guard_changes_nothing(model_copy):
    seconds = 400.0
    without, replies_without = run(PolicyRuntime(*model_copy), seconds, lambda i, lane: False)
    guarded, replies = run(with_max_red(model_copy, 20.0), seconds, lambda i, lane: False)
    assert guarded == without and replies == replies_without


@pytest.mark.parametrize("max_red", [20.0, 33.0, 60.0])
def test_the_guard_keeps_min_green_and_the_clearance(model_copy, max_red):
    runtime = with_max_red(model_copy, max_red)
    changes, _ = run(runtime, 600.0)
    table = runtime.layout.intergreen
    for i, made in enumerate(changes):
        before = int(runtime.layout.actions[i, 0])
        for start, phase, yellow, all_red, green_shown in made:
            assert phase in runtime.layout.actions[i].tolist()  # a phase of the signal: no conflicting green
            needed = bool(table[i, before, phase])
            assert (yellow, all_red) == ((3.0, 2.0) if needed else (0.0, 0.0)), (i, before, phase)
            if start > 0:
                assert green_shown >= MIN_GREEN, (i, start, green_shown)
            before = phase


def test_an_override_is_logged_once_and_counted(model_copy, caplog):
    assert PolicyRuntime(*model_copy).override_counts == {}  # no guard, nothing to count
    runtime = with_max_red(model_copy, 40.0)
    with caplog.at_level(logging.WARNING, logger="gridlight.runtime"):
        _, replies = run(runtime, 200.0)
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("max red at ")]
    overridden = sum(c["source"] == MAX_RED for reply in replies for c in reply["commands"].values())
    assert warned and len(warned) == runtime.override_counts[MAX_RED] <= overridden
    assert "with vehicles waiting (max_red_s 40): served next, in place of the policy's phase" in warned[0]


def test_an_export_from_before_the_guard_loads_and_runs_as_before(model_copy):
    def old(meta):  # no max_red_s and no movement lanes, as written before the guard
        meta["timing"].pop("max_red_s", None)
        for entry in meta["intersections"]:
            for movement in entry["movements"]:
                movement.pop("in_lanes", None)

    reference, _ = run(PolicyRuntime(*model_copy), 300.0)
    edit_metadata(model_copy, old)
    runtime = PolicyRuntime(*model_copy)
    assert runtime.guard is None
    assert run(runtime, 300.0)[0] == reference


@pytest.mark.parametrize("value, reason", [
    (float("inf"), "must be a finite number of seconds > 0"), (0, "must be a finite number of seconds > 0"),
    (-30, "must be a finite number of seconds > 0"), ("60", "must be a finite number of seconds > 0"),
    (True, "must be a finite number of seconds > 0"),
    (19.5, "must be at least 20 s: min green (5 s) between two clearances (2 x (yellow 3 + all-red 2 s)) and one "
           "decision interval (5 s)"),
])
def test_a_bad_max_red_in_the_metadata_is_refused(model_copy, value, reason):
    edit_metadata(model_copy, lambda meta: meta["timing"].update(max_red_s=value))
    assert_refused_at_load(model_copy, "timing.max_red_s", value)
    with pytest.raises(ModelError, match=re.escape(reason)):
        PolicyRuntime(*model_copy)


def test_a_guard_without_the_movements_lanes_is_refused(model_copy):
    def edit(meta):
        meta["timing"]["max_red_s"] = 60.0
        del meta["intersections"][1]["movements"][2]["in_lanes"]

    edit_metadata(model_copy, edit)
    with pytest.raises(ModelError, match="export the checkpoint again"):
        PolicyRuntime(*model_copy)
    assert_refused_at_load(model_copy, "intersections[1].movements[2].in_lanes", None)


def test_in_the_simulator_every_phase_gets_its_green_and_the_signals_stay_in_step(uneven, model_copy):
    """Closed loop (agents/deploy/simulated.py, the engine's own min green off so the runtime's holds):
    the guard serves every phase of every intersection to a policy that asks for its first action, no
    green ends before min green, and the runtime's model of each signal stays the signal's (no fault)."""
    from agents.deploy.simulated import SimulatedRuntime
    from tests.test_runtime_timing import ended_greens

    edit_metadata(model_copy, lambda meta: meta["timing"].update(max_red_s=40.0))
    deployed = SimulatedRuntime(str(model_copy[0]))
    ended = ended_greens(uneven[0], deployed, 600, FakeSession(always_first_action))
    runtime = deployed.runtimes[0]
    assert runtime.fault_counts == {} and runtime.override_counts[MAX_RED] > 0
    for i, actions in enumerate(runtime.layout.actions.tolist()):
        assert {phase for k, phase, _ in ended if k == i} == {a for a in actions if a >= 0}, i
    assert all(green >= MIN_GREEN for *_, green in ended)


def test_a_red_counts_on_across_a_clock_reset(model_copy):
    runtime = with_max_red(model_copy, 40.0)
    run(runtime, 20.0)  # the movements of phases 2 and 3 red 20 s by then (decisions 5 s apart, the last at t = 20)
    red = 20.0 - runtime.guard.red_since
    message = halting_on(runtime, readings_message(runtime, 3.0, tip=0.0), lambda i, lane: True)
    for k, entry in enumerate(message["intersections"].values()):
        entry["phase"] = int(runtime.signals.cur_phase[k])
    reply = runtime.decide(message)  # t went back from 20 s to 3 s
    assert any(f.startswith("clock reset") for f in reply["faults"])
    np.testing.assert_array_equal(np.isnan(3.0 - runtime.guard.red_since), np.isnan(red))
    kept = ~np.isnan(red)  # each movement's red
    np.testing.assert_allclose((3.0 - runtime.guard.red_since)[kept], red[kept])  # as if no time passed


@pytest.mark.parametrize("edit, field, value", [
    (lambda movement: movement.update(index=-1), "intersections[1].movements[2].index", -1),
    (lambda movement: movement.pop("index"), "intersections[1].movements[2].index", None),
    (lambda movement: movement.update(in_lanes=[99]), "intersections[1].movements[2].in_lanes", [99]),
])
def test_a_guard_on_malformed_movements_is_refused_naming_the_field(model_copy, edit, field, value):
    def change(meta):
        meta["timing"]["max_red_s"] = 60.0
        edit(meta["intersections"][1]["movements"][2])

    edit_metadata(model_copy, change)
    assert_refused_at_load(model_copy, field, value)


@pytest.mark.parametrize("extra", [-1, 99])
def test_a_guard_on_a_green_movement_no_movement_describes_is_refused_naming_the_field(model_copy, extra):
    """A phase's green_movements index the guard cannot place: -1 made the intersection's last movement
    green in every phase (so its red never counted, and its phase could starve for good), and one past
    the movements was dropped without a word. Every phase gets it, so the intergreen table still agrees."""
    def change(meta):
        meta["timing"]["max_red_s"] = 60.0
        for phase in meta["intersections"][1]["phases"]:
            phase["green_movements"] = phase["green_movements"] + [extra]

    edit_metadata(model_copy, change)
    field = "intersections[1].phases[0].green_movements"
    meta = json.loads(model_copy[1].read_text())
    assert_refused_at_load(model_copy, field, meta["intersections"][1]["phases"][0]["green_movements"])
