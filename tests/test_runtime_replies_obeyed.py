"""Each reply is what a signal that obeys it carries out: the phase it names, `switch_in_s` after
`t`, with the yellow and all-red it states, in place of any earlier reply. So a reply must be safe
for whatever phase the signal may really show: one that names a phase other than the one shown is a
change, and must wait for min green and carry the clearance; one sent before a commanded change has
started must state that change again (docs/deployment.md, "A phase other than the expected one" and
"Protocol")."""

from __future__ import annotations

import numpy as np
import pytest

from agents.deploy.runtime import FALLBACK, PolicyRuntime
from tests.deploy_fixtures import FakeSession, edit_metadata, readings_message


def _always(action: int) -> FakeSession:
    return FakeSession(lambda feed: np.full(len(feed["phase"]), action, dtype=np.int64))


def _command(runtime: PolicyRuntime, message: dict, inter_id: str) -> tuple:
    command = runtime.decide(message)["commands"][inter_id]
    return command, (command["phase"], command["switch_in_s"], command["yellow_s"], command["all_red_s"])


@pytest.mark.parametrize("shown", ["1, misread", "2, as read"])
def test_a_misread_phase_is_commanded_after_min_green_with_its_clearance_not_switched_to_now(model_copy, shown):
    # the signal obeyed: phase 1 from 0 (yellow and all-red to 5, then green); at 7 a flicker read
    # its phase as 2. The reply was phase 2, switch_in_s 0, no yellow, no all-red: the signal ended
    # phase 1's green after 2 s of its 5, with no clearance, where 1 -> 2 needs both
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _always(1)
    lay = runtime.layout
    victim = lay.ids[1]
    assert lay.intergreen[1, 1, 2]
    zeros, ones = {i: 0 for i in lay.ids}, {i: 1 for i in lay.ids}
    assert _command(runtime, readings_message(runtime, 0.0, zeros, tip=100.0), victim)[1] == (1, 0.0, 3.0, 2.0)
    command, stated = _command(runtime, readings_message(runtime, 7.0, ones | {victim: 2}, tip=7.0), victim)
    assert command["source"] == FALLBACK and command["faults"][0].startswith("signal reports phase 2 for 7 s;")
    # phase 2 is commanded as a change from phase 1: when phase 1's min green is over (green from 5
    # to 10), with yellow and all-red; a signal that really shows 2 does nothing
    assert stated == (2, 3.0, 3.0, 2.0)
    # the next message finds phase 1 (the reading was wrong) or phase 2 (it was right): neither a
    # fault, and the change is stated again as it was given
    message = readings_message(runtime, 8.0, ones | {victim: 1 if shown.startswith("1") else 2},
                               tip=8.0 if shown.startswith("1") else 108.0)
    command, stated = _command(runtime, message, victim)
    assert stated == (2, 2.0, 3.0, 2.0) and not command["faults"]


def test_a_misread_phase_after_min_green_is_commanded_now_with_its_clearance(model_copy):
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _always(1)
    lay = runtime.layout
    victim = lay.ids[1]
    ones = {i: 1 for i in lay.ids}
    runtime.decide(readings_message(runtime, 0.0, ones, tip=12.0))  # phase 1, 7 s of green
    command, stated = _command(runtime, readings_message(runtime, 5.0, ones | {victim: 2}, tip=17.0), victim)
    assert command["faults"] and stated == (2, 0.0, 3.0, 2.0)  # was (2, 0.0, 0.0, 0.0): no clearance


def _phase_2_greens_phase_1s_movements(meta: dict) -> None:
    """Intersection 1's phase 2 greens every movement phase 1 greens, and its own: 1 -> 2 ends no
    green (no clearance), 0 -> 2 does (the intergreen table made again from the movements)."""
    entry = meta["intersections"][1]
    phases = entry["phases"]
    phases[2]["green_movements"] = sorted(set(phases[1]["green_movements"]) | set(phases[2]["green_movements"]))
    greens = [set(phase["green_movements"]) for phase in phases]
    entry["intergreen_after_switch"] = [[bool(p - q) for q in greens] for p in greens]


