"""The SB3 VecEnv (envs/rl/sb3_env.py) where tests/test_adapter_rows.py does not look: the rows
of the reset observation, a seed that applies to the next reset only (as SB3's own VecEnvs), an
action past a smaller intersection's actions (it keeps the phase, as -1 does in the core), and a
`step_wait` that takes the actions of one `step_async` once. Each is compared with a twin core."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from envs.errors import CommandError
from envs.rl.signal_env import BatchedSignalEnv
from scenarios import small_grid, uneven_grid

SETTINGS = {"episode_s": 600, "decision_interval_s": 10, "demand": {"mode": "poisson"}}


def test_the_reset_observation_is_intersection_i_of_copy_b_at_row_b_times_i_plus_i():
    kwargs = {"observations": ["phase_onehot", "lane_count", "intersection_id"], "episode_s": 60}
    vec = envs.sb3_vec_env(scenario=small_grid(1, 2), copies=2, **kwargs)
    twin = BatchedSignalEnv(small_grid(1, 2), 2, **kwargs)
    obs = vec.reset()
    twin_obs, _ = twin.reset()
    assert obs.shape == (4, twin_obs.shape[-1])
    assert np.array_equal(obs, twin_obs.reshape(4, -1).numpy())
    assert not np.array_equal(obs[0], obs[1])  # the intersections' rows differ (their id), so a swap shows


def _episode(step, steps: int = 4) -> list[np.ndarray]:
    return [np.asarray(step(k)) for k in range(steps)]


def test_a_seed_applies_to_the_next_reset_only():
    """vec.seed(3) seeds the reset after it; the reset after that continues the demand stream
    (a new episode, as the core's reset(None)), it does not replay the seeded one."""
    scenario = small_grid(1, 1, rate=900.0)
    vec = envs.sb3_vec_env(scenario=scenario, copies=2, **SETTINGS)
    twin = BatchedSignalEnv(scenario, 2, **SETTINGS)
    actions = [np.array([k % 4, (k + 1) % 4]) for k in range(4)]

    def vec_step(k):
        return vec.step(actions[k])[0]

    def twin_step(k):
        return twin.step(torch.as_tensor(actions[k]).reshape(2, 1))[0].reshape(2, -1).numpy()

    vec.seed(3)
    vec.reset()
    twin.reset(3)
    first, twin_first = _episode(vec_step), _episode(twin_step)
    vec.reset()
    twin.reset()
    second, twin_second = _episode(vec_step), _episode(twin_step)
    assert all(np.array_equal(a, b) for a, b in zip(first + second, twin_first + twin_second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))  # a replay would show


def test_an_action_past_a_smaller_intersections_actions_keeps_its_phase():
    """uneven_grid: intersection 0 has 3 actions, Discrete(4) lets SB3 hand it action 3 (a padding
    action: MaskablePPO masks it, plain PPO may draw it). It keeps the current phase, as -1 in the core."""
    vec = envs.sb3_vec_env(scenario=uneven_grid(), copies=1, episode_s=200)
    twin = BatchedSignalEnv(uneven_grid(), 1, episode_s=200)
    vec.reset()
    twin.reset()
    phase_of_1 = int(twin.actions.layout.action_phase[0, 1])
    for k in range(6):
        action = 1 if k < 3 else 3  # three decisions on action 1 (past min green), then the padding action
        obs, *_ = vec.step(np.array([action, 0, 2, 3]))
        twin_obs, *_ = twin.step(torch.tensor([[action if k < 3 else -1, 0, 2, 3]]))
        assert np.array_equal(obs, twin_obs.reshape(4, -1).numpy()), k
        assert int(vec.core.sim.state.phase[0, 0]) == phase_of_1, k


def test_step_wait_takes_the_actions_of_one_step_async_once():
    vec = envs.sb3_vec_env(scenario="grid_1x1", copies=2, episode_s=60)
    vec.reset()
    vec.step_async(np.array([1, 2]))
    vec.step_wait()
    with pytest.raises(CommandError, match=r"call step_async\(actions\) before step_wait\(\)"):
        vec.step_wait()
