"""What a classical controller's detectors report under faults, and its fail-safe.

`max_pressure` reads lane counts, `sotl` approach counts, `efficient_mp` and `advanced_mp` halting
and running counts from detectors; with an `envs.incidents.perturbations.DetectorFaults` set
(``evaluate.py perturbation=...`` does it on perturbed copies) they read through a
`FaultyReadings`: noisy, dropped, stuck or dead per-lane readings, each never above what its lane
can hold. A lost reading counts 0, and an intersection whose incoming lanes all report nothing (a
dead detector cabinet) is *blind*: it runs the roadnet's fixed-time plan until they report again,
as field controllers fall back on detector failure (on all-zero readings a detector-driven rule
would hold one phase and starve the others). The rules that count vehicles by the movement they
take next (`sotl`, `efficient_mp`, `advanced_mp`) split each lane's reading over the movements of
its vehicles (`FaultyReadings.by_movement`).
"""

from __future__ import annotations

import torch

from agents.classical.fixed_time import FixedTime
from envs.engine.simulator import Simulator
from envs.rl.features import feature_context
from envs.engine.intersections import gather_lanes, intersection_layout, lane_movements


class FaultyReadings:
    def __init__(self, detectors, sim: Simulator) -> None:
        layout = intersection_layout(sim.network)
        self.detectors = detectors
        self.in_lanes = layout.in_lanes  # [I, W] each intersection's incoming lanes
        self.upper = feature_context(sim.network, layout, sim.params).lane_max_vehicles  # [L]
        self.fallback = FixedTime()
        self.fallback.reset(sim)
        self.blind: torch.Tensor | None = None  # [B, I], from the last reading that sets it
        # [L, M] share of a lane's phantom vehicles (reported where none are) per movement it feeds
        feeds = lane_movements(sim.network).to(torch.float32)
        self.lane_share = feeds / feeds.sum(1, keepdim=True).clamp(min=1.0)

    def read(self, name: str, true: torch.Tensor, t: torch.Tensor, sets_blind: bool = True,
             zone: float | None = None) -> torch.Tensor:
        """The detectors' `name` reading of the true per-lane values ``[B, L]`` at steps `t`
        (lost readings 0), over the approach `zone` if it counts one (`DetectorFaults.apply`).
        With `sets_blind`, the intersections it finds all silent are blind."""
        seen = self.detectors.apply(name, true.to(torch.float32), t, upper=self.upper, missing=float("nan"),
                                    zone=zone)
        if sets_blind:
            reporting = gather_lanes((~seen.isnan()).to(torch.float32), self.in_lanes)  # [B, I, W]
            self.blind = reporting.sum(-1) == 0
        return seen.nan_to_num(0.0)

    def by_movement(self, name: str, state, lane: torch.Tensor, counted: torch.Tensor, sets_blind: bool = True,
                    zone: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What the per-lane detectors `name` report of the `counted` vehicles ``[B, S]`` (on
        lanes `lane`), by the movement each takes next ``[B, M]``, and the per-lane reading
        ``[B, L]``. A detector counts a lane, not movements: its reported count is split over the
        lane's vehicles in their true shares (each counts seen / true), and a count reported on a
        lane with none evenly over the movements the lane feeds. Vehicles on the last road of
        their route take no movement and count toward none, as in the true readings."""
        lanes, moves = self.lane_share.shape
        index = torch.where(counted, lane, lanes)  # uncounted slots land in the dropped column
        weight = counted.to(torch.float32)
        true = torch.zeros(lane.shape[0], lanes + 1, device=lane.device).scatter_add_(1, index, weight)[:, :lanes]
        seen = self.read(name, true, state.t, sets_blind, zone)
        ratio = torch.where(true > 0, seen / true.clamp(min=1.0), 0.0)
        weight = weight * torch.gather(torch.cat([ratio, ratio[:, :1]], 1), 1, index)
        move = state.veh_move[:, : lane.shape[1]]
        target = torch.where(counted & (move >= 0), move, moves)
        out = torch.zeros(lane.shape[0], moves + 1, device=lane.device).scatter_add_(1, target, weight)
        return out[:, :moves] + torch.where(true > 0, 0.0, seen) @ self.lane_share, seen

    def fail_safe(self, sim: Simulator, command: torch.Tensor) -> torch.Tensor:
        """`command` ``[B, I]`` with the blind intersections on the fixed-time plan."""
        if self.blind is None:
            return command
        return torch.where(self.blind, self.fallback.act(sim), command)
