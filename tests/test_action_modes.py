"""Action modes (envs/rl/actions.py): masks, the phase-and-duration holds against hand-computed
timelines, keep-or-switch, and every adapter's action space per mode."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces

import envs
from envs.errors import CommandError, ConfigError
from envs.rl.actions import ACTION_MODES
from envs.rl.signal_env import BatchedSignalEnv
from scenarios import small_grid, uneven_grid

DURATIONS = (10, 20)


def mode_kwargs(mode: str) -> dict:
    """The action mode, with DURATIONS where the mode reads them (another mode refuses them)."""
    return {"action_mode": mode, **({"green_durations_s": DURATIONS} if mode == "phase_duration" else {})}


def duration_env(**kwargs) -> BatchedSignalEnv:
    """A 1x1 grid (4 signal phases, phase 0 current at reset), decisions every 5 s."""
    kwargs = {"decision_interval_s": 5, "episode_s": 200, "action_mode": "phase_duration",
              "green_durations_s": DURATIONS, **kwargs}
    return BatchedSignalEnv(small_grid(1, 1), kwargs.pop("copies", 1), **kwargs)


def allowed(env, b=0, i=0) -> list[int]:
    return env.action_mask[b, i].nonzero().flatten().tolist()


def hold_timeline(env, plan: dict, decisions: int = 10) -> list[tuple[int, int, list[int]]]:
    """(time, phase, allowed actions) at each of copy 0's decisions, acting `plan[time]` where the
    plan has the time and action 7 elsewhere."""
    env.reset(0)
    seen = []
    for _ in range(decisions):
        t = int(env.sim.state.t[0])
        seen.append((t, int(env.sim.state.phase[0, 0]), allowed(env)))
        env.step(torch.tensor([[plan.get(t, 7)]]))
    return seen


# ---- masks and sizes per mode --------------------------------------------------------------------


def test_mask_widths_and_action_counts_per_mode():
    # uneven_grid: intersection 0 has 3 signal phases, the others 4
    expected = {"phase": ([3, 4, 4, 4], 4), "keep_or_switch": ([2, 2, 2, 2], 2),
                "phase_duration": ([6, 8, 8, 8], 8)}
    for mode, (counts, width) in expected.items():
        env = BatchedSignalEnv(uneven_grid(), 2, episode_s=60, **mode_kwargs(mode))
        env.reset(0)
        assert env.num_actions.tolist() == counts and env.max_actions == width, mode
        mask = env.action_mask
        assert tuple(mask.shape) == (2, 4, width)
        assert mask.sum(-1).tolist() == [counts, counts], mode  # nothing holds yet: padding only
        assert env.describe()["action_mode"] == mode


def test_an_action_past_the_intersections_own_actions_is_refused_in_every_mode():
    for mode, bad in (("phase", 3), ("keep_or_switch", 2), ("phase_duration", 6)):
        env = BatchedSignalEnv(uneven_grid(), 1, episode_s=60, **mode_kwargs(mode))
        env.reset(0)
        actions = torch.zeros(1, 4, dtype=torch.int64)
        actions[0, 0] = bad
        with pytest.raises(CommandError, match=r"actions\[0, 0\]"):
            env.step(actions)


@pytest.mark.parametrize("kwargs, field", [
    ({"action_mode": "duration"}, "action_mode"),
    ({"action_mode": "phase_duration", "green_durations_s": ()}, "green_durations_s"),
    ({"action_mode": "phase_duration", "green_durations_s": (10, 0)}, r"green_durations_s\[1\]"),
    ({"action_mode": "phase_duration", "green_durations_s": (10, 10)}, "green_durations_s"),
    # a mode that chooses no durations dropped them without a word
    ({"action_mode": "keep_or_switch", "green_durations_s": (10, 20)}, "green_durations_s.*only action_mode=phase_d"),
])
def test_bad_action_settings_are_config_errors_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        BatchedSignalEnv(small_grid(1, 1), 1, episode_s=60, **kwargs)


# ---- phase and duration: the hold, second by second ----------------------------------------------


def test_phase_duration_holds_match_a_hand_computed_timeline():
    """Engine defaults: yellow 3 s, all-red 2 s, min green 5 s. Action a = phase a // 2 with green
    DURATIONS[a % 2]. t=0: phase 0 (already green) for 10 s -> held through the decision at 5,
    free at 10. t=10: phase 1 for 20 s -> switch at 10 (phase 0 has 10 s >= min green), yellow
    10-13, all-red 13-15, green from 15: held at 15, 20, 25, 30, free at 35 (20 s of green).
    t=35: phase 1 again for 10 s (action 2) -> 10 more seconds: held at 40, free at 45. While
    held, the action given (7 = phase 3 for 20 s) is ignored."""
    seen = hold_timeline(duration_env(), {0: 0, 10: 3, 35: 2})
    every = list(range(8))
    assert seen == [(0, 0, every), (5, 0, [0]), (10, 0, every), (15, 1, [3]), (20, 1, [3]), (25, 1, [3]),
                    (30, 1, [3]), (35, 1, every), (40, 1, [2]), (45, 1, every)]


def test_phase_duration_green_rounds_up_to_the_decision_grid_and_holds_per_copy():
    # decisions every 3 s: a 10 s hold of the current phase ends at t=10, so the first free
    # decision is t=12; copy 1 chose 20 s and is still held there
    env = duration_env(copies=2, decision_interval_s=3, episode_s=99)
    env.reset(0)
    env.step(torch.tensor([[0], [1]]))  # copy 0: phase 0 for 10 s, copy 1: phase 0 for 20 s
    held = []
    for _ in range(3):  # decisions at t = 3, 6, 9 (the given action 5 is ignored while held)
        held.append(env.actions.holding(env.sim.state)[:, 0].tolist())
        env.step(torch.tensor([[5], [5]]))
    assert held == [[True, True]] * 3
    assert int(env.sim.state.t[0]) == 12 and env.actions.holding(env.sim.state)[:, 0].tolist() == [False, True]
    assert allowed(env, 0) == list(range(8)) and allowed(env, 1) == [1]
    assert env.sim.state.phase[:, 0].tolist() == [0, 0]


def test_an_episode_restart_clears_the_holds():
    env = duration_env(episode_s=10)
    env.reset(0)
    env.step(torch.tensor([[3]]))  # phase 1 for 20 s: still held when the episode ends at t=10
    assert allowed(env) == [3]
    _, _, _, truncated, info = env.step(torch.tensor([[3]]))
    assert bool(truncated[0]) and int(env.sim.state.t[0]) == 0  # autoreset inside the step
    assert allowed(env) == list(range(8))
    assert info["action_mask"][0, 0].all()


# ---- keep or switch ------------------------------------------------------------------------------


def test_keep_or_switch_keeps_or_cycles_to_the_next_phase_after_min_green():
    """Decisions every 2 s. t=0 switch (phase 0 established) -> phase 1 from t=1; t=2 switch is
    asked before phase 1's min green (intergreen 5 s + 5 s: green from t=5, min green met at
    t=10), so it waits: re-issued over 2-4 and dropped; keep until t=10; switch at 10 -> phase 2."""
    env = BatchedSignalEnv(small_grid(1, 1), 1, decision_interval_s=2, episode_s=60, action_mode="keep_or_switch")
    env.reset(0)
    plan = {0: 1, 2: 1, 10: 1}
    phases = []
    for _ in range(7):
        t = int(env.sim.state.t[0])
        assert allowed(env) == [0, 1]  # keep and switch are always allowed: the engine times them
        env.step(torch.tensor([[plan.get(t, 0)]]))
        phases.append((int(env.sim.state.t[0]), int(env.sim.state.phase[0, 0])))
    assert phases == [(2, 1), (4, 1), (6, 1), (8, 1), (10, 1), (12, 2), (14, 2)]


# ---- every adapter's action space per mode -------------------------------------------------------


@pytest.mark.parametrize("mode", ACTION_MODES)
def test_every_adapter_exposes_the_modes_action_space(mode):
    counts = {"phase": [3, 4, 4, 4], "keep_or_switch": [2, 2, 2, 2], "phase_duration": [6, 8, 8, 8]}[mode]
    width = max(counts)
    kwargs = {"scenario": uneven_grid(), "episode_s": 60, **mode_kwargs(mode)}

    single = gymnasium.make(envs.ENV_ID, **kwargs).unwrapped
    assert single.action_space == spaces.MultiDiscrete(counts)
    single.reset(seed=0)
    assert single.action_masks().sum(-1).tolist() == counts
    single.step(np.zeros(4, dtype=np.int64))

    venv = gymnasium.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
    assert venv.single_action_space == spaces.MultiDiscrete(counts)
    venv.reset(seed=0)
    _, _, _, _, info = venv.step(np.zeros((2, 4), dtype=np.int64))
    assert info["action_mask"].shape == (2, 4, width)

    parallel = envs.parallel_env(**kwargs)
    assert [parallel.action_space(a).n for a in parallel.possible_agents] == counts
    _, infos = parallel.reset(seed=0)
    assert infos[parallel.possible_agents[0]]["action_mask"].shape == (width,)

    sb3 = envs.sb3_vec_env(copies=2, **kwargs)
    assert sb3.action_space == spaces.Discrete(width)
    sb3.reset()
    assert sb3.action_masks().shape == (8, width)
    assert np.array_equal(np.stack(sb3.env_method("action_masks")), sb3.action_masks())

    trl = envs.torchrl_env(copies=2, **kwargs)
    spec = trl.action_spec["intersections", "action"]
    assert spec.n == width and tuple(spec.shape) == (2, 4)
    td = trl.rand_step(trl.reset())
    assert td["next", "intersections", "action_mask"].shape == (2, 4, width)


def test_sb3_and_torchrl_masks_follow_the_holds():
    sb3 = envs.sb3_vec_env(copies=1, scenario=small_grid(1, 1), episode_s=60, decision_interval_s=5,
                           action_mode="phase_duration", green_durations_s=DURATIONS)
    sb3.reset()
    sb3.step(np.array([3]))  # phase 1 for 20 s
    assert sb3.action_masks()[0].nonzero()[0].tolist() == [3]

    trl = envs.torchrl_env(scenario=small_grid(1, 1), copies=1, episode_s=60, decision_interval_s=5,
                           action_mode="phase_duration", green_durations_s=DURATIONS)
    td = trl.reset()
    td["intersections", "action"] = torch.tensor([[3]])
    out = trl.step(td)
    assert out["next", "intersections", "action_mask"][0, 0].nonzero().flatten().tolist() == [3]
