"""The timing rules the runtime enforces whatever the model says (module doc of
agents/deploy/runtime.py): the fixed-time fallback plan, max green, min green, and
the max-red guard's place among them (agents/deploy/max_red.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agents.deploy.signals import SignalModel


def position(table: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per row, the first column of `table` [I, K] equal to `value` [I]; -1 where none is."""
    match = table == value[:, None]
    return np.where(match.any(1), match.argmax(1), -1)


def fallback_plan(signals: SignalModel, elapsed: np.ndarray, max_elapsed: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(phase, seconds from now) the fixed-time plan asks for, from where each signal is: its green
    counted from `elapsed`, never past max green counted from `max_elapsed`."""
    lay, timing, current = signals.layout, signals.timing, signals.cur_phase
    inter = np.arange(len(lay.ids))
    # -1: the current phase is not in the plan, or the runtime does not know it
    slot = np.where(signals.known, position(lay.plan_phase, current), -1)
    slot_c = np.maximum(slot, 0)
    plan_green = lay.plan_green[inter, slot_c]
    next_plan = lay.plan_phase[inter, (slot_c + 1) % lay.plan_length]
    interval = timing.decision_interval_s
    plan_due = (slot < 0) | (elapsed + interval > plan_green) | (max_elapsed + interval > timing.max_green_s)
    phase = np.where(slot < 0, lay.plan_phase[:, 0], np.where(plan_due, next_plan, current))
    at = np.where(slot < 0, 0.0, np.minimum(plan_green - elapsed, timing.max_green_s - max_elapsed).clip(min=0.0))
    return phase, at


def max_green(signals: SignalModel, elapsed: np.ndarray, target: np.ndarray, from_policy: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(phase, seconds from now): a policy keeping a phase that would pass max green before the
    next decision is overruled by the next action's phase, when max green is reached."""
    lay, timing, current = signals.layout, signals.timing, signals.cur_phase
    inter = np.arange(len(lay.ids))
    action_slot = position(lay.actions, current)
    next_action = lay.actions[inter, (np.maximum(action_slot, 0) + 1) % np.maximum(lay.num_actions, 1)]
    overdue = (from_policy & (target == current) & (action_slot >= 0)
               & (elapsed + timing.decision_interval_s > timing.max_green_s))
    return (np.where(overdue, next_action, target),
            np.where(overdue, (timing.max_green_s - elapsed).clip(min=0.0), 0.0))


def timing_commands(signals: SignalModel, elapsed: np.ndarray, target: np.ndarray, from_policy: np.ndarray,
                    max_elapsed: np.ndarray | None = None, guard: Callable | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phase to run [I] int64, switch_in_s [I], guarded [I] int64): the policy's `target` where
    `from_policy`, the fallback plan elsewhere, under max green (counted from `max_elapsed`, the
    green shown since the earliest start the runtime holds; `elapsed` where None) and min green
    (from `elapsed`). A change min green holds back is carried out when min green is reached if that
    falls inside this decision interval, and dropped otherwise. `guard` (`MaxRedGuard.due` with its
    readings bound: ``guard(target, switch_at) -> (phase, at)``) puts a starved phase in place of
    what the policy asks, under the same min green; ``guarded``: the starved phase where that overrode the
    policy's own phase, -1 elsewhere (agents/deploy/max_red.py; the command is that phase, or the running
    one where min green holds the change past this interval)."""
    timing, current = signals.timing, signals.cur_phase
    max_elapsed = elapsed if max_elapsed is None else max_elapsed
    asked = target
    fallback, fallback_at = fallback_plan(signals, elapsed, max_elapsed)
    target, wanted_at = max_green(signals, max_elapsed, target, from_policy)
    guarded = np.full(current.shape, -1, dtype=np.int64)
    if guard is not None:
        switch_at = np.maximum(wanted_at, timing.min_green_s - elapsed).clip(min=0.0)
        due, due_at = guard(target, switch_at)
        serve = from_policy & (due >= 0)
        # a change the policy (or max green) starts sooner than the guard's time goes to the starved phase then
        wanted_at = np.where(serve, np.where(target != current, np.minimum(due_at, wanted_at), due_at), wanted_at)
        guarded = np.where(serve & (due != asked), due, -1)
        target = np.where(serve, due, target)
    target = np.where(from_policy, target, fallback)
    wanted_at = np.where(from_policy, wanted_at, fallback_at)
    change = target != current
    switch_in = np.maximum(wanted_at, timing.min_green_s - elapsed).clip(min=0.0)
    in_time = switch_in < timing.decision_interval_s
    target = np.where(change & ~in_time, current, target)
    switch_in = np.where(change & in_time, switch_in, 0.0)
    return target.astype(np.int64), switch_in, guarded
