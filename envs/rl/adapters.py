"""What the Gymnasium, PettingZoo and SB3 adapters share: checks of their keyword arguments,
render mode and actions, each failing with a named `ConfigError` / `CommandError`."""

from __future__ import annotations

import inspect

import numpy as np
import torch

from envs.errors import CommandError, ConfigError, is_whole
from envs.rl.signal_env import BatchedSignalEnv

RENDER_MODES = (None, "rgb_array")
CORE_KEYWORDS = tuple(sorted(set(inspect.signature(BatchedSignalEnv.__init__).parameters) - {"self"}))


def check_render_mode(render_mode, source: str) -> None:
    if render_mode not in RENDER_MODES:
        raise ConfigError(source, "render_mode", render_mode, f"expected one of {list(RENDER_MODES)}")


def core_kwargs(kwargs: dict, source: str, set_here: dict[str, str], own: tuple = ("render_mode",)) -> dict:
    """`kwargs` for `BatchedSignalEnv`, checked: every key is one of its keywords and none is one
    the adapter sets itself (`set_here`: keyword -> what to do instead). An unknown one is named
    with the keywords the adapter takes: its `own` and the core's it passes on."""
    for key, value in kwargs.items():
        if key in set_here:
            raise ConfigError(source, key, value, set_here[key])
        if key not in CORE_KEYWORDS:
            known = sorted((set(CORE_KEYWORDS) - set(set_here)) | set(own))
            raise ConfigError(source, key, value, "unknown keyword; known: " + ", ".join(known))
    return dict(kwargs)


def single_copy_kwargs(kwargs: dict, source: str) -> dict:
    """`core_kwargs` of a one-copy adapter without autoreset: ``copies`` may only be 1."""
    kwargs = dict(kwargs)
    copies = kwargs.pop("copies", 1)
    if isinstance(copies, bool) or not isinstance(copies, int) or copies != 1:  # 1.0 passed
        raise ConfigError(source, "copies", copies, "this environment runs one copy; the vector "
                          "environments (gymnasium.make_vec, envs.sb3_vec_env) run more")
    never = "this environment never autoresets: call reset() after the episode ends"
    return core_kwargs(kwargs, source, {"autoreset": never})


def check_reset_options(options, source: str) -> None:
    """``reset(options=...)`` of the Gymnasium and SB3 adapters: none reads any option, so only None
    or an empty mapping (what Gymnasium's checker passes) is taken; anything else was ignored without
    a word. (PettingZoo's API test resets with ``{"options": 1}``: that adapter takes any.)"""
    if options is not None and not (isinstance(options, dict) and not options):
        raise ConfigError(source, "options", options, "this environment reads no reset options: pass None "
                          "(the scenario, demand and rules are the constructor's keyword arguments)")


def vector_seed(seed, num_envs: int, source: str) -> int | None:
    """A vector env's ``reset(seed=...)`` as the core's one seed: an int (copy b runs demand sample
    ``seed + b``, as Gymnasium seeds sub-environment b), None, or Gymnasium's list of per-copy seeds
    when the core can run it: every entry None, or ``[s, s + 1, ..., s + B - 1]``."""
    if not isinstance(seed, (list, tuple)):
        return seed
    if len(seed) != num_envs:
        raise ConfigError(source, "seed", seed, f"a list of seeds needs one per copy ({num_envs})")
    if all(s is None for s in seed):
        return None
    first = seed[0]
    if not all(is_whole(s) for s in seed) or list(seed) != list(range(first, first + num_envs)):
        raise ConfigError(source, "seed", seed, "copy b runs demand sample seed + b: pass one int seed, or "
                          "the list [s, s + 1, ..., s + num_envs - 1]")
    return int(first)


def action_tensor(actions, count: int, source: str, device: torch.device | str = "cpu",
                  shape: tuple | None = None) -> torch.Tensor:
    """`actions` (array-like of `count` whole numbers; of `shape` where one is given, else any shape)
    as an int64 tensor of its shape, on `device` (the core's, wherever the tensor meets the core's
    own tensors)."""
    array = np.asarray(actions)
    if array.size != count or (shape is not None and array.shape != shape):
        want = f"expected shape {shape}" if shape is not None else f"expected {count} actions"
        raise CommandError(source, "actions.shape", tuple(array.shape), want)
    if np.issubdtype(array.dtype, np.bool_):  # was cast to 1/0 (the core and TorchRL refuse bool tensors)
        raise CommandError(source, "actions", f"{array.dtype} array", "actions are whole numbers (action "
                           "indices), not bools; the mask is info['action_mask'] / action_masks()")
    if not np.issubdtype(array.dtype, np.integer):
        whole = (np.issubdtype(array.dtype, np.floating)
                 and bool(np.all(np.isfinite(array) & (array == np.round(array)))))
        if not whole:
            shown = array.reshape(-1)[:8].tolist() if array.dtype != object else str(array.dtype)
            raise CommandError(source, "actions", shown, "actions are whole numbers (action indices)")
    return torch.as_tensor(array, dtype=torch.int64, device=device)


class EpisodeGate:
    """When an adapter may step: after a `reset` and before `close` (and, for the adapters that do
    not autoreset, not past the episode's end). The core steps from its construction state, so a
    step before the first reset ran an unseeded episode, and one after close ran on; both are a
    `CommandError` instead, as Gymnasium's own environments refuse them."""

    CLOSED = "closed: make a new environment"

    def __init__(self, source: str) -> None:
        self.source = source
        self.why_not = "call reset() before step()"

    def opened(self) -> None:
        """A reset: refused once closed, else stepping may start."""
        if self.why_not == self.CLOSED:
            raise CommandError(self.source, "reset", None, self.CLOSED)
        self.why_not = ""

    def check_step(self) -> None:
        if self.why_not:
            raise CommandError(self.source, "step", None, self.why_not)

    def ended(self) -> None:
        self.why_not = "the episode ended (terminated or truncated): call reset() before step()"

    def closed(self) -> None:
        self.why_not = self.CLOSED
