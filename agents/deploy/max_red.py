"""The max-red guard (module doc of agents/deploy/runtime.py): no phase with vehicles waiting stays
red past ``timing.max_red_s``, whatever the policy asks. numpy only, like the rest of the runtime.

A movement *calls* when a vehicle halts (``lane_halting`` >= 1) on one of its incoming lanes (the
metadata's ``movements[].in_lanes``) while the running phase does not give it green; an action phase
calls for the movements it gives green. A movement's *red* counts from the start of the change that
ended its green (from the first decision that read its signal, for one the runtime never saw green);
a phase's red is the longest of the movements it calls for. The guard takes an intersection from its
policy when one of its action phases calls and would otherwise see its red reach
``max_red_s - yellow_s - all_red_s`` before its change could start (before the next
decision, or, where the policy starts another phase now, before that phase's clearance and min
green are over): the change to it starts then, so its green starts by ``max_red_s``; min green,
yellow and all-red are kept as for any change. Several such phases: the longest red first (then
the first in the action list), the next after its min green. A phase that nobody waits for is never
forced, nor one whose movements were green a moment ago in another phase; the fixed-time plan
(readings bad) serves every phase in turn and is left alone."""

from __future__ import annotations

import logging
import math

import numpy as np

from envs.errors import ModelError

LOG = logging.getLogger("gridlight.runtime")  # the runtime's log (agents/deploy/runtime.py)
WAITING = 1.0  # halting vehicles on a lane that make a call


def max_red_floor(min_green_s: float, yellow_s: float, all_red_s: float, interval_s: float) -> float:
    """The least max red a guard can keep with the policy still deciding: the red a phase shows while
    one other phase runs its min green between two clearances, plus one decision interval."""
    return min_green_s + 2 * (yellow_s + all_red_s) + interval_s


def max_red_problem(value, min_green_s, yellow_s, all_red_s, interval_s) -> str | None:
    """Why `value` is not a max red (None: it is one, or None itself: no guard)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return "must be a finite number of seconds > 0 (null: no max-red guard)"
    least = max_red_floor(min_green_s, yellow_s, all_red_s, interval_s)
    if value < least:
        return (f"must be at least {least:g} s: min green ({min_green_s:g} s) between two clearances "
                f"(2 x (yellow {yellow_s:g} + all-red {all_red_s:g} s)) and one decision interval "
                f"({interval_s:g} s); a shorter one cannot be kept with the policy still deciding")
    return None


def load_max_red(meta: dict, timing, source: str) -> float | None:
    """The metadata's ``timing.max_red_s``: None where the key is absent (an export from before the
    guard) or null (exported without it); otherwise checked as export.py checks it."""
    value = meta["timing"].get("max_red_s")
    problem = max_red_problem(value, timing.min_green_s, timing.yellow_s, timing.all_red_s,
                              timing.decision_interval_s)
    if problem:
        raise ModelError(source, "timing.max_red_s", value, problem)
    return None if value is None else float(value)


def demand_tables(inters: list[dict], num_lanes: np.ndarray, max_lanes: int, source: str
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(move_lanes [I, K, L] bool: movement k leaves from lane l; green [I, P, K] bool: phase p gives
    movement k green) from the metadata's movements and phases, movements by their ``index``."""
    for i, entry in enumerate(inters):
        movements = entry.get("movements")
        for k, movement in enumerate(movements if isinstance(movements, list) else [None]):
            index = movement.get("index") if isinstance(movement, dict) else None
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                where = f"intersections[{i}].movements" + (f"[{k}].index" if isinstance(movements, list) else "")
                raise ModelError(source, where, index if isinstance(movements, list) else movements,
                                 f"intersection {entry['id']!r}: the max-red guard needs each movement's index "
                                 "(an integer >= 0) as export.py writes it")
    width = max([m["index"] + 1 for e in inters for m in e["movements"]] + [1])
    phases = max(len(e["phases"]) for e in inters)
    move_lanes = np.zeros((len(inters), width, max_lanes), dtype=bool)
    green = np.zeros((len(inters), phases, width), dtype=bool)
    for i, entry in enumerate(inters):
        for k, movement in enumerate(entry["movements"]):
            lanes = movement.get("in_lanes")
            if not isinstance(lanes, list) or not all(isinstance(lane, int) and not isinstance(lane, bool)
                                                      and 0 <= lane < num_lanes[i] for lane in lanes):
                raise ModelError(source, f"intersections[{i}].movements[{k}].in_lanes", lanes,
                                 f"intersection {entry['id']!r}: the max-red guard (timing.max_red_s) needs each "
                                 f"movement's incoming lanes, positions in in_lanes (0 to {int(num_lanes[i]) - 1}); "
                                 "an export from before the guard has none: export the checkpoint again")
            move_lanes[i, movement["index"], lanes] = True
        described = {movement["index"] for movement in entry["movements"]}
        for p, phase in enumerate(entry["phases"]):
            # -1 would mark the last movement green (its red never counted), one past them was dropped
            if not set(phase["green_movements"]) <= described:
                raise ModelError(source, f"intersections[{i}].phases[{p}].green_movements", phase["green_movements"],
                                 f"intersection {entry['id']!r}: the max-red guard needs each green movement to be "
                                 f"one of its movements' index ({sorted(described)})")
            green[i, p, phase["green_movements"]] = True
    return move_lanes, green


