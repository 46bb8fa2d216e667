"""Signals: which movements show green or yellow, and the phase switches a step accepts."""

from __future__ import annotations

from typing import NamedTuple

import torch

from envs.engine.state import EngineParams, SimState
from envs.scenario.network import Network


class Signals(NamedTuple):
    """The signal state of one step (before its timers tick)."""

    phase: torch.Tensor  # [B, I] the commanded phase
    prev_phase: torch.Tensor  # [B, I] the phase before the last switch
    timer: torch.Tensor  # [B, I] seconds since the last switch
    green: torch.Tensor  # [B, M+1] bool per movement; column M ("no movement") never green
    yellow: torch.Tensor  # [B, M+1] bool, likewise


def intergreen_s(network: Network, params: EngineParams, prev_phase, phase) -> torch.Tensor:
    """Seconds of yellow and all-red ``[B, I]`` after switching `prev_phase` -> `phase` (0
    when the switch ends no green)."""
    inter = torch.arange(network.num_intersections, device=phase.device)
    return network.phase_removes_green[inter, prev_phase, phase] * (
        params.yellow_s + params.all_red_s
    )


def signal_state(
    network: Network, params: EngineParams, phase, prev_phase, timer
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-movement ``green`` and ``yellow`` masks ``[B, M]`` for the given phase state."""
    batch = phase.shape[0]
    inter = torch.arange(network.num_intersections, device=phase.device)
    current = network.phase_green[inter, phase]  # [B, I, K]
    previous = network.phase_green[inter, prev_phase]
    intergreen = intergreen_s(network, params, prev_phase, phase)
    green = current & (previous | (timer >= intergreen).unsqueeze(-1))
    yellow = previous & ~current & (timer < params.yellow_s).unsqueeze(-1)
    return green.reshape(batch, -1), yellow.reshape(batch, -1)


def green_elapsed(network: Network, params: EngineParams, state: SimState) -> torch.Tensor:
    """Seconds the current phase has shown its green ``[B, I]`` (negative during intergreen)."""
    return state.phase_timer - intergreen_s(network, params, state.prev_phase, state.phase)


def switch_signals(
    network: Network, params: EngineParams, state: SimState, command: torch.Tensor
) -> Signals:
    """Accept each command ``[B, I]`` (-1 = keep) once the current green has lasted
    ``min_green_s``; a switch restarts the timer (yellow, then all-red, then the new green)."""
    elapsed = green_elapsed(network, params, state)
    switch = (command >= 0) & (command != state.phase) & (elapsed >= params.min_green_s)
    prev_phase = torch.where(switch, state.phase, state.prev_phase)
    phase = torch.where(switch, command, state.phase)
    timer = torch.where(switch, torch.zeros_like(state.phase_timer), state.phase_timer)
    green, yellow = signal_state(network, params, phase, prev_phase, timer)
    no_move = torch.zeros(phase.shape[0], 1, dtype=torch.bool, device=phase.device)
    green = torch.cat([green, no_move], 1)  # column M: "no movement"
    yellow = torch.cat([yellow, no_move], 1)
    return Signals(phase, prev_phase, timer, green, yellow)
