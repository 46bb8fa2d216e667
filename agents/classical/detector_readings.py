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
from envs.engine.intersections import gather_lanes, intersection_layout
from envs.incidents.movement_split import lane_totals, split_by_movement


class FaultyReadings:
    def __init__(self, detectors, sim: Simulator) -> None:
        layout = intersection_layout(sim.network)
        self.detectors = detectors
        self.in_lanes = layout.in_lanes  # [I, W] each intersection's incoming lanes
        self.upper = feature_context(sim.network, layout, sim.params).lane_max_vehicles  # [L]
        self.fallback = FixedTime()
        self.fallback.reset(sim)
        self.blind: torch.Tensor | None = None  # [B, I], from the last reading that sets it
        self.network = sim.network

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
        lanes `lane`), by the movement each takes next ``[B, M]`` (`envs.incidents.movement_split`),
        and the per-lane reading ``[B, L]``."""
        true = lane_totals(lane, counted, self.network.num_lanes)
        seen = self.read(name, true, state.t, sets_blind, zone)
        return split_by_movement(self.network, seen, true, lane, counted, state.veh_move), seen

    def fail_safe(self, sim: Simulator, command: torch.Tensor) -> torch.Tensor:
        """`command` ``[B, I]`` with the blind intersections on the fixed-time plan."""
        if self.blind is None:
            return command
        return torch.where(self.blind, self.fallback.act(sim), command)
