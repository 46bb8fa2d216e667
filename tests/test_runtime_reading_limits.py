"""The edges of what the policy runtime accepts (agents/deploy/readings.py, signals.py,
metadata.py; docs/deployment.md "The metadata JSON", "The runtime" and "Fail-safe"): a reading at
exactly a lane's capacity, a time in phase of 0 and timings on their documented bounds are good;
a phase index equal to the phase count, a fractional phase, a lane list one too long, and
metadata the runtime cannot run (a longer action list than the model's head, an empty plan, a
short intergreen table, a repeated id, a plan phase past the last) are faults or refusals. After
a signal did something else, its previous phase is unknown and the intergreen is assumed."""

from __future__ import annotations

import numpy as np
import pytest

from agents.deploy.runtime import FALLBACK, POLICY, PolicyRuntime
from tests.deploy_fixtures import FakeSession, assert_refused_at_load, edit_metadata, follow, readings_message


def test_a_lane_reading_at_exactly_its_capacity_is_good_beside_a_bad_intersection(model_copy):
    # capacity is "the plausible range of a reading": [0, capacity], so a full lane is no fault,
    # also when another intersection's bad reading sends the message through the detailed checks
    runtime = PolicyRuntime(*model_copy)
    full, broken = runtime.layout.ids[0], runtime.layout.ids[1]
    message = readings_message(runtime, 0.0)
    capacity = float(runtime.layout.lane_max[0, 0])
    message["intersections"][full]["lane_count"][0] = capacity
    message["intersections"][broken]["lane_count"][0] = -1.0
    reply = runtime.decide(message)
    assert reply["commands"][broken]["source"] == FALLBACK
    assert reply["commands"][full]["faults"] == [] and reply["commands"][full]["source"] == POLICY


@pytest.mark.parametrize("phase", ["count", 1.5])
def test_a_phase_that_is_not_an_index_of_the_intersections_phases_is_a_fault(model_copy, phase):
    # the phases are 0 .. count - 1: the count itself is one past the last, and 1.5 no index at all
    runtime = PolicyRuntime(*model_copy)
    victim = runtime.layout.ids[0]
    given = int(runtime.layout.num_phases[0]) if phase == "count" else phase
    message = readings_message(runtime, 0.0)
    message["intersections"][victim]["phase"] = given
    command = runtime.decide(message)["commands"][victim]
    assert command["source"] == FALLBACK
    assert command["faults"] == [f"phase: {given:g} is not a phase index in [0, {int(runtime.layout.num_phases[0])})"]


def test_a_signal_that_has_just_switched_time_in_phase_0_is_good(model_copy):
    # a time in phase is "a number of seconds >= 0": a phase that started this very second is read
    runtime = PolicyRuntime(*model_copy)
    reply = runtime.decide(readings_message(runtime, 0.0, tip=0.0))
    assert {c["source"] for c in reply["commands"].values()} == {POLICY}
    assert all(c["faults"] == [] for c in reply["commands"].values())


def test_a_lane_list_one_longer_than_the_lanes_is_that_intersections_fault_not_an_error(model_copy):
    # "a problem inside one intersection's readings is that intersection's fault, not an error":
    # an extra value cannot be matched to a lane, so the list is refused as a whole
    runtime = PolicyRuntime(*model_copy)
    victim, lanes = runtime.layout.ids[1], int(runtime.layout.num_lanes[1])
    message = readings_message(runtime, 0.0)
    message["intersections"][victim]["lane_count"].append(2.0)
    reply = runtime.decide(message)
    assert reply["commands"][victim]["source"] == FALLBACK
    assert reply["commands"][victim]["faults"] == [
        f"lane_count: expected a list of {lanes} numbers, got list of length {lanes + 1}"]
    assert {c["source"] for k, c in reply["commands"].items() if k != victim} == {POLICY}


def test_after_a_signal_did_something_else_min_green_counts_from_an_assumed_intergreen(model_copy):
    """The runtime commands phase b; the signal reports phase a again, started 1 s ago. How it got
    there is unknown (the reading may be wrong, b still shown), so the runtime commands a as a
    change from b once b's min green is over (at 10), and takes a as just started then, with a
    yellow + all-red assumed (agents/deploy/signals.py), not the change it once commanded (a -> a,
    no intergreen) nor the signal's 1 s: min green then ends 5 + 5 s after that, at 20."""
    runtime = PolicyRuntime(*model_copy)
    runtime.session = FakeSession(choose=lambda feed: np.ones(len(feed["phase"]), dtype=np.int64))  # always b
    k = 1
    victim, a, b = runtime.layout.ids[k], int(runtime.layout.actions[k, 0]), int(runtime.layout.actions[k, 1])
    assert not runtime.layout.intergreen[k, a, a]  # a -> a itself shows no intergreen
    message = readings_message(runtime, 0.0, tip=100.0)
    reply = runtime.decide(message)
    assert reply["commands"][victim]["phase"] == b and reply["commands"][victim]["switch_in_s"] == 0.0
    message = follow(runtime, message, reply, 5.0)
    message["intersections"][victim].update(phase=a, time_in_phase=1.0)  # not what it was told
    reply = runtime.decide(message)
    assert "controller commanded" in reply["commands"][victim]["faults"][0]
    message = follow(runtime, message, reply, 5.0)  # t = 10: a for 5 s by the runtime's count, none of it green
    reply = runtime.decide(message)
    assert reply["commands"][victim]["phase"] == a and reply["commands"][victim]["source"] == POLICY
    message = follow(runtime, message, reply, 5.0)  # t = 15
    reply = runtime.decide(message)
    assert reply["commands"][victim]["phase"] == a
    command = runtime.decide(follow(runtime, message, reply, 5.0))["commands"][victim]  # t = 20
    timing = runtime.timing
    assert (command["phase"], command["switch_in_s"]) == (b, 0.0)  # at 10 + intergreen + min green
    assert (command["yellow_s"], command["all_red_s"]) == (timing.yellow_s, timing.all_red_s)


