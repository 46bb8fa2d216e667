"""A lane detector's reading by movement. A detector counts a lane, not the movements its
vehicles take next; the rules and observation features that count by movement (SOTL, efficient
and advanced max pressure, the ``movement_*``, ``efficient_pressure`` and ``effective_running``
features) split each lane's reported count over the lane's counted vehicles in their true shares
(each counts reported / true), and a count reported on a lane with none evenly over the
movements the lane feeds. Vehicles on the last road of their route take no movement and count
toward none, as in the true readings. Without faults (reported = true) the split gives the true
per-movement counts."""

from __future__ import annotations

import weakref

import torch

from envs.engine.intersections import lane_movements
from envs.scenario.network import Network

_PHANTOM_SHARE: "weakref.WeakKeyDictionary[Network, torch.Tensor]" = weakref.WeakKeyDictionary()


def phantom_share(network: Network) -> torch.Tensor:
    """``[L, M]`` the share of a lane's phantom vehicles (reported where none are) per movement it
    feeds; built once per network."""
    share = _PHANTOM_SHARE.get(network)
    if share is None:
        feeds = lane_movements(network).to(torch.float32)
        share = _PHANTOM_SHARE[network] = feeds / feeds.sum(1, keepdim=True).clamp(min=1.0)
    return share


def lane_totals(lane: torch.Tensor, counted: torch.Tensor, lanes: int) -> torch.Tensor:
    """The true per-lane count ``[B, L]`` float32 of the `counted` vehicles ``[B, S]`` on `lane`."""
    index = torch.where(counted, lane, lanes)  # uncounted slots land in the dropped column
    out = torch.zeros(lane.shape[0], lanes + 1, device=lane.device)
    return out.scatter_add_(1, index, counted.to(torch.float32))[:, :lanes]


def split_by_movement(network: Network, seen: torch.Tensor, true: torch.Tensor, lane: torch.Tensor,
                      counted: torch.Tensor, next_move: torch.Tensor) -> torch.Tensor:
    """The reported per-lane counts `seen` ``[B, L]`` (of true counts `true`, `lane_totals` of
    `counted` on `lane` ``[B, S]``) by the movement each vehicle takes next ``[B, M]``;
    `next_move` is the engine's ``veh_move`` (-1: none)."""
    lanes = true.shape[1]
    share = phantom_share(network)
    index = torch.where(counted, lane, lanes)
    ratio = torch.where(true > 0, seen / true.clamp(min=1.0), 0.0)
    weight = counted.to(torch.float32) * torch.gather(torch.cat([ratio, ratio[:, :1]], 1), 1, index)
    move = next_move[:, : lane.shape[1]]
    moves = share.shape[1]
    target = torch.where(counted & (move >= 0), move, moves)
    out = torch.zeros(lane.shape[0], moves + 1, device=lane.device).scatter_add_(1, target, weight)
    return out[:, :moves] + torch.where(true > 0, 0.0, seen) @ share


__all__ = ["lane_totals", "phantom_share", "split_by_movement"]
