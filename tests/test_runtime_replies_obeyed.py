"""Each reply is what a signal that obeys it carries out: the phase it names, `switch_in_s` after
`t`, with the yellow and all-red it states, in place of any earlier reply. So a reply must be safe
for whatever phase the signal may really show: one that names a phase other than the one shown is a
change, and must wait for min green and carry the clearance; one sent before a commanded change has
started must state that change again (docs/deployment.md, "A phase other than the expected one" and
"Protocol")."""

from __future__ import annotations

import numpy as np

from agents.deploy.runtime import PolicyRuntime
from tests.deploy_fixtures import FakeSession, edit_metadata, readings_message


def _always(action: int) -> FakeSession:
    return FakeSession(lambda feed: np.full(len(feed["phase"]), action, dtype=np.int64))


def _command(runtime: PolicyRuntime, message: dict, inter_id: str) -> tuple:
    command = runtime.decide(message)["commands"][inter_id]
    return command, (command["phase"], command["switch_in_s"], command["yellow_s"], command["all_red_s"])


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
