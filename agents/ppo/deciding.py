"""Which intersections decide, and what training counts of them.

An intersection with one signal phase (a SUMO scenario's unsignalised junction: 58 of
resco_cologne8's 66, 322 of resco_ingolstadt21's 343) has nothing to decide: its forced action
teaches the policy nothing. So ``train.total_agent_steps``, ``agent.batch_size``,
``train.eval_every`` / ``checkpoint_every`` and the logged agent-step counts and rates count the
decisions of the intersections with two or more signal phases (one agent-step: one such
intersection's decision), in both trainers. Where every intersection decides (hangzhou_4x4, the
generated grids) that is every intersection's step, as it always was.

The SB3 trainer learns from the deciding intersections' rows alone (`DecidingRows`: SB3's
sub-environments are their (copy, intersection) pairs; the others get the one action their mask
allows); the TorchRL trainer's samples keep every intersection (its per-intersection and
centralised networks read them together) and its own loss leaves the others' rows out
(`agents.ppo.torchrl_update`). The networks, hence checkpoints, still cover every intersection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from envs.engine.intersections import deciding_intersections
from envs.errors import CommandError, ConfigError, is_whole


def check_deciding(action_phase: torch.Tensor, scenario: str) -> int:
    """How many intersections decide; a ConfigError naming the scenario when none does (nothing to train)."""
    count = int(deciding_intersections(action_phase).sum())
    if count == 0:
        raise ConfigError("<config>", "scenario.name", scenario,
                          "no intersection has two or more signal phases: there is no decision to train")
    return count


class DecidingRows(VecEnvWrapper):
    """SB3's sub-environments narrowed to the (copy, intersection) pairs of the deciding intersections
    (``n = b * D + d``, in the wrapped env's order). The other intersections are given, each step,
    the first action their mask allows (their only one under ``action_mode=phase``), as a policy
    that never decides there; their observations, rewards and infos are not SB3's to learn from.
    Every other call goes to the wrapped env, which steps every intersection of every copy."""

    def __init__(self, venv: VecEnv, deciding: np.ndarray) -> None:
        deciding = np.asarray(deciding, dtype=bool)
        copies = venv.num_envs // deciding.shape[0]
        self.rows = np.flatnonzero(np.tile(deciding, copies))
        super().__init__(venv)
        self.num_envs = int(self.rows.shape[0])  # VecEnvWrapper took the wrapped env's

    def reset(self):
        return self.venv.reset()[self.rows]

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):  # not silently broadcast into the pairs
            raise CommandError("<env:sb3>", "actions", actions.shape, f"need one action per sub-environment "
                               f"({self.num_envs}: the deciding intersections' pairs)")
        full = self.venv.action_masks().argmax(-1).astype(actions.dtype)  # the first allowed action
        full[self.rows] = actions
        self.venv.step_async(full)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        return obs[self.rows], rewards[self.rows], dones[self.rows], [infos[n] for n in self.rows]

    def action_masks(self) -> np.ndarray:
        return self.venv.action_masks()[self.rows]

    def _wrapped(self, indices) -> list[int]:
        """The wrapped env's rows of this wrapper's `indices` (None: all of them)."""
        count = len(self.rows)  # not num_envs: VecEnv.__init__ asks get_attr("render_mode") before it is ours
        rows = range(count) if indices is None else (
            list(indices) if isinstance(indices, (list, tuple, range, np.ndarray)) else [indices])
        for n in rows:  # a row past num_envs would answer for some other row, or none
            if not is_whole(n) or not 0 <= n < count:
                raise CommandError("<env:sb3>", "indices", indices, f"need sub-environment rows in [0, {count})")
        return [int(self.rows[int(n)]) for n in rows]

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        wrapped = self._wrapped(indices)
        if method_name == "action_masks":  # sb3-contrib's get_action_masks
            masks = self.venv.action_masks()
            return [masks[n] for n in wrapped]
        # every call but action_masks acts on the one shared core: the wrapped env takes all its rows, or refuses
        every = None if len(set(wrapped)) == len(self.rows) else wrapped
        result = self.venv.env_method(method_name, *method_args, indices=every, **method_kwargs)
        return [result[0] for _ in wrapped]

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        wrapped = self._wrapped(indices)
        if attr_name == "action_masks":  # this wrapper's masks, not the wrapped env's rows
            return [self.action_masks for _ in wrapped]
        value = self.venv.get_attr(attr_name)[0]  # one shared core: every row answers alike
        return [value for _ in wrapped]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        wrapped = self._wrapped(indices)
        self.venv.set_attr(attr_name, value, indices=None if len(set(wrapped)) == len(self.rows) else wrapped)


__all__ = ["DecidingRows", "check_deciding", "deciding_intersections"]
