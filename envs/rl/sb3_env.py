"""Stable-Baselines3 `VecEnv` over `BatchedSignalEnv`: one sub-environment per (copy, intersection).

Sub-environment ``n = b * I + i`` is intersection i of copy b, so a single SB3 policy drives
every intersection of every copy (parameter sharing; add the ``intersection_id`` feature to
let it tell them apart). Observations ``[B * I, F]``, actions ``[B * I]`` in
``Discrete(A)`` with A the most actions of any intersection in the ``action_mode``
(`envs.rl.actions`); an action past an intersection's own actions keeps its current phase.
sb3-contrib's MaskablePPO reads ``action_masks()`` (the next decision's mask: under
``phase_duration`` a holding intersection is allowed only its held action) and never picks a
masked one.

All intersections of a copy end their episode together (``dones`` repeats the copy's flag);
SB3's conventions hold: the returned observation of a done sub-environment is the first of its
new episode, the last one is ``infos[n]["terminal_observation"]``, and a time-limit end sets
``infos[n]["TimeLimit.truncated"]``. ``infos[n]["episode_metrics"]`` carries the metrics hub's
figures of the finished episode. An unknown keyword argument or render mode is a `ConfigError`;
actions that are not whole numbers, not one per sub-environment or outside ``Discrete(A)`` (-1, the
core's "keep", included), `step_wait` without a `step_async` before it, and a step before the
first `reset` or after `close`, a `CommandError`; reset options (`set_options`) a `ConfigError`:
none is read.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from envs.errors import CommandError, is_whole
from envs.rl.adapters import EpisodeGate, action_tensor, check_render_mode, check_reset_options, core_kwargs
from envs.rl.signal_env import BatchedSignalEnv
from envs.rl.signal_env import to_numpy as _numpy

SOURCE = "<env:sb3>"


class IntersectionVecEnv(VecEnv):
    def __init__(self, copies: int = 1, render_mode: str | None = None, **kwargs) -> None:
        check_render_mode(render_mode, SOURCE)
        always = "an SB3 VecEnv always autoresets (terminal_observation in infos)"
        self.core = BatchedSignalEnv(copies=copies, **core_kwargs(kwargs, SOURCE, {"autoreset": always}))
        core = self.core
        self.copies = copies
        self.num_intersections = core.num_intersections
        observation_space = spaces.Box(
            low=_numpy(core.obs_low).astype(np.float32),
            high=_numpy(core.obs_high).astype(np.float32), dtype=np.float32,
        )
        action_space = spaces.Discrete(core.max_actions)
        self.render_mode = render_mode
        super().__init__(copies * core.num_intersections, observation_space, action_space)
        self._actions: torch.Tensor | None = None
        self.gate = EpisodeGate(SOURCE)

    def reset(self):
        options = [o for o in self._options if o]  # set_options(...) before this reset
        if options:
            self._reset_options()  # refused once, not again at the next reset
            check_reset_options(options[0], SOURCE)
        self.gate.opened()
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.core.reset(seed)
        self._reset_seeds()
        self._reset_options()
        return _numpy(obs).reshape(self.num_envs, -1)

    def step_async(self, actions: np.ndarray) -> None:
        self.gate.check_step()
        actions = action_tensor(actions, self.num_envs, SOURCE, device=self.core.device)
        actions = actions.reshape(self.copies, self.num_intersections)
        # past Discrete(A), or below 0 (the core's -1 "keep"): not a padding action, a bug (it kept the phase)
        outside = (actions < 0) | (actions >= self.action_space.n)
        if bool(outside.any()):
            row = int(torch.nonzero(outside.reshape(-1))[0])
            raise CommandError(SOURCE, f"actions[{row}]", int(actions.reshape(-1)[row]),
                               f"outside Discrete({self.action_space.n})")
        valid = actions < self.core.num_actions.unsqueeze(0)
        self._actions = torch.where(valid, actions, -1)  # masked (padding) action: keep

    def step_wait(self):
        if self._actions is None:
            raise CommandError(SOURCE, "actions", None, "call step_async(actions) before step_wait()")
        actions, self._actions = self._actions, None
        obs, reward, terminated, truncated, info = self.core.step(actions)
        per_agent = self.num_intersections
        dones = _numpy(terminated | truncated).repeat(per_agent)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if "final_obs" in info:
            final_obs = _numpy(info["final_obs"]).reshape(self.num_envs, -1)
            trunc = _numpy(truncated & ~terminated)
            episode = {name: _numpy(value) for name, value in info["episode"].items()}
            for b in np.flatnonzero(_numpy(info["_final_obs"])):
                metrics = {name: float(value[b]) for name, value in episode.items()}
                for n in range(b * per_agent, (b + 1) * per_agent):
                    infos[n]["terminal_observation"] = final_obs[n]
                    infos[n]["TimeLimit.truncated"] = bool(trunc[b])
                    infos[n]["episode_metrics"] = metrics
        return (
            _numpy(obs).reshape(self.num_envs, -1),
            _numpy(reward).reshape(-1).astype(np.float32),
            dones,
            infos,
        )

    def action_masks(self) -> np.ndarray:
        return _numpy(self.core.action_mask).reshape(self.num_envs, -1).copy()

    def close(self) -> None:
        self.gate.closed()

    # ---- attribute plumbing SB3 expects; every sub-environment shares the one core --------
    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        rows = list(indices) if isinstance(indices, (list, tuple, range, np.ndarray)) else [indices]
        for n in rows:  # a row past num_envs was answered with the value of every row
            if not is_whole(n) or not 0 <= n < self.num_envs:
                raise CommandError(SOURCE, "indices", indices, f"need sub-environment rows in [0, {self.num_envs})")
        return [int(n) for n in rows]

    def _all_rows(self, indices, what: str) -> None:
        """Every sub-environment is one intersection of one shared batched core: a method called or an
        attribute set on some rows would act on all of them (env_method("reset", indices=[0]) reset
        every copy), so only all rows are accepted."""
        if sorted(set(self._indices(indices))) != list(range(self.num_envs)):
            raise CommandError(SOURCE, "indices", indices,
                               f"{what} acts on the one batched core that every sub-environment shares: "
                               "pass indices=None")

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        if attr_name == "action_masks":
            return [self.action_masks for _ in self._indices(indices)]
        value = getattr(self.core, attr_name) if hasattr(self.core, attr_name) else getattr(self, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        self._all_rows(indices, f"set_attr({attr_name!r})")
        setattr(self.core, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        rows = self._indices(indices)
        if method_name == "action_masks":
            mask = self.action_masks()
            return [mask[n] for n in rows]
        self._all_rows(indices, f"env_method({method_name!r})")
        result = getattr(self.core, method_name)(*method_args, **method_kwargs)
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        from envs.rl.render import render_frame

        frames = [render_frame(self.core, copy=b) for b in range(self.copies)]
        return [frames[n // self.num_intersections] for n in range(self.num_envs)]