def test_a_message_before_a_commanded_change_starts_cannot_replace_it_with_another(model_copy):
    # decisions 20 s apart, min green 5 s: at 0 the change 0 -> 1 was commanded for 3 (min green);
    # a message at 1, before it started, was answered "phase 2 at 13, no clearance" (1 -> 2 ends no
    # green): the signal, still on phase 0, dropped the change to 1 and switched 0 -> 2 at 13
    # without the yellow and all-red that 0 -> 2 needs
    def edit(meta):
        meta["timing"]["decision_interval_s"] = 20
        _phase_2_greens_phase_1s_movements(meta)

    edit_metadata(model_copy, edit)
    runtime = PolicyRuntime(*model_copy)
    lay = runtime.layout
    victim = lay.ids[1]
    assert lay.intergreen[1, 0, 2] and not lay.intergreen[1, 1, 2]
    runtime.session = _always(1)
    assert _command(runtime, readings_message(runtime, 0.0, tip=7.0), victim)[1] == (1, 3.0, 3.0, 2.0)
    runtime.session = _always(2)
    command, stated = _command(runtime, readings_message(runtime, 1.0, tip=8.0), victim)
    assert stated == (1, 2.0, 3.0, 2.0) and not command["faults"]  # the change to 1, as it was given


@pytest.mark.parametrize("shown", ["1, made before the reboot, misread as 0", "0, not made, misread as 1"])
def test_a_change_still_to_start_at_a_clock_reset_is_restated_whatever_phase_is_read(model_copy, shown):
    # at 100, phase 0 -> 1 was commanded for 103; the cabinet's clock went back to 50. Whether the
    # change was made before that was decided by the phase read alone: read as 0, the change was
    # dropped and the reply "phase 0, no change" switched a cabinet on phase 1 back with no
    # clearance; read as 1, it was taken as made and "phase 1, no change" switched a cabinet
    # still on phase 0 with no clearance and 0 s of green in the new clock
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _always(1)
    victim = runtime.layout.ids[1]
    assert _command(runtime, readings_message(runtime, 100.0, tip=7.0), victim)[1] == (1, 3.0, 3.0, 2.0)
    read = 0 if shown.startswith("1") else 1
    message = readings_message(runtime, 50.0, tip=8.0)
    message["intersections"][victim].update(phase=read, time_in_phase=0.0)
    command, stated = _command(runtime, message, victim)
    # the change again, after a full clearance and min green of the phase before it, with its clearance
    assert stated == (1, 10.0, 3.0, 2.0)


