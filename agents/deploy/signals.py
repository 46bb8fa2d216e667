"""The runtime's own model of each signal: the phase it last commanded, the one before, and
when the change started; checked against the readings at every decision."""

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
        self.prev_phase = np.full(count, -1, dtype=np.int64)  # -1: unknown (assume intergreen)
        self.switched_at = np.zeros(count, dtype=np.float64)  # later than the message's t: not yet started
        self.prev_switched_at = np.zeros(count, dtype=np.float64)  # when prev_phase started

    def cross_check(self, t: float, readings: Readings, good: np.ndarray, signal_ok: np.ndarray,
                    faults: list[list[str]]) -> None:
        """The readings' phase and time in phase must be what was commanded; where they are not,
        the signal did something else: that is a fault (`good` drops it), and the readings win
        (but never with an earlier start for the phase the runtime switched it to: `impossible`).
        The signal's own readings (phase, time in phase) are read wherever they are valid
        (`signal_ok`, from `validate_readings`), even where a detector's reading is bad: the phase
        is then known, and min green holds for the fallback plan too (a bad lane reading once left
        a phase unknown and cut it at once)."""
        phase = np.nan_to_num(readings.phase, nan=-1).astype(np.int64)
        tip = readings.time_in_phase
        # a message before a commanded change starts (switch_in_s after the last one) finds the
        # phase before it still running, as it was told: no fault (that was a false one)
        waiting = self.waiting(t) & (phase == self.prev_phase)
        since = np.where(waiting, self.prev_switched_at, self.switched_at)
        mismatch = self.known & signal_ok & (
            ((phase != self.cur_phase) & ~waiting) | (np.abs(tip - (t - since)) > self.tolerance_s)
        )
        rows = np.flatnonzero(mismatch)
        # Python numbers (tolist) format as the numpy scalars would, only faster
        for i, reported, seconds, commanded, ago in zip(rows.tolist(), phase[rows].tolist(), tip[rows].tolist(),
                                                         self.cur_phase[rows].tolist(),
                                                         (t - self.switched_at[rows]).tolist()):
            faults[i].append(
                f"signal reports phase {reported} for {seconds:g} s; the controller commanded phase "
                f"{commanded} {ago:g} s ago"
            )
        # within the tolerance the runtime's own switch time stands, unless the signal says it
        # switched later (a command that reached it late): min green then counts from the later
        # start, the signal's; it had been cut by up to the tolerance
        late = self.known & signal_ok & ~mismatch & ~waiting & (t - tip > self.switched_at)
        self.switched_at[late] = t - tip[late]
        # the phase the runtime switched it to from a known one (or the one before a change still to
        # start), reported with an earlier start than that switch: no signal that obeyed can say so
        # (a glitch in its clock). Still a fault, but the runtime's own start stands: adopting the
        # earlier one let the fallback cut that green below min green
        impossible = (mismatch & ((phase == self.cur_phase) | waiting) & (self.prev_phase >= 0)
                      & (t - tip < since))
        resync = signal_ok & (~self.known | mismatch) & ~impossible
        self.cur_phase[resync] = phase[resync]
        self.prev_phase[resync & mismatch] = -1
        self.prev_phase[resync & ~self.known] = -1
        self.switched_at[resync] = t - tip[resync]
        self.known |= signal_ok
        good &= ~mismatch

    def waiting(self, t: float) -> np.ndarray:
        """[I] bool: a change commanded earlier starts after `t` (its switch_in_s not yet over)."""
        return self.known & (self.switched_at > t)

    def pending_command(self, t: float, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mask, switch_in_s, (yellow_s, all_red_s)) of the changes commanded earlier that are still
        to start after `t` and that `target` keeps: a reply must state them again as they were
        given; 'no change' (0 s, no clearance) told a signal to switch now without yellow."""
        keep = self.waiting(t) & (target == self.cur_phase)
        inter = np.arange(len(self.layout.ids))
        clears = (self.prev_phase < 0) | self.layout.intergreen[inter, np.maximum(self.prev_phase, 0),
                                                                 np.maximum(self.cur_phase, 0)]
        return keep, self.switched_at - t, (clears * self.timing.yellow_s, clears * self.timing.all_red_s)

    def green_elapsed(self, t: float) -> np.ndarray:
        """Seconds of green the current phase has shown at `t` (negative in its intergreen; inf
        where the phase is unknown: no min green to wait for)."""
        inter = np.arange(len(self.layout.ids))
        shown = np.where(
            self.prev_phase >= 0,
            self.layout.intergreen[inter, np.maximum(self.prev_phase, 0), np.maximum(self.cur_phase, 0)],
            True,  # unknown previous phase: assume the intergreen was shown
        )
        elapsed = (t - self.switched_at) - shown * self.timing.intergreen_s
        return np.where(self.known, elapsed, np.inf)

    def clearance(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(yellow_s, all_red_s) that commanding `target` shows."""
        inter = np.arange(len(self.layout.ids))
        # a signal whose phase is unknown gets the full clearance: any command to it is a change
        clears = ((target != self.cur_phase) | ~self.known) & (
            self.layout.intergreen[inter, np.maximum(self.cur_phase, 0), np.maximum(target, 0)] | ~self.known
        )
        return clears * self.timing.yellow_s, clears * self.timing.all_red_s

    def advance(self, t: float, target: np.ndarray, switch_in: np.ndarray) -> None:
        """Record the commands: `target` from ``t + switch_in``."""
        change = (target != self.cur_phase) | ~self.known
        # the phase before an unknown one is unknown too: -1 keeps the full intergreen assumed
        self.prev_phase = np.where(change, np.where(self.known, self.cur_phase, -1), self.prev_phase)
        self.prev_switched_at = np.where(change, self.switched_at, self.prev_switched_at)
        self.switched_at = np.where(change, t + switch_in, self.switched_at)
        self.cur_phase = np.where(change, target, self.cur_phase)
        self.known |= change
