"""What lane detectors measure from a state: halting vehicles and vehicles per stop-line segment.

The same readings feed the observations (envs.rl.features), the metrics hub, the classical
controllers and incident detection, so they live here, beside the state they read.
"""

from __future__ import annotations

import torch

from envs.engine.state import SimState
from envs.scenario.network import Network

SEGMENT_M = 50.0  # length of one stop-line segment
NUM_SEGMENTS = 3  # segments counted before each stop line


def lane_halting(state: SimState, num_lanes: int, halting_speed: float = 0.1) -> torch.Tensor:
    """Halting vehicles per lane ``[B, L]``."""
    slots = state.veh_lane.shape[1] - 1
    lane = state.veh_lane[:, :slots]
    halting = (lane >= 0) & (state.veh_speed[:, :slots] < halting_speed)
    out = torch.zeros(lane.shape[0], num_lanes + 1, dtype=torch.int64, device=lane.device)
    out = out.scatter_add(1, torch.where(lane >= 0, lane, num_lanes), halting.to(torch.int64))
    return out[:, :num_lanes]


def segment_counts(network: Network, state: SimState) -> torch.Tensor:
    """Vehicles in each of the `NUM_SEGMENTS` segments of `SEGMENT_M` before every lane's stop
    line (nearest first) ``[B, L, S]`` float32."""
    lanes = network.num_lanes
    slots = state.veh_lane.shape[1] - 1
    lane = state.veh_lane[:, :slots]
    active = lane >= 0
    lane_c = torch.where(active, lane, 0)
    to_stop = network.lane_length[lane_c] - state.veh_pos[:, :slots]
    segment = torch.floor(to_stop.clamp(min=0.0) / SEGMENT_M).to(torch.int64)
    counted = active & (segment < NUM_SEGMENTS)
    cell = torch.where(counted, lane_c * NUM_SEGMENTS + segment.clamp(max=NUM_SEGMENTS - 1), lanes * NUM_SEGMENTS)
    per_cell = torch.zeros(lane.shape[0], lanes * NUM_SEGMENTS + 1, device=lane.device)
    per_cell.scatter_add_(1, cell, counted.to(torch.float32))
    return per_cell[:, :-1].reshape(-1, lanes, NUM_SEGMENTS)
