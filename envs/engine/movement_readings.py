"""Approach and per-movement readings: the state as the pressure-and-demand rules see it.

Zhang et al. 2022 ("Expression might be enough: representing pressure and demand for
reinforcement learning based traffic signal control", Advanced-XLight) describe an intersection
by the *queue* on each movement, its *efficient pressure* and its *effective running vehicles*;
SOTL-style rules count the vehicles *approaching* within some metres of the stop line. These
functions compute them for every copy and movement at once (no loop over vehicles or copies).

A vehicle belongs to the movement it takes next (its route's next turn, cached by the engine in
``veh_move``), so a lane shared by a left and a through movement is split correctly; a vehicle
on the last road of its route has no movement and counts toward none. Its distance to the stop
line is ``lane length - front position``; a vehicle still crossing the box onto its lane (front
position < 0) is further than the lane's length. *Halting* is slower than ``halting_speed``
(0.1 m/s, CityFlow's threshold, as `envs.engine.readings.lane_halting`); *moving* is the rest.
"""

from __future__ import annotations

import torch

from envs.engine.readings import lane_halting
from envs.engine.signals import signal_state
from envs.engine.state import EngineParams, SimState
from envs.scenario.network import Network


def _vehicles(network: Network, state: SimState):
    """Each slot's lane (0 for free slots), whether it holds a vehicle, and its distance to the
    stop line ``[B, S]``."""
    slots = state.veh_lane.shape[1] - 1
    lane = state.veh_lane[:, :slots]
    active = lane >= 0
    lane_c = torch.where(active, lane, 0)
    return lane_c, active, network.lane_length[lane_c] - state.veh_pos[:, :slots]


def _count(index: torch.Tensor, counted: torch.Tensor, size: int) -> torch.Tensor:
    """Vehicles per cell ``[B, size]`` float32: each counted slot adds 1 to its cell `index`."""
    cell = torch.where(counted, index, size)  # uncounted slots land in the dropped column
    out = torch.zeros(index.shape[0], size + 1, dtype=torch.float32, device=index.device)
    return out.scatter_add_(1, cell, counted.to(torch.float32))[:, :size]


def _by_movement(network: Network, state: SimState, counted: torch.Tensor) -> torch.Tensor:
    move = state.veh_move[:, : counted.shape[1]]
    return _count(move.clamp(min=0), counted & (move >= 0), network.num_movements)


def approach_vehicles(
    network: Network, state: SimState, distance_m: float, halting_speed: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each slot's lane and whether it holds a vehicle within `distance_m` of its lane's stop
    line that is moving, and one that is halting ``[B, S]`` each: what an approach detector counts."""
    lane, active, to_stop = _vehicles(network, state)
    near = active & (to_stop <= distance_m)
    halting = state.veh_speed[:, : lane.shape[1]] < halting_speed
    return lane, near & ~halting, near & halting


def approach_by_lane(
    network: Network, state: SimState, distance_m: float, halting_speed: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vehicles within `distance_m` of their lane's stop line, moving and halting, ``[B, L]`` each."""
    lane, moving, halting = approach_vehicles(network, state, distance_m, halting_speed)
    return _count(lane, moving, network.num_lanes), _count(lane, halting, network.num_lanes)


def approach_by_movement(
    network: Network, state: SimState, distance_m: float, halting_speed: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vehicles within `distance_m` of the stop line, by next movement, moving and halting,
    ``[B, M]`` each."""
    _, moving, halting = approach_vehicles(network, state, distance_m, halting_speed)
    return _by_movement(network, state, moving), _by_movement(network, state, halting)


def halting_vehicles(
    network: Network, state: SimState, halting_speed: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each slot's lane and whether it holds a halting vehicle ``[B, S]`` each: what a lane's
    halting detector counts."""
    lane, active, _ = _vehicles(network, state)
    return lane, active & (state.veh_speed[:, : active.shape[1]] < halting_speed)


def movement_queue(network: Network, state: SimState, halting_speed: float = 0.1) -> torch.Tensor:
    """Halting vehicles by next movement, anywhere on their lane ``[B, M]``."""
    return _by_movement(network, state, halting_vehicles(network, state, halting_speed)[1])


def exit_queue_mean(network: Network, state: SimState, halting_speed: float = 0.1) -> torch.Tensor:
    """Mean halting vehicles over the lanes each movement leads into ``[B, M]`` (0 for padding
    movements and movements without exit lanes)."""
    return exit_mean(network, lane_halting(state, network.num_lanes, halting_speed).to(torch.float32))


def exit_mean(network: Network, per_lane: torch.Tensor) -> torch.Tensor:
    """Mean of a per-lane reading ``[B, L]`` float over the lanes each movement leads into
    ``[B, M]`` (0 for padding movements and movements without exit lanes)."""
    lanes = network.num_lanes
    per_lane = torch.cat([per_lane, torch.zeros_like(per_lane[:, :1])], 1)  # column L: padding
    out_lanes = network.movement_out_lanes  # [M, E]
    index = torch.where(out_lanes >= 0, out_lanes, lanes)
    total = per_lane[:, index].sum(-1)  # [B, M]
    count = (out_lanes >= 0).sum(-1).clamp(min=1).to(torch.float32)
    return total / count * network.movement_valid


def efficient_pressure(network: Network, state: SimState, halting_speed: float = 0.1) -> torch.Tensor:
    """Zhang et al.'s efficient pressure per movement ``[B, M]``: its queue (halting vehicles
    that take it next) minus the mean queue of the lanes it leads into."""
    queue = movement_queue(network, state, halting_speed) * network.movement_valid
    return queue - exit_queue_mean(network, state, halting_speed)


def effective_running(
    network: Network, state: SimState, horizon_s: float, halting_speed: float = 0.1
) -> torch.Tensor:
    """Zhang et al.'s effective running vehicles per movement ``[B, M]``: moving vehicles that
    take the movement next and are within the distance the lane's speed limit covers in
    `horizon_s` seconds of the stop line, i.e. those that can reach it within the next interval."""
    return _by_movement(network, state, running_vehicles(network, state, horizon_s, halting_speed)[1])


def running_vehicles(
    network: Network, state: SimState, horizon_s: float, halting_speed: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each slot's lane and whether it holds a moving vehicle within the distance the lane's speed
    limit covers in `horizon_s` seconds of the stop line ``[B, S]`` each (`effective_running`,
    per lane: what a detector over that stretch counts)."""
    lane, active, to_stop = _vehicles(network, state)
    reach = network.lane_max_speed[lane] * horizon_s
    moving = state.veh_speed[:, : lane.shape[1]] >= halting_speed
    return lane, active & moving & (to_stop <= reach)


def movement_red_elapsed(network: Network, params: EngineParams, state: SimState) -> torch.Tensor:
    """Seconds each movement has not shown green ``[B, M]`` float32: 0 while green (a right turn
    green in every phase is always 0), else the seconds since the last switch at its
    intersection. The state keeps one previous phase, so this is exact for a movement the last
    switch stopped (or one waiting through the intergreen for its green) and a lower bound for a
    movement already red before that switch. Padding movements read 0."""
    green, _ = signal_state(network, params, state.phase, state.prev_phase, state.phase_timer)
    moves = green.shape[1] // network.num_intersections
    timer = state.phase_timer.to(torch.float32).repeat_interleave(moves, dim=1)  # [B, M]
    return torch.where(green, 0.0, timer) * network.movement_valid
