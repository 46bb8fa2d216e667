"""Action modes: what an agent's action index means, which ones its mask allows, and the phase
command (`envs.engine.intersections`) it becomes. One `ActionDecoder` serves the RL env and the
controllers that run a trained policy (agents/ppo), so training and evaluation agree.

``EnvConfig.action_mode``:

- ``"phase"`` (choose-next-phase, the default): action ``a`` of intersection ``i`` commands its
  a-th signal phase (``layout.action_phase[i, a]``); ``A`` = the most signal phases anywhere.
- ``"keep_or_switch"``: two actions, 0 keeps the current phase, 1 switches to the next signal
  phase in cycle order (`next_action_phase`, decided at the decision and re-issued over the
  interval). A current phase that is not a signal phase (the roadnet's transition phase, where
  every episode starts) is never kept: both actions start the first signal phase.
- ``"phase_duration"`` (DynamicLight): one categorical over (phase, green duration): action
  ``a`` = phase action ``a // D`` with green ``green_durations_s[a % D]`` (``D`` durations).
  The chosen phase is held until it has shown that much green *since the decision* (a kept
  phase: that many more seconds; a new phase: its green after yellow and all-red). While an
  intersection holds, its mask allows exactly the action it is holding, and whatever action it
  is given is ignored (never an error, as long as the action exists at the intersection): in a
  batched env intersections finish their holds at different decisions, and each decides again
  at the first decision after its hold ends. So the green lasts the chosen duration rounded up
  to the decision grid (``decision_interval_s``).

Every mode goes through the engine's timing rules (`envs.engine.signals.switch_signals`): a switch
before ``min_green_s`` waits until the green has lasted that long, and every switch runs its
yellow and all-red; no action can shorten either. Action ``-1`` keeps the current phase in every
mode (for phase_duration: without starting a hold).
"""

from __future__ import annotations

import torch

from envs.engine.intersections import IntersectionLayout, action_commands, current_action, next_action_phase
from envs.engine.signals import green_elapsed
from envs.engine.state import EngineParams, SimState
from envs.errors import ConfigError
from envs.scenario.network import Network

ACTION_MODES = ("phase", "keep_or_switch", "phase_duration")
DEFAULT_ACTION_MODE = "phase"
DEFAULT_GREEN_DURATIONS_S = (10, 15, 20, 25, 30, 35, 40)
KEEP, SWITCH = 0, 1  # keep_or_switch's actions


def check_action_config(mode, durations, source: str) -> None:
    """ConfigError naming ``action_mode`` / ``green_durations_s`` for a bad mode or duration set."""
    if mode not in ACTION_MODES:
        raise ConfigError(source, "action_mode", mode, f"expected one of {list(ACTION_MODES)}")
    values = list(durations) if isinstance(durations, (list, tuple)) else None
    if not values:
        raise ConfigError(source, "green_durations_s", durations, "need a non-empty list of whole seconds")
    for k, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(source, f"green_durations_s[{k}]", value, "must be an integer >= 1 (seconds)")
    if len(set(values)) != len(values):
        raise ConfigError(source, "green_durations_s", values, "durations must be distinct")


def check_durations_read(mode, durations, source: str) -> None:
    """ConfigError for green durations other than the default given to a mode that ignores them
    (they were dropped without a word)."""
    if mode != "phase_duration" and tuple(durations) != DEFAULT_GREEN_DURATIONS_S:
        raise ConfigError(source, "green_durations_s", list(durations),
                          f"only action_mode=phase_duration chooses green durations (this one: {mode})")


def action_settings(env_meta: dict) -> tuple[str, tuple[int, ...]]:
    """``(action_mode, green_durations_s)`` of an env ``describe()`` (checkpoints written before
    the modes existed choose phases)."""
    mode = env_meta.get("action_mode", DEFAULT_ACTION_MODE)
    return mode, tuple(env_meta.get("green_durations_s", DEFAULT_GREEN_DURATIONS_S))