class MaxRedGuard:
    """Each movement's red, per intersection, and the phases the guard serves (module doc)."""

    def __init__(self, max_red_s: float, actions: np.ndarray, move_lanes: np.ndarray, green: np.ndarray,
                 ids: list[str]) -> None:
        self.max_red_s, self.actions, self.ids = max_red_s, actions, ids
        self.move_lanes, self.green = move_lanes, green
        # [I, K] start of each movement's red; NaN: green (or the signal not read yet)
        self.red_since = np.full(move_lanes.shape[:2], np.nan)
        self.running = np.full(len(ids), -1, dtype=np.int64)  # the phase the guard counts as running
        self.overriding = np.zeros(len(ids), dtype=bool)  # the guard decided at the last decision
        self.count = 0  # overrides started (an intersection's run of decisions the guard took)
        self.inter = np.arange(len(ids))
        self.phase_green = green[self.inter[:, None], np.maximum(actions, 0)] & (actions >= 0)[:, :, None]  # [I, A, K]

    def _switch(self, rows: np.ndarray, at, phase: np.ndarray) -> None:
        """`rows` show `phase` from `at` ([I] or a number): the movements it does not give green that the
        phase before did (every one, where the guard knew no phase before) turn red then."""
        before = self.green[self.inter, np.maximum(self.running, 0)] & (self.running >= 0)[:, None]
        after = self.green[self.inter, np.maximum(phase, 0)]
        unknown = rows & (self.running < 0)
        self.red_since[unknown] = np.broadcast_to(np.asarray(at, dtype=float), rows.shape)[unknown][:, None]
        ending = rows[:, None] & before & ~after
        self.red_since = np.where(ending, np.broadcast_to(np.asarray(at, dtype=float), rows.shape)[:, None],
                                  self.red_since)
        self.red_since[rows[:, None] & after] = np.nan
        self.running = np.where(rows, phase, self.running)

    def observe(self, t: float, cur_phase: np.ndarray, known: np.ndarray) -> None:
        """Catch up with the signals' running phase after the cross-check: a signal first read has
        every other movement red from `t`; one found on another phase than the guard had switched at `t`."""
        new = known & (self.running != cur_phase)
        if new.any():
            self._switch(new, t, cur_phase)

    def commit(self, t: float, target: np.ndarray, switch_in: np.ndarray) -> None:
        """The decision's commands: a change ends the green of the movements it stops at ``t + switch_in``."""
        change = (target != self.running) & (target >= 0)
        if change.any():
            self._switch(change, t + switch_in, target)

    def record(self, t: float, guarded: np.ndarray, target: np.ndarray, switch_in: np.ndarray,
               asked: np.ndarray, red: np.ndarray) -> None:
        """A decision's commands (`target`, `switch_in`; `asked`: the policy's phases, -1 where it did not
        decide): a warning and a count for each run of decisions the guard takes from the policy, when it
        starts (`guarded`: `timing_commands`', the starved phase served, -1 elsewhere; `red`: `calls`'),
        and the red times."""
        for i in np.flatnonzero((guarded >= 0) & ~self.overriding).tolist():
            waited = red[i, int(np.flatnonzero(self.actions[i] == guarded[i])[0])]
            LOG.warning("max red at %s: phase %d red %g s with vehicles waiting (max_red_s %g): served next, in "
                        "place of the policy's phase %d", self.ids[i], guarded[i], waited, self.max_red_s, asked[i])
            self.count += 1
        self.overriding = guarded >= 0
        self.commit(t, target, switch_in)

    def clock_reset(self, t: float, last_t: float) -> None:
        """Red counts on across a reset from what it had reached (as max green does)."""
        self.red_since += t - last_t

    def calls(self, t: float, halting: np.ndarray, cur_phase: np.ndarray) -> np.ndarray:
        """[I, A] each action phase's red at `t`, from the readings' ``lane_halting``: the longest red of
        the movements it calls for (module doc); -inf where it calls for none."""
        waiting = np.nan_to_num(halting, nan=0.0) >= WAITING  # [I, L]
        moving_call = (self.move_lanes & waiting[:, None, :]).any(-1)  # [I, K]
        unserved = ~self.green[self.inter, np.maximum(cur_phase, 0)] & moving_call  # [I, K]
        with np.errstate(invalid="ignore"):
            red = np.where(unserved & ~np.isnan(self.red_since), t - self.red_since, -np.inf)
        return np.where(self.phase_green, red[:, None, :], -np.inf).max(-1)  # [I, A]

    def due(self, timing, red: np.ndarray, current: np.ndarray, target: np.ndarray,
            switch_at: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(phase [I], -1 where none; seconds from now at which its change is to start) the guard serves
        where `active`: `red`: `calls`'; `target` is the phase the policy (under max green) asks for, to
        start `switch_at` seconds from now."""
        limit = self.max_red_s - timing.intergreen_s  # the change starts then: its green by max red
        leaving = (target != current)[:, None] & (self.actions != target[:, None])
        # a phase the policy starts now holds its clearance and min green: the starved one cannot follow sooner
        horizon = np.where(leaving, np.maximum(timing.decision_interval_s,
                                               (switch_at + timing.intergreen_s + timing.min_green_s)[:, None]),
                           timing.decision_interval_s)
        candidate = (red + horizon > limit) & (self.actions != current[:, None]) & active[:, None]
        score = np.where(candidate, red, -np.inf)
        slot = score.argmax(1)  # the longest red; the first in the action list on a tie
        any_due = candidate.any(1)
        phase = np.where(any_due, self.actions[self.inter, slot], -1)
        at = np.where(any_due, np.clip(limit - red[self.inter, slot], 0.0, None), 0.0)
        return phase, at
