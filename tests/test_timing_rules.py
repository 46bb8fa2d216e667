"""The deployment runtime's timing rules (agents/deploy/timing_rules.py) on two hand-made
intersections, decision by decision: ``a`` has 3 actions and a 2-phase fallback plan (both padded
to ``b``'s 4 actions and 3-phase plan). test_runtime_timing.py runs the rules in the simulator;
these pin the cases it never reaches: a padded plan, a phase outside the plan, a signal never
seen, and a change min green holds back."""

from __future__ import annotations

import numpy as np

from agents.deploy.metadata import Layout, Timing
from agents.deploy.signals import SignalModel
from agents.deploy.timing_rules import timing_commands

TIMING = Timing(decision_interval_s=5.0, min_green_s=6.0, max_green_s=20.0, yellow_s=3.0, all_red_s=2.0)
POLICY = np.array([True, True])
FALLBACK = ~POLICY
NO_TARGET = np.array([-1, -1])


def two_signals(phase, known=(True, True)) -> SignalModel:
    """The runtime's model of ``a`` (actions 0, 1, 2; plan 0 for 12 s, 2 for 8 s) and ``b``
    (actions 0-3; plan 0, 1, 2 for 10 s each), showing `phase`."""
    layout = Layout(ids=["a", "b"], num_lanes=np.array([1, 1]), lane_max=np.ones((2, 1)),
                    num_phases=np.array([4, 4]), actions=np.array([[0, 1, 2, -1], [0, 1, 2, 3]]),
                    num_actions=np.array([3, 4]), intergreen=np.ones((2, 4, 4), dtype=bool),
                    plan_phase=np.array([[0, 2, -1], [0, 1, 2]]),
                    plan_green=np.array([[12.0, 8.0, 0.0], [10.0, 10.0, 10.0]]), plan_length=np.array([2, 3]))
    signals = SignalModel(layout, TIMING, tolerance_s=1.0)
    signals.cur_phase[:] = phase
    signals.known[:] = known
    return signals


def rules(signals: SignalModel, elapsed, target=NO_TARGET, from_policy=FALLBACK) -> tuple[list, list]:
    phase, switch_in, _ = timing_commands(signals, np.asarray(elapsed, dtype=float), np.asarray(target), from_policy)
    return phase.tolist(), switch_in.tolist()


def test_the_fallback_plan_after_its_last_phase_returns_to_its_first_even_where_it_is_padded():
    # a's plan ends on phase 2 (8 s): next is phase 0 again, not the padding column after it
    assert rules(two_signals([2, 2]), [6.0, 6.0]) == ([0, 0], [2.0, 4.0])


def test_a_phase_outside_the_plan_gives_way_to_the_plans_first_phase_once_min_green_is_reached():
    # phase 1 of a and phase 3 of b are in no plan: they are not taken for the plan's first phase
    assert rules(two_signals([1, 3]), [8.0, 3.0]) == ([0, 0], [0.0, 3.0])


def test_a_signal_never_seen_is_sent_its_plans_first_phase_even_where_that_is_its_default_phase():
    signals = two_signals([0, 0], known=(False, False))  # the model's phase 0 is a default, not a reading
    assert rules(signals, signals.green_elapsed(100.0)) == ([0, 0], [0.0, 0.0])


def test_a_change_min_green_holds_past_the_interval_is_dropped_and_one_inside_it_is_timed():
    signals = two_signals([0, 2])
    target = np.array([1, 2])  # a changes to phase 1, b keeps phase 2
    assert rules(signals, [0.0, 2.0], target, POLICY) == ([0, 2], [0.0, 0.0])  # a staying: no switch time
    assert rules(signals, [3.0, 2.0], target, POLICY) == ([1, 2], [3.0, 0.0])


def test_a_kept_phase_overdue_for_max_green_moves_to_the_next_action_wrapping_at_its_own_action_count():
    target = np.array([2, 3])  # a's last action is its phase 2 (of 3 actions), b's is 3 (of 4)
    assert rules(two_signals([2, 3]), [17.0, 16.0], target, POLICY) == ([0, 0], [3.0, 4.0])
    assert rules(two_signals([2, 3]), [15.0, 15.0], target, POLICY) == ([2, 3], [0.0, 0.0])  # 20 s: not yet
    # a change the policy asks for is its own, max green or not: a goes to phase 1, not to its next action 0
    assert rules(two_signals([2, 3]), [17.0, 16.0], np.array([1, 3]), POLICY) == ([1, 0], [0.0, 4.0])