class ActionDecoder:
    """Masks and phase commands of one action mode for a batch of ``B`` copies (see module doc).
    Holds per-copy state only in ``phase_duration`` mode; `reset` / `reset_copies` clear it."""

    def __init__(self, layout: IntersectionLayout, network: Network, params: EngineParams, mode: str,
                 durations=DEFAULT_GREEN_DURATIONS_S, batch: int = 1, source: str = "<env>") -> None:
        check_action_config(mode, durations, source)
        self.layout, self.network, self.params, self.mode = layout, network, params, mode
        self.durations = tuple(int(d) for d in durations)
        phases = layout.num_actions  # [I]
        dev = phases.device
        if mode == "phase":
            self.num_actions = phases
        elif mode == "keep_or_switch":
            self.num_actions = torch.where(phases > 0, 2, 0)
        else:
            self.num_actions = phases * len(self.durations)
        self.max_actions = max(int(self.num_actions.max()), 1) if len(self.num_actions) else 1
        columns = torch.arange(self.max_actions, device=dev)
        self.static_mask = columns.unsqueeze(0) < self.num_actions.unsqueeze(1)  # [I, A]
        self._duration_table = torch.tensor(self.durations, dtype=torch.int64, device=dev)
        self.reset(batch)

    # ---- per-copy state (phase_duration) --------------------------------------------------
    def reset(self, batch: int) -> None:
        shape, dev = (batch, self.layout.num_intersections), self.static_mask.device
        self.batch = batch
        self.hold_phase = torch.full(shape, -1, dtype=torch.int64, device=dev)  # -1: not holding
        self.hold_action = torch.zeros(shape, dtype=torch.int64, device=dev)  # the action being held
        self.hold_s = torch.zeros(shape, dtype=torch.int64, device=dev)  # seconds of green asked for
        self.hold_from = torch.zeros(shape, dtype=torch.int64, device=dev)  # t of the decision

    def reset_copies(self, copies: torch.Tensor) -> None:
        """Clear the holds of the copies in the ``[B]`` mask (their episode restarts)."""
        self.hold_phase = torch.where(copies.to(self.hold_phase.device).unsqueeze(1), -1, self.hold_phase)

    def held_green_s(self, state: SimState) -> torch.Tensor:
        """Seconds the held phase has shown green since its decision ``[B, I]`` (<= 0 before)."""
        since = (state.t.unsqueeze(1) - self.hold_from)
        green = green_elapsed(self.network, self.params, state)
        return torch.where(state.phase == self.hold_phase, torch.minimum(green, since), torch.zeros_like(since))

    def holding(self, state: SimState) -> torch.Tensor:
        """``[B, I]`` bool: the intersection is inside a phase_duration hold (its action is ignored)."""
        if self.mode != "phase_duration":
            return torch.zeros_like(state.phase, dtype=torch.bool)
        return (self.hold_phase >= 0) & (self.held_green_s(state) < self.hold_s)

    # ---- masks and commands -----------------------------------------------------------------
    def mask(self, state: SimState) -> torch.Tensor:
        """``[B, I, A]`` bool: the actions allowed now (padding False; a holding intersection:
        only the action it holds)."""
        batch = state.phase.shape[0]
        mask = self.static_mask.unsqueeze(0).expand(batch, -1, -1)
        if self.mode != "phase_duration":
            return mask
        columns = torch.arange(self.max_actions, device=self.hold_action.device)
        held = self.hold_action.unsqueeze(-1) == columns  # one-hot without a device sync
        return torch.where(self.holding(state).unsqueeze(-1), held, mask)

    def commands(self, actions: torch.Tensor, state: SimState, deciding: torch.Tensor | None = None) -> torch.Tensor:
        """Phase commands ``[B, I]`` for checked action indices ``[B, I]`` (-1 or below
        `num_actions`) at the decision state `state`. ``deciding`` (``[B]`` bool, default all):
        copies at a decision; the others' holds are left as they are."""
        if self.mode == "phase":
            return action_commands(self.layout, actions)
        if self.mode == "keep_or_switch":
            upcoming = next_action_phase(self.layout, state)
            # KEEP never keeps the transition phase (it moves on to the next green); -1 keeps any phase
            keep = ((actions == KEEP) & (current_action(self.layout, state) >= 0)) | (actions < 0)
            return torch.where(keep, -1, upcoming)
        holding = self.holding(state)
        start = ~holding & (actions >= 0)
        if deciding is not None:
            start = start & deciding.to(start.device).unsqueeze(1)
        count = len(self.durations)
        chosen = action_commands(self.layout, torch.where(start, actions // count, 0))
        self.hold_phase = torch.where(start, chosen, torch.where(holding, self.hold_phase, -1))
        self.hold_action = torch.where(start, actions, self.hold_action)
        self.hold_s = torch.where(start, self._duration_table[(actions % count).clamp(min=0)], self.hold_s)
        self.hold_from = torch.where(start, state.t.unsqueeze(1).expand_as(actions), self.hold_from)
        return self.hold_phase.clone()  # -1 (keep) where no hold runs


__all__ = ["ACTION_MODES", "ActionDecoder", "DEFAULT_ACTION_MODE", "DEFAULT_GREEN_DURATIONS_S", "action_settings",
           "check_action_config"]
