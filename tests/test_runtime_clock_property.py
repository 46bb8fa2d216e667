"""Property: whatever the cabinet's clock does (messages one decision interval apart or sooner,
jumps ahead, and jumps back: a reboot to 0, a clock set back, a last time far ahead), a signal that
does what the runtime tells it never ends a green shorter than min green, and every change is
served with at least the clearance its real phases need, both measured in the cabinet's own clock:
a green that runs across a jump back is measured from the first message of the new clock (the
moment the old clock stopped meaning anything), a clearance in progress at it restarts there. Its
phase is sometimes misread as another (at a reset too), and decisions come 5 s or 20 s apart
(`interval_model`); a reply sent before a commanded change starts states that change again.

The signal here is the test's own (as in test_runtime_safety_property.py): it switches at the
clock time ``t + switch_in_s`` to the commanded phase; its old clock runs on a little after the
last message before a jump back (a change due by then is made, a later one lost), and its phase
timer restarts at 0 or keeps counting."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agents.deploy.runtime import PolicyRuntime
from tests.deploy_fixtures import FakeSession

DECISIONS = 40
# the clock's next reading: one interval on, sooner, a jump ahead, or a jump back
STEPS = ["interval", "interval", "interval", "sooner", "sooner", "ahead", "far_ahead", "back", "to_zero"]
READINGS = ["good", "good", "good", "good", "missing", "phase_unreadable", "time_unreadable", "phase_misread"]


def _entry(runtime: PolicyRuntime, k: int, phase: int, tip: float, kind: str, misread: int = 1):
    if kind == "missing":
        return None
    lanes = int(runtime.layout.num_lanes[k])
    entry = {name: [1.0] * lanes for name in runtime.lane_readings}
    entry["lane_halting"] = [0.0] * lanes
    entry["phase"], entry["time_in_phase"] = phase, tip
    if kind == "phase_unreadable":
        entry["phase"] = "green"
    elif kind == "phase_misread":  # another of its phases (a flicker)
        entry["phase"] = (phase + misread) % int(runtime.layout.num_phases[k])
    elif kind == "time_unreadable":
        entry["time_in_phase"] = -1.0
    return entry


# no shrinking: it ran for minutes, and a failure already lists the violations and every message
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=[Phase.generate])
@given(data=st.data())
def test_no_clock_jump_breaks_min_green_or_the_clearance_in_the_cabinets_clock(interval_model, data):
    runtime = PolicyRuntime(interval_model)
    lay, timing = runtime.layout, runtime.timing
    count, interval = len(lay.ids), timing.decision_interval_s
    intergreen = timing.yellow_s + timing.all_red_s
    actions = {}
    runtime.session = FakeSession(lambda feed: np.asarray(actions["now"][:len(feed["phase"])], dtype=np.int64))
    phase = lay.actions[:, 0].copy()  # what each signal shows
    switched = np.full(count, -100.0)  # clock time of its switch to it (its timer: `timer`)
    timer_at = np.zeros(count)  # the phase timer's reading at `switched`
    green_from = np.full(count, -np.inf)  # clock time its green starts (or the new clock's first message)
    first = np.ones(count, dtype=bool)  # still the green shown before the runtime took over
    pending: list[tuple[int, float, tuple[float, float]] | None] = [None] * count
    greens, clearances, log = [], [], []

    def switch(k: int, at: float) -> None:
        target, _, served = pending[k]
        pending[k] = None
        if not first[k]:
            greens.append((k, at - green_from[k], at, green_from[k]))
        needed = (float(timing.yellow_s), float(timing.all_red_s)) if lay.intergreen[k, phase[k], target] else (0, 0)
        clearances.append((k, int(phase[k]), target, served, needed))
        phase[k], switched[k], timer_at[k], first[k] = target, at, 0.0, False
        green_from[k] = at + (intergreen if served[0] or served[1] else 0.0)

    t = 0.0
    for step in range(DECISIONS):
        kind = data.draw(st.sampled_from(STEPS)) if step else "interval"
        if kind in ("back", "to_zero"):  # the old clock stops; the new one starts at the next message
            new_t = 0.0 if kind == "to_zero" else data.draw(st.floats(0.0, max(t - 0.5, 0.0)))
            if new_t < t:
                stop = t + data.draw(st.sampled_from([0.0, 0.5, 1.0])) * interval  # the old clock's last second
                for k in range(count):
                    if pending[k] is not None and pending[k][1] <= stop:  # made before the reset; later, lost
                        switch(k, pending[k][1])
                    pending[k] = None
                    keep_timer = data.draw(st.booleans())
                    timer_at[k] = (stop - switched[k] + timer_at[k]) if keep_timer else 0.0
                    # in the new clock: a green under way counts from the reset; a clearance has its rest to run
                    green_from[k] = new_t + max(green_from[k] - stop, 0.0)
                    switched[k] = new_t
            t = new_t
        else:
            gap = {"interval": interval, "sooner": data.draw(st.sampled_from([0.0, 0.2, 0.5])) * interval,
                   "ahead": data.draw(st.floats(0.5, 3.0)) * interval, "far_ahead": 1e9}[kind]
            for k in range(count):  # changes due by then happen at their clock time
                if pending[k] is not None and pending[k][1] <= t + gap:
                    switch(k, pending[k][1])
            t += gap
        actions["now"] = data.draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
        kinds = data.draw(st.lists(st.sampled_from(READINGS), min_size=count, max_size=count))
        message = {"t": t, "intersections": {}}
        for k, inter_id in enumerate(lay.ids):
            entry = _entry(runtime, k, int(phase[k]), float(t - switched[k] + timer_at[k]), kinds[k],
                           data.draw(st.integers(1, int(lay.num_phases[k]) - 1)))
            if entry is not None:
                message["intersections"][inter_id] = entry
        reply = runtime.decide(message)
        assert "commands" in reply, reply
        log.append((kind, t, [(int(phase[k]), kinds[k], reply["commands"][i]["phase"],
                               reply["commands"][i]["switch_in_s"]) for k, i in enumerate(lay.ids)], reply["faults"]))
        for k, inter_id in enumerate(lay.ids):
            command = reply["commands"][inter_id]
            if pending[k] is not None:  # a change still to start: stated again (or, where another phase was
                # read, that phase in its place, when it was due)
                reported = (message["intersections"].get(inter_id) or {}).get("phase")
                assert t + command["switch_in_s"] == pending[k][1], (k, command, pending[k], log)
                assert command["phase"] in (pending[k][0], reported), (k, command, pending[k], log)
            if command["phase"] != phase[k]:
                pending[k] = (command["phase"], t + command["switch_in_s"], (command["yellow_s"], command["all_red_s"]))
            else:
                pending[k] = None
    for k in range(count):
        if pending[k] is not None:
            switch(k, pending[k][1])
    # (intersection, green, its end, its start) / (intersection, from, to, served, needed); the messages
    short = [g for g in greens if g[1] < timing.min_green_s - 1e-9]
    assert not short, (short, log)
    uncleared = [c for c in clearances if c[3][0] < c[4][0] or c[3][1] < c[4][1]]
    assert not uncleared, (uncleared, log)
