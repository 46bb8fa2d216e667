"""The runtime's own model of each signal: the phase it last commanded, the one before, and
when the change started; checked against the readings at every decision. Whatever the readings
or the clock do, the model only ever lengthens min green and the clearance: a clock that goes
back (`clock_reset`) or a phase the runtime did not expect (`cross_check`) makes the phase shown
count as just started. Max green counts from the earliest start it holds (`max_start`), across a
clock that goes back too."""

from __future__ import annotations

import numpy as np

from agents.deploy.metadata import Layout, Timing
from agents.deploy.readings import Readings


class SignalModel:
    """What the runtime commanded each intersection's signal, and when (metadata order)."""

    def __init__(self, layout: Layout, timing: Timing, tolerance_s: float) -> None:
        self.layout, self.timing, self.tolerance_s = layout, timing, float(tolerance_s)
        count = len(layout.ids)
        self.known = np.zeros(count, dtype=bool)
        self.cur_phase = np.zeros(count, dtype=np.int64)
        self.prev_phase = np.full(count, -1, dtype=np.int64)  # -1: unknown
        self.switched_at = np.zeros(count, dtype=np.float64)  # later than the message's t: not yet started
        self.prev_switched_at = np.zeros(count, dtype=np.float64)  # when prev_phase started
        # the current phase's change shows (or is assumed to show) yellow + all-red before its green
        self.cleared = np.ones(count, dtype=bool)
        # a start the runtime took itself (after a clock reset, or for a phase it did not expect): a
        # time in phase claiming an earlier start is expected there, and never moves the start back
        self.not_before = np.full(count, -np.inf)
        # this decision's reply states the change to cur_phase from switched_at, even one due now: a
        # phase the runtime did not expect, commanded in case the reading was wrong (`cross_check`)
        self.commanding = np.zeros(count, dtype=bool)
        # max green counts from the earliest start the runtime holds for the current phase (`max_start`):
        # its own switch, or the earliest start read for it, never moved later by a report, and the
        # first message of the unbroken run of messages that report it (a phase seen since t0 started
        # by t0; a change commanded ends the run: `advance`); min green counts from `switched_at`, the
        # latest start it takes
        self.max_from = np.zeros(count, dtype=np.float64)
        self.seen_phase = np.full(count, -1, dtype=np.int64)  # the phase every message reported since seen_from
        self.seen_from = np.full(count, np.inf)

    def clock_reset(self, t: float, last_t: float) -> None:
        """The message's clock went back from `last_t` to `t` (a cabinet that rebooted, a clock
        set back): the old times mean nothing in the new clock, so the timing starts again from
        `t`, only ever longer. A phase that was in its green at `last_t` counts as just started (its
        full min green from `t`); one in its clearance has its clearance restart in full (then its
        min green). A change still to start at `last_t` may or may not have been made before the
        reset, and the phase read cannot decide it (one misread reading would have the reply switch
        the signal with no clearance), so it is restated, whatever is read: it then starts after
        the full clearance and min green of the phase before it, with the full clearance (a signal
        that made it does nothing). Max green of a phase in its green at `last_t` by its earliest start
        (also one in its clearance by a later start taken) counts on from the green it had shown by that
        start (as if no time passed across the reset: the time that did is unknown); min green, from
        `t`, still comes first (a cabinet that rebooted may have restarted the phase)."""
        pending = self.waiting(last_t)
        in_green = self.known & ~pending & (self.green_elapsed(last_t) >= 0)
        # green by the earliest start held, though maybe in its clearance by a later start taken (that
        # clearance restarts for min green): max green counts on from the green shown by the earliest
        shown = self.max_elapsed(last_t)
        green_shown = self.known & ~pending & (shown >= 0)
        carried = t - shown - ~in_green * self.timing.intergreen_s  # cleared is ~in_green after the reset
        known = self.known
        self.switched_at[known] = t
        self.prev_switched_at[known] = t
        self.prev_phase[known & ~pending] = -1
        self.cleared[known] = ~in_green[known]
        self.switched_at[pending] = t + self.timing.intergreen_s + self.timing.min_green_s
        self.not_before[known] = t
        self.max_from[known] = np.where(green_shown, carried, self.switched_at)[known]
        self.seen_phase[:], self.seen_from[:] = -1, np.inf  # the old clock's times mean nothing now

    def cross_check(self, t: float, readings: Readings, good: np.ndarray, signal_ok: np.ndarray,
                    faults: list[list[str]]) -> None:
        """The readings' phase and time in phase must be what was commanded; where they are not,
        the signal did something else: that is a fault (`good` drops it). The phase expected is
        the one last commanded once that change has started (its yellow and all-red count as the
        new phase's, as time in phase does), and the one before it while the change is still to
        start. Another phase (a wrong reading, or a signal that did not obey) is commanded as a
        change from the phase expected, once that one's min green is over (a change still to start:
        when it was due), with the longest clearance into it (`commanding`; a signal that really
        shows it does nothing, one that was misread is not switched with no clearance or before min
        green), and taken as just started then, whatever time in phase it reports; once that change
        starts the signal shows it either way, and the change after it is cleared by the table. A time in
        phase off by more than the tolerance on the expected phase: the readings win, but an earlier
        start only for max green (never for a phase the runtime switched to from a known one,
        `impossible`, nor before a start the runtime took itself, `not_before`); on the phase
        before a change still to start it is a fault only (the change is stated again). The signal's
        own readings (phase, time in phase) are read wherever they are valid (`signal_ok`, from
        `validate_readings`), even where a detector's reading is bad: the phase is then known,
        and min green holds for the fallback plan too."""
        phase = np.nan_to_num(readings.phase, nan=-1).astype(np.int64)
        tip = readings.time_in_phase
        run_starts = signal_ok & (phase != self.seen_phase)  # a message without a valid phase breaks no run
        self.seen_phase[run_starts], self.seen_from[run_starts] = phase[run_starts], t
        pending = self.waiting(t)
        # where another phase is reported: the phase expected, and when a change from it may start
        expected = np.where(pending, self.prev_phase, self.cur_phase)
        expected_at = np.where(pending, self.prev_switched_at, self.switched_at)
        due = np.where(pending, self.switched_at,
                       t + np.maximum(self.timing.min_green_s - self.green_elapsed(t), 0.0))
        # a message before a commanded change starts finds the phase before it still running, as told; so
        # may one less than the tolerance after it started (a signal switching late, as a command that reached
        # it late): that change is stated again (`commanding`: now, with its clearance), also where the phase
        # is not read then. Taken as another phase, it was commanded back after min green, and the phase
        # before, often ended at max green, ran on that long
        lagging = (self.known & ~pending & (self.prev_phase >= 0) & (self.prev_phase != self.cur_phase)
                   & (t - self.switched_at < self.tolerance_s) & (~signal_ok | (phase == self.prev_phase)))
        waiting = (pending | lagging) & (phase == self.prev_phase)
        since = np.where(waiting, self.prev_switched_at, self.switched_at)
        checked = self.known & signal_ok
        other_phase = checked & (phase != self.cur_phase) & ~waiting
        # a start the runtime took itself (a reset, a phase it did not expect): a time in phase from
        # before it (within the tolerance: a timer restarted then) is expected, of either phase
        floored = t - tip < self.not_before + self.tolerance_s
        off_time = checked & ~other_phase & ~floored & (np.abs(tip - (t - since)) > self.tolerance_s)
        mismatch = other_phase | off_time
        rows = np.flatnonzero(mismatch)
        # Python numbers (tolist) format as the numpy scalars would, only faster
        for i, reported, seconds, commanded, ago in zip(rows.tolist(), phase[rows].tolist(), tip[rows].tolist(),
                                                         self.cur_phase[rows].tolist(),
                                                         (t - self.switched_at[rows]).tolist()):
            # a change still to start was commanded to start later: "-5 s ago" read as nonsense
            when = f"{ago:g} s ago" if ago >= 0 else f"to start in {-ago:g} s"
            message = (f"signal reports phase {reported} for {seconds:g} s; the controller commanded phase "
                       f"{commanded} {when}")
            if other_phase[i]:
                message += (f"; phase {reported} taken as just started: commanded as a change from phase "
                            f"{expected[i]} once its min green is over, with the longest clearance into phase "
                            f"{reported} (the reading may be wrong)")
            faults[i].append(message)
        # within the tolerance the runtime's own switch time stands, unless the signal says it
        # switched later (a command that reached it late): min green then counts from the later start
        late = checked & ~mismatch & ~waiting & (t - tip > self.switched_at)
        self.switched_at[late] = self.later_start(t - tip)[late]
        # the phase the runtime switched it to from a known one, reported with an earlier start than
        # that switch: no signal that obeyed can say so (a glitch in its clock). Still a fault, but the
        # runtime's own start stands
        impossible = off_time & (phase == self.cur_phase) & (self.prev_phase >= 0) & (t - tip < since)
        # the phase before a change still to start with a time off either way is a fault and no more: the
        # change is stated again as it was given (`held`), never dropped for the start the signal reports
        readings_win = signal_ok & (~self.known | off_time) & ~impossible & ~waiting
        # the phase before stays known where the readings only move the start of the same phase: a later
        # report claiming a start before the runtime's own switch is still `impossible`, a later start is
        # taken as far as `later_start` lets it, and max green counts from the earliest start read. An
        # earlier start than the one held (a phase first read, never switched by the runtime) moves max
        # green's only: min green keeps the latest. A start read for a phase the runtime did not know is
        # all it has (max green counts from it too)
        first = readings_win & ~self.known
        taken = np.where(first, t - tip, self.later_start(t - tip))
        self.max_from = np.where(first, t - tip, np.where(readings_win, np.minimum(self.max_from, t - tip),
                                                           self.max_from))
        self.cur_phase[readings_win] = phase[readings_win]
        self.switched_at[readings_win] = taken[readings_win]
        self.prev_phase[first] = -1
        self.prev_phase[other_phase] = expected[other_phase]
        self.prev_switched_at[other_phase] = expected_at[other_phase]
        self.cur_phase[other_phase] = phase[other_phase]
        self.switched_at[other_phase] = due[other_phase]
        self.max_from[other_phase] = due[other_phase]
        self.not_before[other_phase] = t
        self.commanding = other_phase | lagging
        # unknown before: the clearance is assumed. A start read for the same phase moves its start, not whether
        # its change showed a clearance: assumed there, max green counted it off and ran that much longer
        self.cleared[first | other_phase] = True
        self.known |= signal_ok
        good &= ~mismatch

    def max_start(self) -> np.ndarray:
        """[I] the earliest start the runtime holds for the current phase: max green counts from it."""
        return np.minimum(self.max_from, np.where(self.seen_phase == self.cur_phase, self.seen_from, np.inf))

    def later_start(self, reported: np.ndarray) -> np.ndarray:
        """[I] the start a report of a later one moves the current phase's to (min green counts from it):
        `reported`, but never so late that min green would end after max green from `max_start` (a
        time in phase younger than the real one, or a clock that jumped ahead: the two look alike);
        never before the start it has."""
        cap = self.max_start() + (self.timing.max_green_s - self.timing.min_green_s)
        return np.maximum(self.switched_at, np.minimum(reported, cap))

    def waiting(self, t: float) -> np.ndarray:
        """[I] bool: a change commanded earlier starts after `t` (its switch_in_s not yet over)."""
        return self.known & (self.switched_at > t)

    def held(self, t: float) -> np.ndarray:
        """[I] bool: the reply states the change to the current phase as it was given, never another:
        one commanded earlier that starts after `t`, or one `cross_check` commands now (`commanding`)."""
        return self.waiting(t) | self.commanding

    def pending_command(self, t: float, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mask, switch_in_s, (yellow_s, all_red_s)) of the changes commanded earlier that are still
        to start after `t` and that `target` keeps: a reply must state them again as they were
        given; 'no change' (0 s, no clearance) told a signal to switch now without yellow."""
        keep = self.held(t) & (target == self.cur_phase)
        clears = self.cleared
        remaining = np.maximum(self.switched_at - t, 0.0)  # 0: one started within the tolerance, stated again
        return keep, remaining, (clears * self.timing.yellow_s, clears * self.timing.all_red_s)

    def green_elapsed(self, t: float) -> np.ndarray:
        """Seconds of green the current phase has shown at `t` (negative in its clearance; inf
        where the phase is unknown: no min green to wait for)."""
        elapsed = (t - self.switched_at) - self.cleared * self.timing.intergreen_s
        return np.where(self.known, elapsed, np.inf)

    def max_elapsed(self, t: float) -> np.ndarray:
        """`green_elapsed` from `max_start`, the earliest start the runtime holds: what max green counts."""
        elapsed = (t - self.max_start()) - self.cleared * self.timing.intergreen_s
        return np.where(self.known, elapsed, np.inf)

    def clears(self, target: np.ndarray) -> np.ndarray:
        """[I] bool: commanding `target` shows yellow + all-red: a change that ends a green (the
        intergreen table) and any change where the phase is unknown."""
        inter = np.arange(len(self.layout.ids))
        target_c = np.maximum(target, 0)
        needed = self.layout.intergreen[inter, np.maximum(self.cur_phase, 0), target_c]
        needed |= ~self.known
        return ((target != self.cur_phase) | ~self.known) & needed

    def clearance(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(yellow_s, all_red_s) that commanding `target` shows."""
        clears = self.clears(target)
        return clears * self.timing.yellow_s, clears * self.timing.all_red_s

    def advance(self, t: float, target: np.ndarray, switch_in: np.ndarray) -> None:
        """Record the commands: `target` from ``t + switch_in``."""
        change = (target != self.cur_phase) | ~self.known
        self.cleared = np.where(change, self.clears(target), self.cleared)
        # the phase before an unknown one is unknown too
        self.prev_phase = np.where(change, np.where(self.known, self.cur_phase, -1), self.prev_phase)
        self.prev_switched_at = np.where(change, self.switched_at, self.prev_switched_at)
        self.switched_at = np.where(change, t + switch_in, self.switched_at)
        self.max_from = np.where(change, self.switched_at, self.max_from)
        self.not_before = np.where(change, -np.inf, self.not_before)
        # a run of messages reporting a phase from before a change the runtime commands says nothing of
        # the phase after it: messages without the phase (missing, unreadable) break no run, and a signal
        # taken through 1, 2, 0, 1 between two readings of phase 1 was not in phase 1 all along
        self.seen_phase = np.where(change, -1, self.seen_phase)
        self.commanding = np.zeros_like(self.commanding)
        self.cur_phase = np.where(change, target, self.cur_phase)
        self.known |= change
