"""TorchRL `EnvBase` over `BatchedSignalEnv`:
``envs.torchrl_env(scenario=..., copies=B, device=...)``.

Batch size ``[B]`` (the copies) and one agent group, ``"intersections"`` (``group_map`` lists
the roadnet ids), laid out as TorchRL's multi-agent wrappers (PettingZoo, VMAS) lay out theirs:

- ``("intersections", "observation")`` ``[B, I, F]`` float32 (the features' documented bounds),
  ``("intersections", "action_mask")`` ``[B, I, A]`` bool (the next decision's mask, padding
  False; under ``action_mode=phase_duration`` a holding intersection is allowed only its held
  action, `envs.rl.actions`);
- ``("intersections", "action")`` ``[B, I]`` int64, a `Categorical` over ``A`` (the most actions
  of any intersection in the ``action_mode``: phases, keep/switch, or phase x green duration)
  carrying the static mask (padding False), so ``rand_action`` only draws existing actions (a
  holding intersection's action is ignored);
- ``("intersections", "reward")`` ``[B, I, 1]``;
- ``"done"`` / ``"terminated"`` / ``"truncated"`` ``[B, 1]`` for each copy, and the same per
  agent under the group, ``[B, I, 1]`` (every intersection of a copy ends its episode together).

Autoreset happens inside the batched step, as in the core: a copy that reaches ``episode_s``
(truncated) or runs out of demand (terminated) starts its next episode (and draws its next
demand sample) within the same `step`. `_step` reports the episode's last observation in
``("next", ...)``; the `_reset` that `step_and_maybe_reset` (and so `rollout` and the
collectors) then calls with a ``"_reset"`` mask does no engine work for those copies: it hands
out the observation of the episode already under way, which is the new episode's first. So the
collected data holds the true terminal observation under ``"next"`` and the next root
observation is the fresh episode's, and the demand samples are drawn in the order the
Gymnasium and SB3 adapters draw them. A ``"_reset"`` that names a copy still running restarts
it (new demand sample); a reset without ``"_reset"`` restarts every copy, from the seed given
to `set_seed` if there was one.

``compile_engine=True`` compiles the engine step (the core's ``compile``). The keyword
``compile`` belongs to TorchRL: `EnvBase`'s metaclass takes it before ``__init__`` runs and
wraps the whole `step_and_maybe_reset` in `torch.compile`, which here traces the demand
sampling of every autoreset (numpy, graph breaks, a recompile per new sample) and left the
engine itself eager: hangzhou_4x4 training fell to ~3,000-6,000 agent-steps/s on the CPU. So
this class's `compile` (what the metaclass calls) is a `ConfigError` that names
``compile_engine``.

Everything stays on the env's device: no numpy and no host copies (the action check reads one
boolean back, as the core's does). A device this machine does not have is a `ConfigError`
naming ``device``; an action missing, of the wrong shape or type, or outside the action mask,
a step before the first reset, and a step or reset after `close` a `CommandError`; an unknown
keyword a `ConfigError`.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from envs.errors import CommandError, ConfigError, flag, is_whole
from envs.rl.adapters import core_kwargs
from envs.rl.signal_env import BatchedSignalEnv
from envs.scenario.network import check_device

SOURCE = "<env:torchrl>"
GROUP = "intersections"
DONE_KEYS = ("done", "terminated", "truncated")


class TrafficSignalTorchRLEnv(EnvBase):
    """B copies of a scenario as one TorchRL env; see the module docstring for the layout."""

    def __init__(self, scenario="grid_4x4", copies: int = 1, device="cpu", compile_engine: bool = False,
                 **kwargs) -> None:
        never = "this environment always autoresets inside the batched step"
        # `compile` never gets here (EnvBase's metaclass takes it, see `compile` below)
        kwargs = core_kwargs(kwargs, SOURCE, {"autoreset": never, "compile": "pass compile_engine=True"},
                             own=("compile_engine",))
        device = check_device(device, SOURCE)
        self.core = BatchedSignalEnv(scenario, copies, device=str(device), autoreset=True,
                                     compile=flag(compile_engine, SOURCE, "compile_engine"), **kwargs)
        super().__init__(device=self.core.device, batch_size=torch.Size([self.core.copies]))
        self.last_info: dict = {}  # the core's info of the last step (episode metrics of ended copies)
        core = self.core
        B, I, A, F = core.copies, core.num_intersections, core.max_actions, core.obs_size
        self.group_map = {GROUP: list(core.layout.ids)}
        # the layout's mask, one contiguous copy per env copy (specs and outputs must not alias
        # an expanded view: TorchRL writes into outputs in place)
        mask = core.actions.static_mask.to(self.device)
        self._mask = mask.unsqueeze(0).expand(B, I, A).contiguous()
        self._fresh = torch.zeros(B, dtype=torch.bool, device=self.device)  # autoreset, not stepped
        self._seed: int | None = None
        self._started = self._closed = False
        self._make_specs(B, I, A, F)

    # ---- specs -----------------------------------------------------------------------------
    def _make_specs(self, B: int, I: int, A: int, F: int) -> None:
        dev, core = self.device, self.core
        low = core.obs_low.to(dev).expand(B, I, F).clone()
        high = core.obs_high.to(dev).expand(B, I, F).clone()
        self.observation_spec = Composite(
            {GROUP: Composite({
                "observation": Bounded(low=low, high=high, shape=(B, I, F),
                                       dtype=torch.float32, device=dev),
                "action_mask": Categorical(n=2, shape=(B, I, A), dtype=torch.bool, device=dev),
            }, shape=(B, I), device=dev)},
            shape=(B,), device=dev,
        )
        self.action_spec = Composite(
            {GROUP: Composite({
                "action": Categorical(n=A, shape=(B, I), dtype=torch.int64, device=dev,
                                      mask=self._mask.clone()),
            }, shape=(B, I), device=dev)},
            shape=(B,), device=dev,
        )
        self.reward_spec = Composite(
            {GROUP: Composite(
                {"reward": Unbounded(shape=(B, I, 1), dtype=torch.float32, device=dev)},
                shape=(B, I), device=dev,
            )},
            shape=(B,), device=dev,
        )
        def flags(*shape):
            flag = Categorical(n=2, shape=shape, dtype=torch.bool, device=dev)
            return {k: flag.clone() for k in DONE_KEYS}

        self.done_spec = Composite(
            {**flags(B, 1), GROUP: Composite(flags(B, I, 1), shape=(B, I), device=dev)},
            shape=(B,), device=dev,
        )

    # ---- sizes -----------------------------------------------------------------------------
    @property
    def num_intersections(self) -> int:
        return self.core.num_intersections

    @property
    def max_actions(self) -> int:
        return self.core.max_actions

    # ---- EnvBase ---------------------------------------------------------------------------
    def compile(self, *, warmup=None, **kwargs):
        """Refused: see the module docstring (``compile_engine=True`` compiles the engine)."""
        raise ConfigError(SOURCE, "compile", kwargs or True, (
            "TorchRL's compile wraps the whole step, autoreset's demand sampling included; "
            "pass compile_engine=True to compile the engine step"))

    def close(self, *, raise_if_closed: bool = True) -> None:
        self._closed = True
        super().close(raise_if_closed=raise_if_closed)

    def _set_seed(self, seed: int | None) -> None:
        """The next full reset restarts the demand sample indices at `seed` (as the core's
        ``reset(seed)``); partial resets continue from where the samples are."""
        if seed is not None and (not is_whole(seed) or seed < 0):
            raise ConfigError(SOURCE, "seed", seed, "must be an integer >= 0")
        self._seed = None if seed is None else int(seed)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        self._check_open("reset")
        self._started = True
        mask = self._reset_mask(tensordict)
        if mask is None:  # reset() without "_reset": every copy, from the seed if one was set
            obs, _ = self.core.reset(self._seed)
            self._seed = None
            self._fresh = torch.ones_like(self._fresh)
        else:
            restart = mask & ~self._fresh  # copies that autoreset in the step are already restarted
            if bool(restart.any()):
                self.core.restart_copies(restart)
            self._fresh = self._fresh | mask
            obs = self.core.observe()
        return self._output(obs)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self._check_open("step")
        if not self._started:  # the core would step from its construction state, unseeded
            raise CommandError(SOURCE, "step", None, "call reset() before step()")
        command = self._commands(tensordict.get((GROUP, "action"), None))
        obs, reward, terminated, truncated, info = self.core.step_commands(command)
        self.last_info = info
        # a done copy is already in its next episode; "next" holds the one it finished
        self._fresh = terminated | truncated
        last = info.get("final_obs", obs)
        return self._output(last, reward, terminated, truncated, info.get("final_action_mask"))

    # ---- helpers ---------------------------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self._closed:  # EnvBase.close only sets a flag (is_closed, True from the start too): the core ran on
            raise CommandError(SOURCE, what, None, "closed: make a new environment")

    def _reset_mask(self, tensordict: TensorDictBase | None) -> torch.Tensor | None:
        """The ``[B]`` copies a ``"_reset"`` entry names (the root one, else the group's, where
        any intersection of a copy restarts the copy); None when there is none."""
        if tensordict is None:
            return None
        reset = tensordict.get("_reset", None)
        if reset is None:
            reset = tensordict.get((GROUP, "_reset"), None)
        if reset is None:
            return None
        return reset.to(device=self.device, dtype=torch.bool).reshape(self.core.copies, -1).any(-1)

    def _commands(self, actions) -> torch.Tensor:
        """Phase commands for the ``[B, I]`` action indices: the core's check against the action
        mask (no -1: the action spec has no "keep"), after the checks of type only this env needs."""
        B, I = self.core.copies, self.num_intersections
        field = f"{GROUP}.action"
        if not isinstance(actions, torch.Tensor):
            raise CommandError(SOURCE, field, type(actions).__name__,
                               f"need an integer tensor [{B}, {I}] of action indices")
        dtype = actions.dtype
        if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
            raise CommandError(SOURCE, f"{field}.dtype", str(actions.dtype),
                               "actions are integer action indices (categorical, not one-hot)")
        return self.core.commands(actions, keep=False, source=SOURCE, field=field)

    def _output(self, obs, reward=None, terminated=None, truncated=None, mask=None) -> TensorDict:
        """What reset (no reward, nothing done) and step return, every entry a fresh tensor; `mask`
        (a step that autoreset copies: the finished episodes' last mask, beside their last
        observation) defaults to the core's."""
        B, I = self.core.copies, self.num_intersections
        if terminated is None:
            terminated = truncated = torch.zeros(B, dtype=torch.bool, device=self.device)
        flags = {"terminated": terminated, "truncated": truncated, "done": terminated | truncated}
        mask = self.core.action_mask if mask is None else mask
        group = {"observation": obs, "action_mask": mask.to(self.device).contiguous().clone()}
        group.update({k: v.view(B, 1, 1).expand(B, I, 1).clone() for k, v in flags.items()})
        if reward is not None:
            group["reward"] = reward.to(torch.float32).unsqueeze(-1)
        out = {k: v.view(B, 1).clone() for k, v in flags.items()}
        out[GROUP] = TensorDict(group, batch_size=(B, I), device=self.device)
        return TensorDict(out, batch_size=(B,), device=self.device)


__all__ = ["GROUP", "TrafficSignalTorchRLEnv", "check_device"]
