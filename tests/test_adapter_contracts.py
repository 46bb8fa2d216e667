"""Standard-contract gaps found by exercising the adapters from Python as a researcher would:
reset options were ignored without a word, Gymnasium's list of per-copy seeds failed inside
Gymnasium's own seeding, the single env reshaped an action of any shape holding I numbers, and
the SB3 VecEnv took -1 (outside its Discrete(A)) and kept the phase."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import envs
from envs.errors import CommandError, ConfigError


def _vector(num_envs: int = 3, **kwargs):
    return gymnasium.make_vec(envs.ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                              scenario="grid_1x1", episode_s=30, **kwargs)


@pytest.mark.parametrize("make, reset", [
    (lambda: _vector(), lambda env, options: env.reset(seed=0, options=options)),
    (lambda: gymnasium.make(envs.ENV_ID, scenario="grid_1x1", episode_s=30).unwrapped,
     lambda env, options: env.reset(seed=0, options=options)),
    (lambda: envs.sb3_vec_env(scenario="grid_1x1", episode_s=30),
     lambda env, options: (env.set_options(options), env.reset())),
], ids=["vector", "single", "sb3"])
def test_reset_options_are_refused_naming_options_not_ignored(make, reset):
    """(Not PettingZoo's: its parallel_api_test resets with options={"options": 1} and expects it taken.)"""
    env = make()
    reset(env, None)
    reset(env, {})  # what Gymnasium's checker passes
    with pytest.raises(ConfigError) as error:
        reset(env, {"scenario": "grid_4x4"})
    assert error.value.field == "options" and error.value.value == {"scenario": "grid_4x4"}


def _trajectory(env, seed, steps: int = 5) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for k in range(steps):
        obs, reward, *_ = env.step(np.full((env.num_envs, 1), k % 4))
        out += [obs, reward]
    return out


def test_the_vector_env_takes_gymnasiums_list_of_seeds_where_the_core_can_run_it():
    env = _vector(demand={"mode": "poisson"})
    by_int, by_list = _trajectory(env, 4), _trajectory(env, [4, 5, 6])
    assert all(np.array_equal(a, b) for a, b in zip(by_int, by_list))
    assert env.np_random_seed == 4
    env.reset(seed=[None, None, None])  # Gymnasium's "no seed" per copy
    for seeds in ([4, 6, 5], [4, 5], [4, 5.0, 6]):
        with pytest.raises(ConfigError) as error:  # was gymnasium's "Seed must be a python integer"
            env.reset(seed=seeds)
        assert error.value.field == "seed" and error.value.value == seeds


@pytest.mark.parametrize("action", [np.zeros((1, 16), dtype=np.int64), np.zeros((4, 4), dtype=np.int64), 0],
                         ids=["batched", "square", "scalar"])
def test_the_single_env_takes_actions_of_its_multidiscrete_shape_only(action):
    env = gymnasium.make(envs.ENV_ID, scenario="grid_4x4", episode_s=30).unwrapped
    env.reset(seed=0)
    with pytest.raises(CommandError) as error:  # a (4, 4) array was read row-major as 16 actions
        env.step(action)
    assert error.value.field == "actions.shape" and error.value.value == np.shape(action)
    assert "(16,)" in str(error.value)
    env.step(np.zeros(16, dtype=np.int64))


def test_sb3_actions_below_0_are_refused_naming_the_row():
    venv = envs.sb3_vec_env(scenario="grid_1x1", copies=3, episode_s=30)
    venv.reset()
    with pytest.raises(CommandError, match=r"outside Discrete\(4\)") as error:  # -1 kept the phase silently
        venv.step(np.array([0, -1, 2]))
    assert (error.value.field, error.value.value) == ("actions[1]", -1)