def test_a_later_start_taken_from_the_signal_does_not_let_a_later_report_claim_an_earlier_one(model_copy):
    # phase 1 commanded at 0; the signal made it at 2 (a late command) and said so at 2.5 (0.5 s in
    # phase, more than the 1 s tolerance later than told: its later start is taken, green from 7).
    # At 10 its clock glitched to 50 s in phase: taking that start (before the switch the runtime
    # commanded) was refused only for a phase whose phase before it was known, and taking the later
    # start had forgotten that one: phase 1 was ended after 3 s of green
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _always(1)
    lay = runtime.layout
    victim = lay.ids[1]
    ones = {i: 1 for i in lay.ids}
    assert _command(runtime, readings_message(runtime, 0.0, tip=100.0), victim)[1] == (1, 0.0, 3.0, 2.0)
    command, _ = _command(runtime, readings_message(runtime, 2.5, ones, tip=0.5), victim)
    assert command["faults"][0].startswith("signal reports phase 1 for 0.5 s")
    runtime.session = _always(2)
    command, stated = _command(runtime, readings_message(runtime, 10.0, ones, tip=50.0), victim)
    assert command["faults"][0].startswith("signal reports phase 1 for 50 s")
    # its green counts from 7, not from the reading's -35: 3 s, so the fallback plan keeps it
    assert runtime.signals.green_elapsed(10.0)[1] == 3.0 and stated == (1, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("reported", [0.5, 100.0])
def test_a_start_reported_for_the_phase_before_a_change_still_to_start_never_drops_that_change(model_copy, reported):
    # phase 0 read at 0 (7 s in it: 2 s of green after an assumed clearance), 0 -> 1 commanded for 3;
    # at 1 the signal said 0.5 s in phase 0 (a later start than the runtime's): that start was taken
    # and the change dropped ("phase 0, no change"), so a signal whose phase timer lied held phase 0
    # past max green. A time off either way is a fault; the change is stated again as it was given
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _always(1)
    victim = runtime.layout.ids[1]
    assert _command(runtime, readings_message(runtime, 0.0, tip=7.0), victim)[1] == (1, 3.0, 3.0, 2.0)
    command, stated = _command(runtime, readings_message(runtime, 1.0, tip=reported), victim)
    assert command["faults"][0].startswith(f"signal reports phase 0 for {reported:g} s;")
    assert stated == (1, 2.0, 3.0, 2.0)
    command, stated = _command(runtime, readings_message(runtime, 2.0, tip=reported + 1.0), victim)
    assert stated == (1, 1.0, 3.0, 2.0)
    # the signal shows the change made: no fault, the phase kept
    command, stated = _command(runtime, readings_message(runtime, 4.0, {i: 1 for i in runtime.layout.ids},
                                                         tip=1.0), victim)
    assert not command["faults"] and stated == (1, 0.0, 0.0, 0.0)


def test_a_fault_during_a_change_still_to_start_says_when_it_starts_not_a_negative_age(model_copy):
    # phase 2 commanded at 7 to start at 10 (after phase 1's min green); at 8 the signal reads phase 0:
    # the fault said "the controller commanded phase 2 -2 s ago"
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _always(1)
    lay = runtime.layout
    victim = lay.ids[1]
    zeros, ones = {i: 0 for i in lay.ids}, {i: 1 for i in lay.ids}
    runtime.decide(readings_message(runtime, 0.0, zeros, tip=100.0))
    assert _command(runtime, readings_message(runtime, 7.0, ones | {victim: 2}, tip=7.0), victim)[1][:2] == (2, 3.0)
    command, _ = _command(runtime, readings_message(runtime, 8.0, ones | {victim: 0}, tip=8.0), victim)
    assert command["faults"][0].startswith("signal reports phase 0 for 8 s; the controller commanded phase 2 to start "
                                           "in 2 s;"), command["faults"]


def test_an_earlier_start_read_after_the_first_does_not_end_that_green_before_min_green(model_copy):
    # phase 0 read at 0 just switched to (its clearance to 5, green after it), a phase the runtime never
    # commanded; at 5 the signal's clock glitched to 45 s in phase. That start was taken for min green too:
    # the green, 40 s old by it and past max green, was ended at 5 after 0 s. Min green counts from the
    # latest start read, max green from the earliest
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _always(0)
    victim = runtime.layout.ids[1]
    assert _command(runtime, readings_message(runtime, 0.0, tip=0.0), victim)[1] == (0, 0.0, 0.0, 0.0)
    command, stated = _command(runtime, readings_message(runtime, 5.0, tip=45.0), victim)
    assert command["faults"][0].startswith("signal reports phase 0 for 45 s") and stated[0] == 0
    command, stated = _command(runtime, readings_message(runtime, 7.0, tip=7.0), victim)
    assert not command["faults"] and stated == (1, 3.0, 3.0, 2.0)  # min green from 5 ends at 10: max green


@pytest.mark.parametrize("read", ["old phase", "missing"])
def test_the_old_phase_read_within_the_tolerance_after_a_change_started_restates_that_change(model_copy, read):
    # phase 0 past max green at 0: phase 1 commanded now. At 0.5 the signal, switching late (within the 1 s
    # tolerance, as a command that reached it late), still showed phase 0: that was taken as another phase,
    # commanded as a change from 1 after 1's min green (at 10), and in place of "phase 1 now" the signal kept
    # phase 0 for 10 s more (max green 20). The change is stated again: now, with its clearance (where the
    # message had no readings of it, "phase 1, no change" switched a signal still on phase 0 with none)
    runtime = PolicyRuntime(*model_copy)
    runtime.session = _always(0)
    victim = runtime.layout.ids[1]
    assert _command(runtime, readings_message(runtime, 0.0, tip=100.0), victim)[1] == (1, 0.0, 3.0, 2.0)
    message = readings_message(runtime, 0.5, tip=100.5)
    if read == "missing":
        del message["intersections"][victim]
    command, stated = _command(runtime, message, victim)
    assert stated == (1, 0.0, 3.0, 2.0) and (read == "missing" or not command["faults"])
    command, stated = _command(runtime, readings_message(runtime, 5.0, {i: 1 for i in runtime.layout.ids}, tip=4.5),
                               victim)
    assert stated[0] == 1 and not command["faults"]
    assert runtime.signals.green_elapsed(5.0)[1] == -0.5  # min green from its own start at 0.5
