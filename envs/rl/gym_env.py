"""Gymnasium adapters over `BatchedSignalEnv` (numpy in, numpy out; no loop over copies).

- `TrafficSignalVectorEnv` (the primary one):
  ``gymnasium.make_vec("gridlight/TrafficSignal-v0", num_envs=B,
  vectorization_mode="vector_entry_point", scenario=...)``. Sub-environment b is copy b of the
  batched engine. Observations ``[B, I, F]``; actions ``[B, I]``: ``action_space`` is an int64
  `Box` of shape ``(B, I)`` from 0 to ``A_i - 1`` for intersection i (A_i: its number of actions
  in the ``action_mode``, `envs.rl.actions`: its signal phases, 2 for keep-or-switch, phases x
  durations for phase-and-duration; ``single_action_space`` is one copy's
  ``MultiDiscrete([A_0, ..., A_{I-1}])``), and -1 is accepted too, keeping the current phase;
  reward ``[B]`` = the sum of the intersections' rewards (each one in ``info["agent_rewards"]``,
  ``[B, I]``). Autoreset is Gymnasium's ``SAME_STEP`` mode: a done copy's last observation is
  in ``info["final_obs"]`` (an object array, entries None for copies not done) and its episode
  metrics in ``info["final_info"]["episode"]``.
- `TrafficSignalEnv`: ``gymnasium.make("gridlight/TrafficSignal-v0", scenario=...)``, one copy,
  every intersection: observation flattened to ``Box[I * F]`` (intersection-major: entries
  ``i * F ... (i + 1) * F - 1`` are intersection i's features, so SB3's MLP policies take it
  as is), action ``MultiDiscrete([A_0, ..., A_{I-1}])``; reward the sum over intersections;
  no autoreset (call `reset` after ``terminated or truncated``).

Both expose ``action_masks()`` (``[I, A]`` / ``[B, I, A]`` bool, padding False; the mask of
the next decision, which under ``phase_duration`` allows a holding intersection only its held
action) and render
``rgb_array`` frames (`envs.rl.render`). Keyword arguments are `BatchedSignalEnv`'s (an
unknown one, or a bad ``render_mode``, is a `ConfigError`, as are reset ``options``, which
neither reads); actions that are not whole numbers or not of the action space's shape (``(B, I)``
/ ``(I,)``) are a `CommandError`. The vector env's ``reset(seed=...)`` also takes Gymnasium's
list of per-copy seeds where it is ``[s, s + 1, ...]`` (copy b runs demand sample ``s + b``).
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.errors import ConfigError, is_whole
from envs.rl.adapters import (
    EpisodeGate, action_tensor, check_render_mode, check_reset_options, core_kwargs, single_copy_kwargs, vector_seed,
)
from envs.rl.signal_env import BatchedSignalEnv
from envs.rl.signal_env import to_numpy as _numpy

from envs import ENV_ID  # noqa: F401  (registered by importing envs)

SOURCE = "<env:gym>"


def observation_box(core: BatchedSignalEnv) -> spaces.Box:
    """``Box[I, F]`` float32 with the features' documented bounds."""
    shape = (core.num_intersections, core.obs_size)
    low = np.broadcast_to(_numpy(core.obs_low), shape).astype(np.float32)
    high = np.broadcast_to(_numpy(core.obs_high), shape).astype(np.float32)
    return spaces.Box(low=low, high=high, dtype=np.float32)


def _render_frames(core: BatchedSignalEnv, copies) -> list[np.ndarray]:
    from envs.rl.render import render_frame

    return [render_frame(core, copy=b) for b in copies]


class TrafficSignalVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs) -> None:
        check_render_mode(render_mode, SOURCE)
        if not is_whole(num_envs) or num_envs < 1:  # was named 'copies'
            raise ConfigError(SOURCE, "num_envs", num_envs, "must be an integer >= 1")
        num_envs = int(num_envs)
        always = "the vector environment always autoresets (Gymnasium's SAME_STEP mode)"
        kwargs = core_kwargs(kwargs, SOURCE, {"copies": "set num_envs instead", "autoreset": always},
                             own=("num_envs", "render_mode"))
        self.core = BatchedSignalEnv(copies=num_envs, **kwargs)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = observation_box(self.core)
        self.single_action_space = spaces.MultiDiscrete(_numpy(self.core.num_actions))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.gate = EpisodeGate(SOURCE)

    def reset(self, *, seed: int | list | None = None, options: dict | None = None):
        check_reset_options(options, SOURCE)
        seed = vector_seed(seed, self.num_envs, SOURCE)
        self.gate.opened()
        super().reset(seed=seed)
        obs, info = self.core.reset(seed)
        return _numpy(obs), self._info(info)

    def close_extras(self, **kwargs) -> None:
        self.gate.closed()

    def step(self, actions):
        self.gate.check_step()
        actions = action_tensor(actions, self.num_envs * self.core.num_intersections, SOURCE, self.core.device)
        obs, reward, terminated, truncated, info = self.core.step(actions)
        return (
            _numpy(obs), _numpy(reward.sum(-1)).astype(np.float64), _numpy(terminated),
            _numpy(truncated), self._info(info, reward),
        )

    def action_masks(self) -> np.ndarray:
        return _numpy(self.core.action_mask).copy()

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return tuple(_render_frames(self.core, range(self.num_envs)))

    def _info(self, info: dict, reward: torch.Tensor | None = None) -> dict:
        every = np.ones(self.num_envs, dtype=bool)
        out = {"action_mask": _numpy(info["action_mask"]).copy(), "_action_mask": every,
               "t": _numpy(info["t"]), "_t": every}
        if reward is not None:
            out["agent_rewards"], out["_agent_rewards"] = _numpy(reward), every
        if "final_obs" in info:
            done = _numpy(info["_final_obs"])
            final = np.full(self.num_envs, None, dtype=object)
            final_obs = _numpy(info["final_obs"])
            for b in np.flatnonzero(done):
                final[b] = final_obs[b]
            out["final_obs"], out["_final_obs"] = final, done
            episode = {name: _numpy(value) for name, value in info["episode"].items()}
            episode.update({f"_{name}": done for name in list(episode)})
            out["final_info"] = {"episode": episode, "_episode": done}
            out["_final_info"] = done
        return out


class TrafficSignalEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs) -> None:
        check_render_mode(render_mode, SOURCE)
        self.core = BatchedSignalEnv(copies=1, autoreset=False, **single_copy_kwargs(kwargs, SOURCE))
        self.render_mode = render_mode
        box = observation_box(self.core)
        self.observation_space = spaces.Box(
            low=box.low.reshape(-1), high=box.high.reshape(-1), dtype=np.float32
        )
        self.action_space = spaces.MultiDiscrete(_numpy(self.core.num_actions))
        # no autoreset: past the episode's end the clock ran on, each step truncated again
        self.gate = EpisodeGate(SOURCE)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        check_reset_options(options, SOURCE)
        self.gate.opened()
        super().reset(seed=seed)
        obs, info = self.core.reset(seed)
        return _numpy(obs[0]).reshape(-1), self._info(info)

    def close(self) -> None:
        self.gate.closed()
        super().close()

    def step(self, action):
        self.gate.check_step()
        inter = self.core.num_intersections  # MultiDiscrete([A_0 ... A_{I-1}]): shape (I,), as its contains() asks
        action = action_tensor(action, inter, SOURCE, self.core.device, shape=(inter,)).reshape(1, -1)
        obs, reward, terminated, truncated, info = self.core.step(action)
        out = self._info(info)
        out["agent_rewards"] = _numpy(reward[0])
        if "episode" in info:  # not "episode": Gymnasium's RecordEpisodeStatistics and SB3's Monitor write that key
            out["episode_metrics"] = {name: float(value[0]) for name, value in info["episode"].items()}
        if bool(terminated[0]) or bool(truncated[0]):
            self.gate.ended()
        return (
            _numpy(obs[0]).reshape(-1), float(reward.sum()), bool(terminated[0]),
            bool(truncated[0]), out,
        )

    def action_masks(self) -> np.ndarray:
        return _numpy(self.core.action_mask[0]).copy()

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return _render_frames(self.core, [0])[0]

    def _info(self, info: dict) -> dict:
        return {"action_mask": _numpy(info["action_mask"][0]).copy(), "t": int(info["t"][0])}
