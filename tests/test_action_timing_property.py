"""Property: no action sequence, in any action mode and at any decision interval down to 2 s,
skips a yellow, skips the all-red or cuts a minimum green (hypothesis draws the sequences).

Checked from what the signals showed each second (`engine_checks.step_signals`), not from the
engine's switch rule: a movement whose green ends shows yellow for ``yellow_s`` seconds; a green
that started during the episode lasted at least ``min_green_s`` before it ended; a movement that
turns green had no conflicting movement green or yellow in the ``all_red_s`` seconds before."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_checks import step_signals
from envs.engine.state import EngineParams
from envs.rl.actions import ACTION_MODES
from envs.rl.signal_env import BatchedSignalEnv
from scenarios import uneven_grid

PARAMS = EngineParams(yellow_s=3, all_red_s=2, min_green_s=6)
SCENARIO = uneven_grid(horizon=300)  # intersection 0 has 3 phases, the others 4: padding too
DECISIONS = 30


def recorded_signals(mode: str, interval: int,
                     choices: list[int]) -> tuple[torch.Tensor, torch.Tensor, BatchedSignalEnv]:
    """Green and yellow ``[T, B, M]`` shown at every second while the env runs `choices` (each
    mapped onto an existing action of every intersection, different per intersection and copy)."""
    env = BatchedSignalEnv(SCENARIO, 2, decision_interval_s=interval, episode_s=interval * (DECISIONS + 1),
                           action_mode=mode, engine=PARAMS,
                           **({"green_durations_s": (5, 10, 20)} if mode == "phase_duration" else {}))
    env.reset(0)
    greens, yellows = [], []
    step = env.sim.step

    def recording_step(command):
        step(command)
        green, yellow = step_signals(env.network, env.params, env.sim.state)
        greens.append(green)
        yellows.append(yellow)

    env.sim.step = recording_step
    offsets = torch.arange(2 * env.num_intersections).reshape(2, -1)
    for choice in choices:
        actions = (choice + offsets) % env.num_actions.unsqueeze(0)
        env.step(actions)
    return torch.stack(greens), torch.stack(yellows), env


def check_timing(green: torch.Tensor, yellow: torch.Tensor, env: BatchedSignalEnv) -> None:
    steps, batch, moves = green.shape
    inter = env.num_intersections
    conflict = env.network.conflict.to(torch.int64)  # [I, K, K]
    shown = (green | yellow).reshape(steps, batch, inter, -1).to(torch.int64)
    # conflicting[t, b, m]: a movement in conflict with m was green or yellow at second t
    conflicting = torch.einsum("tbik,ikj->tbij", shown, conflict).reshape(steps, batch, moves) > 0
    run = torch.zeros(batch, moves, dtype=torch.int64)  # seconds of the current green run
    started = torch.zeros(batch, moves, dtype=torch.bool)  # the run began during the episode
    for t in range(steps):
        assert not bool((green[t] & yellow[t]).any())
        if t > 0:
            ended = green[t - 1] & ~green[t]
            # yellow right after a green, for yellow_s seconds (or until the record ends)
            for k in range(min(PARAMS.yellow_s, steps - t)):
                assert bool(yellow[t + k][ended].all()), f"yellow skipped at second {t + k}"
            cut = ended & started & (run < PARAMS.min_green_s)
            assert not bool(cut.any()), f"a green of {run[cut].tolist()} s ended at second {t}"
            begins = green[t] & ~green[t - 1]
            recent = conflicting[max(0, t - PARAMS.all_red_s):t].any(0)
            assert not bool((begins & recent).any()), f"all-red skipped at second {t}"
            started = torch.where(begins, True, torch.where(green[t], started, False))
        run = torch.where(green[t], run + 1, 0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(ACTION_MODES), interval=st.sampled_from([2, 3, 5]),
       choices=st.lists(st.integers(min_value=-1, max_value=40), min_size=DECISIONS, max_size=DECISIONS))
def test_no_action_sequence_skips_a_yellow_or_cuts_a_min_green(mode, interval, choices):
    green, yellow, env = recorded_signals(mode, interval, choices)
    check_timing(green, yellow, env)


def test_the_checker_catches_a_cut_green_and_a_skipped_yellow():
    """The property's checker is not vacuous: signals that break the rules fail it."""
    green, yellow, env = recorded_signals("phase", 2, ([1, 2, 3, 0] * DECISIONS)[:DECISIONS])
    check_timing(green, yellow, env)  # the real run passes
    switched = torch.nonzero(green[:-1] & ~green[1:])  # (t, b, m): m's green ended after second t
    t, b, m = (int(x) for x in switched[0])
    no_yellow = yellow.clone()
    no_yellow[t + 1, b, m] = False
    try:
        check_timing(green, no_yellow, env)
    except AssertionError as error:
        assert "yellow skipped" in str(error)
    else:
        raise AssertionError("a skipped yellow went unnoticed")
    later = torch.nonzero(green[1:] & ~green[:-1])  # a green that starts during the episode
    s, b2, m2 = (int(x) + (1 if k == 0 else 0) for k, x in enumerate(later[0]))
    cut_green = green.clone()
    cut_green[s + 1:, b2, m2] = False  # it ends one second after it began
    cut_yellow = yellow.clone()
    cut_yellow[s + 1:s + 1 + PARAMS.yellow_s, b2, m2] = True
    try:
        check_timing(cut_green, cut_yellow, env)
    except AssertionError as error:
        assert "ended at second" in str(error)
    else:
        raise AssertionError("a cut min green went unnoticed")