def test_a_signal_never_seen_is_sent_its_plans_first_phase_at_once(model_copy):
    # "only a signal whose phase it has never read is treated as unknown (no min green to wait
    # for ...)": its fallback starts the plan now, whatever the plan's first phase
    # the plan starts on its last phase, not on phase 0
    meta = edit_metadata(model_copy, lambda m: m["intersections"][1]["fallback_plan"].reverse())
    plan = meta["intersections"][1]["fallback_plan"]
    runtime = PolicyRuntime(*model_copy)
    victim = runtime.layout.ids[1]
    message = readings_message(runtime, 0.0)
    del message["intersections"][victim]  # its phase never read
    command = runtime.decide(message)["commands"][victim]
    assert command["source"] == FALLBACK and command["faults"] == ["readings missing"]
    assert (command["phase"], command["switch_in_s"]) == (plan[0]["phase"], 0.0)
    assert (command["yellow_s"], command["all_red_s"]) == (3.0, 2.0)


@pytest.mark.parametrize("edit", [
    {"min_green_s": 20, "max_green_s": 20},  # refused is max green *below* min green, not equal to it
    {"all_red_s": 0},  # timings are finite and >= 0: a signal without all-red is a real signal
])
def test_metadata_timings_on_their_documented_bounds_load(model_copy, edit):
    edit_metadata(model_copy, lambda m: m["timing"].update(edit))
    runtime = PolicyRuntime(*model_copy)
    assert all(getattr(runtime.timing, name) == value for name, value in edit.items())
    assert runtime.model_fault is None


def _wider_action_list(meta: dict) -> None:
    """Intersection 1 gets a fifth phase and a fifth action (and a phase_onehot of 5), so that
    only the model's action head (4 logits) can tell the list is longer than the model's."""
    entry = meta["intersections"][1]
    entry["phases"].append(dict(entry["phases"][-1], index=4))
    greens = [set(phase["green_movements"]) for phase in entry["phases"]]  # the table they make
    entry["intergreen_after_switch"] = [[bool(p - q) for q in greens] for p in greens]
    entry["actions"].append(4)
    for feature in meta["observation"]["features"]:
        if feature["name"] == "phase_onehot":
            feature["size"] = 5


@pytest.mark.parametrize("edit, field, value", [
    # longer than the action head: it named an action the model never takes (shorter is tested elsewhere)
    (_wider_action_list, "intersections[1].actions", [0, 1, 2, 3, 4]),
    # two intersections under one id: a message's readings could not say which is which
    (lambda m: m["intersections"][1].update(id="intersection_1_1"), "intersections[].id",
     ["intersection_1_1", "intersection_1_1", "intersection_2_1", "intersection_2_2"]),
    # intersection 0 has phases 0, 1, 2: a plan step on phase 3 would command a phase it does not have
    (lambda m: m["intersections"][0]["fallback_plan"][2].update(phase=3), "intersections[0].actions",
     [0, 1, 2, 0, 1, 3]),
    # JSON true is no phase index, though Python counts it as 1
    (lambda m: m["intersections"][0]["fallback_plan"][1].update(phase=True),
     "intersections[0].fallback_plan[1].phase", True),
    # an empty plan leaves the fail-safe nothing to run
    (lambda m: m["intersections"][0].update(fallback_plan=[]), "intersections[0].fallback_plan", []),
    # a table missing phase 3's row and column: switching into phase 3 would show no yellow or all-red
    (lambda m: m["intersections"][1].update(intergreen_after_switch=[
        row[:3] for row in m["intersections"][1]["intergreen_after_switch"][:3]]),
     "intersections[1].intergreen_after_switch", (3, 3)),
    # no observation section: it is named, not reported as malformed intersections
    (lambda m: m.pop("observation"), "observation", None),
    # JSON true is no feature size, though Python counts it as time_in_phase's 1
    (lambda m: m["observation"]["features"][1].update(size=True), "observation.features[1].size", True),
])
def test_metadata_the_runtime_cannot_run_is_refused_naming_the_field(model_copy, edit, field, value):
    edit_metadata(model_copy, edit)
    assert_refused_at_load(model_copy, field, value)

