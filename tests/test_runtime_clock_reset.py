"""A `t` that goes back is a clock reset, not an error (a cabinet that reboots and starts its
clock at 0, or one line with t = 1e9 that refused every later line until real time passed it), and
a reported phase other than the one the runtime expects is taken as just started: in both the
runtime's timing only ever gets longer (agents/deploy/signals.py). The property over random
clocks: tests/test_runtime_clock_property.py."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from agents.deploy.runtime import FALLBACK, PolicyRuntime
from agents.deploy.timing_rules import position
from tests.deploy_fixtures import FakeSession, edit_metadata, readings_message


def _model(runtime: PolicyRuntime, switch: bool) -> FakeSession:
    """A model that always switches to the next action (`switch`) or always keeps the phase shown."""
    lay = runtime.layout

    def choose(feed):
        rows = feed["intersection"]
        now = np.maximum(position(lay.actions[rows], feed["phase"]), 0)
        return (now + 1) % lay.num_actions[rows] if switch else now

    return FakeSession(choose)


def _shown(runtime: PolicyRuntime, t: float, tip: float) -> dict:
    """The readings of signals that show what the runtime last commanded, each for `tip` s."""
    return readings_message(runtime, t, {i: int(p) for i, p in zip(runtime.layout.ids, runtime.signals.cur_phase)},
                            tip)


def _changes(runtime: PolicyRuntime, message: dict) -> dict:
    """{intersection: (phase, switch_in_s, yellow_s, all_red_s)} of the commands that change the phase shown."""
    reply = runtime.decide(message)
    return {i: (c["phase"], c["switch_in_s"], c["yellow_s"], c["all_red_s"]) for i, c in reply["commands"].items()
            if c["phase"] != message["intersections"][i]["phase"]}


def _switch_times(runtime: PolicyRuntime, message: dict) -> set[float]:
    """When the changes the reply to `message` commands start (t + switch_in_s), each shown with
    the full clearance."""
    changes = _changes(runtime, message)
    assert {c[2:] for c in changes.values()} <= {(3.0, 2.0)}, changes
    return {message["t"] + c[1] for c in changes.values()}


def test_a_time_far_ahead_once_is_followed_by_a_clock_reset_not_a_lockout(model_copy, caplog):
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _model(runtime, switch=False)
    runtime.decide(readings_message(runtime, 0.0, tip=10.0))
    assert _switch_times(runtime, _shown(runtime, 1e9, 1e9 + 10.0)) == {1e9}  # max green, as far as t says
    runtime.session = _model(runtime, switch=True)
    with caplog.at_level(logging.WARNING, logger="gridlight.runtime"):
        reply = runtime.decide(_shown(runtime, 10.0, 3.0))
    notice = ("clock reset: t went back from 1000000000.0 to 10.0; each signal's phase taken as just started (min "
              "green from now, a clearance in progress restarted in full, a change not yet started restated after a "
              "full clearance and min green)")
    # warnings only: caplog also holds the INFO "loaded ..." line where an earlier test in this worker left
    # the logger at INFO (seen in CI's fresh clone)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert reply["faults"] == [notice] and warned == [notice]
    assert all(c["phase"] == runtime.signals.cur_phase[k] and not c["faults"]
               for k, c in enumerate(reply["commands"].values()))
    # the changes of 1e9 may be in their clearance: it restarts in full from 10, then min green
    assert np.allclose(runtime.signals.green_elapsed(10.0), -5.0)
    assert _switch_times(runtime, _shown(runtime, 14.0, 7.0)) == set()
    assert _switch_times(runtime, _shown(runtime, 16.0, 9.0)) == {20.0}
    assert runtime.decide(_shown(runtime, 21.0, 1.0))["faults"] == []  # no reset: the clock goes on from 10


def test_a_cabinet_that_reboots_to_t_0_keeps_every_green_at_least_min_green_from_0(model_copy):
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _model(runtime, switch=False)
    runtime.decide(readings_message(runtime, 500.0, tip=10.0))  # each in its green for 5 s
    runtime.session = _model(runtime, switch=True)
    reply = runtime.decide(_shown(runtime, 0.0, 0.0))  # rebooted: its clock and its phase timer start at 0
    assert reply["faults"][0].startswith("clock reset: t went back from 500.0 to 0.0;")
    assert all(c["phase"] == runtime.signals.cur_phase[k] and not c["faults"]
               for k, c in enumerate(reply["commands"].values()))
    assert np.allclose(runtime.signals.green_elapsed(0.0), 0.0)  # green from 0: min green ends at 5
    assert _switch_times(runtime, _shown(runtime, 1.0, 1.0)) == {5.0}


@pytest.mark.parametrize("timer", ["restarted", "kept"])
def test_a_green_under_way_at_a_reset_keeps_the_max_green_it_had_used(model_copy, timer):
    # each signal 15 s into its green (tip 20: 5 s of clearance assumed) at 500; the clock went back to
    # 0 and max green counted from 0 again: that green could run 20 s more, 35 s in all (max green 20).
    # It counts on from the 15 s (as if no time passed across the reset); min green from 0 still holds
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _model(runtime, switch=False)
    assert _switch_times(runtime, readings_message(runtime, 500.0, tip=20.0)) == set()
    kept = 0.0 if timer == "restarted" else 20.0
    assert _switch_times(runtime, _shown(runtime, 0.0, kept)) == set()
    assert np.allclose(runtime.signals.green_elapsed(0.0), 0.0)  # min green from the reset
    assert np.allclose(runtime.signals.max_elapsed(0.0), 15.0)
    assert _switch_times(runtime, _shown(runtime, 1.0, kept + 1.0)) == {5.0}  # 15 + 5 s: max green, and min green


def test_a_green_in_its_clearance_by_a_later_start_read_keeps_at_a_reset_the_max_green_it_had_used(model_copy):
    # phase 1 switched to at 0 (green from 5); at 18 its timer said 0.5 s in phase, a later start taken as
    # far as max green allows (15: in its clearance by that start, 13 s of green by the runtime's own). At
    # the reset it counted as a clearance in progress, and max green started again after it: the green
    # from 5 ran 13 s + 25 s (max green 20). Min green counts from the reset after the full clearance
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _model(runtime, switch=False)
    victim = runtime.layout.ids[1]
    assert _switch_times(runtime, readings_message(runtime, 0.0, tip=100.0)) == {0.0}  # max green: phase 1 now
    for t in (5.0, 10.0, 15.0):
        assert _switch_times(runtime, _shown(runtime, t, t)) == set()
    lying = _shown(runtime, 18.0, 18.0)
    lying["intersections"][victim]["time_in_phase"] = 0.5
    assert _switch_times(runtime, lying) == set()
    assert runtime.signals.green_elapsed(18.0)[1] == -2.0 and runtime.signals.max_elapsed(18.0)[1] == 13.0
    assert _switch_times(runtime, _shown(runtime, 1.0, 1.0)) == set()  # rebooted: its timer restarted
    assert runtime.signals.green_elapsed(1.0)[1] == -5.0 and runtime.signals.max_elapsed(1.0)[1] == 13.0
    # the others: 13 s of green, 7 more to max green (min green from 1 ends at 6); the victim at min green
    assert _switch_times(runtime, _shown(runtime, 7.0, 7.0)) == {8.0, 11.0}


def test_a_younger_time_in_phase_after_a_reset_does_not_hold_a_green_past_max_green(model_copy):
    # each signal 13 s into its green at 18 when the clock went back to 1; at 3 one said 0.5 s in phase, a
    # later start taken (2.5). That took the clearance as shown before it too, and max green, counted on
    # from the 13 s, lost 5 s: that green ran 13 + 12 s (max green 20)
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _model(runtime, switch=False)
    victim = runtime.layout.ids[1]
    assert _switch_times(runtime, readings_message(runtime, 0.0, tip=100.0)) == {0.0}
    for t in (5.0, 10.0, 15.0, 18.0):
        assert _switch_times(runtime, _shown(runtime, t, t)) == set()
    assert _switch_times(runtime, _shown(runtime, 1.0, 1.0)) == set()
    lying = _shown(runtime, 3.0, 3.0)
    lying["intersections"][victim]["time_in_phase"] = 0.5
    assert _switch_times(runtime, lying) == set()
    assert runtime.signals.max_elapsed(3.0)[1] == 15.0
    assert _switch_times(runtime, _shown(runtime, 7.0, 7.0)) == {8.0}  # min green from 2.5 ends at 7.5 before


@pytest.mark.parametrize("timer", ["restarted", "kept"])
def test_a_clearance_in_progress_at_a_reset_restarts_in_full(model_copy, timer):
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _model(runtime, switch=True)
    assert _switch_times(runtime, readings_message(runtime, 100.0, tip=100.0)) == {100.0}  # every signal
    # 2 s into the clearance the clock goes back to 1; the signal's time in phase restarted, or not
    kept = 0.0 if timer == "restarted" else 2.0
    assert _switch_times(runtime, _shown(runtime, 1.0, kept)) == set()
    assert np.allclose(runtime.signals.green_elapsed(1.0), -5.0)  # yellow + all-red again, from 1
    assert _switch_times(runtime, _shown(runtime, 6.0, 5.0 + kept)) == set()
    assert _switch_times(runtime, _shown(runtime, 6.5, 5.5 + kept)) == {11.0}  # 5 s of clearance, 5 of min green
    assert not any(c["faults"] for c in runtime.decide(_shown(runtime, 11.0, 0.0))["commands"].values())


@pytest.mark.parametrize("reported", ["old", "new"])
def test_a_change_not_yet_started_at_a_reset_is_restated_after_a_full_clearance_and_min_green(model_copy, reported):
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _model(runtime, switch=True)
    victim = runtime.layout.ids[1]
    command = runtime.decide(readings_message(runtime, 100.0, tip=7.0))["commands"][victim]
    new = command["phase"]
    assert (command["switch_in_s"], command["yellow_s"]) == (3.0, 3.0)  # to start at 103
    message = readings_message(runtime, 50.0, tip=8.0)  # the clock went back before it started (its timer kept on)
    if reported == "new":  # it had started as the cabinet rebooted (its timer restarted)
        message["intersections"][victim].update(phase=new, time_in_phase=0.0)
    command = runtime.decide(message)["commands"][victim]
    # not with 53 s still to go, nor dropped or taken as made on the phase read (tests/test_runtime_replies_obeyed.py):
    # after the old phase's full clearance and min green from 50, with its clearance; either phase read is no fault
    assert (command["phase"], command["switch_in_s"], command["yellow_s"], command["faults"]) == (new, 10.0, 3.0, [])
    assert runtime.signals.green_elapsed(60.0)[1] == -5.0
    message = readings_message(runtime, 55.0, tip=13.0)
    if reported == "new":
        message["intersections"][victim].update(phase=new, time_in_phase=5.0)
    command = runtime.decide(message)["commands"][victim]
    assert (command["phase"], command["switch_in_s"], command["faults"]) == (new, 5.0, [])


def test_a_time_that_is_not_finite_is_still_refused_after_a_reset(model_copy):
    runtime = PolicyRuntime(*model_copy)
    runtime.decide(readings_message(runtime, 100.0))
    runtime.decide(readings_message(runtime, 0.0))
    for t in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="field 't' must be a"):
            runtime.decide(readings_message(runtime, t))
    assert runtime.last_t == 0.0


def _phase_2_inside_phase_0(meta: dict) -> None:
    """Intersection 0's phase 2 greens only movements phase 0 greens too: switching 2 -> 0 ends
    no green (no clearance), 1 -> 0 does (the intergreen table made again from the movements)."""
    entry = meta["intersections"][0]
    phases = entry["phases"]
    phases[2]["green_movements"] = phases[0]["green_movements"][:1]
    greens = [set(phase["green_movements"]) for phase in phases]
    entry["intergreen_after_switch"] = [[bool(p - q) for q in greens] for p in greens]


def test_a_phase_other_than_the_expected_one_is_commanded_fully_cleared_and_the_change_after_it_by_the_table(
        model_copy):
    # a signal that shows phase 1 wrongly read as phase 2 is commanded into phase 2 (after min green, with
    # the full clearance): from then it shows phase 2 whichever it showed before, so the change after it
    # needs only the clearance 2 -> 0 needs (none; 1 -> 0 needs yellow and all-red)
    edit_metadata(model_copy, _phase_2_inside_phase_0)
    runtime = PolicyRuntime(*model_copy)
    lay = runtime.layout
    victim = lay.ids[0]
    assert not lay.intergreen[0, 2, 0] and lay.intergreen[0, 1, 0]
    runtime.session = FakeSession(lambda feed: np.where(feed["intersection"] == 0, 1, 0))  # keep 1 at victim
    ones = {i: int(lay.actions[k, 1]) for k, i in enumerate(lay.ids)}
    runtime.decide(readings_message(runtime, 0.0, ones, tip=10.0))
    assert runtime.signals.cur_phase[0] == 1
    message = readings_message(runtime, 5.0, ones | {victim: 2}, tip=115.0)
    command = runtime.decide(message)["commands"][victim]
    assert command["source"] == FALLBACK and command["faults"] == [
        "signal reports phase 2 for 115 s; the controller commanded phase 1 15 s ago; phase 2 taken as just "
        "started: commanded as a change from phase 1 once its min green is over, with the longest clearance into "
        "phase 2 (the reading may be wrong)"]
    assert runtime.signals.green_elapsed(5.0)[0] == -5.0  # its 115 s are not taken: clearance, then min green
    assert command["phase"] == 2  # nothing before min green, the fallback plan's change neither
    runtime.session = FakeSession(lambda feed: np.zeros(len(feed["phase"]), dtype=np.int64))  # phase 0 everywhere
    command = runtime.decide(readings_message(runtime, 14.0, ones | {victim: 2}, tip=124.0))["commands"][victim]
    assert command["source"] == "policy" and not command["faults"]  # its start stands at 5: no new fault
    # the change into phase 2 (at 5, with the full clearance) has been made whichever phase the signal
    # showed: the next one is cleared by the table (2 -> 0 ends no green); it was sent the longest
    # clearance into phase 0 as well (3 s of yellow, 2 of all-red, that nothing needed)
    assert (command["phase"], command["switch_in_s"], command["yellow_s"], command["all_red_s"]) == (0, 1.0, 0.0, 0.0)
