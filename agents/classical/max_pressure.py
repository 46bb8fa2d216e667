"""Max-pressure control (Varaiya 2013), batched over copies and intersections.

Pressure of a movement = vehicles on its incoming lanes - vehicles on its outgoing lanes (each
distinct lane counted once); pressure of a phase = the sum over the movements it makes green.
Once the current phase has shown ``min_green_s`` of green, each intersection switches to the
signal phase of highest pressure. Ties go to the phase with more vehicles on its incoming
lanes, then to the lowest index (``tie_break_by_inflow=False``: lowest index only).
``use_halting`` counts only halting vehicles upstream. ``sensing="approach"`` counts each lane
over its approach through pass-through junctions (`envs.engine.approaches`): on imported city
networks whose lights sit behind stub roads of a few metres, the queue before the stub counts.

Max pressure runs on lane detectors: with ``detectors`` set it reads what faulty ones report,
with a fixed-time fail-safe where they are all dead (`agents.classical.detector_readings`); the halting
count never above the vehicle count of the same detector.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

import torch

from agents.classical.detector_readings import FaultyReadings
from envs.engine.approaches import SENSING, approach_map
from envs.engine.simulator import Simulator
from envs.engine.signals import green_elapsed
from envs.errors import ConfigError, flag
from envs.rl.features import movement_counts, movement_lane_sums, per_phase
from envs.engine.readings import lane_halting

# Weight of the incoming-vehicle count that breaks pressure ties. Ties are common at low demand
# (vehicles downstream cancel the one waiting), and a plain argmax would then hold the lowest
# phase forever while a vehicle waits at red. Pressures are whole numbers and no phase has 1000
# vehicles waiting, so this never overrides a real pressure difference.
TIE_BREAK = 1e-3


@dataclass
class MaxPressure:
    min_green_s: int = 10
    use_halting: bool = False
    tie_break_by_inflow: bool = True  # False: plain argmax (lowest index), as textbook MP
    sensing: str = "lane"  # "approach": lanes counted over their approaches (module doc)
    # faulty lane detectors (envs.incidents.perturbations.DetectorFaults); None reads the true counts
    detectors: object | None = field(default=None, repr=False, compare=False)
    _readings = None  # FaultyReadings over `detectors`, built by reset
    _approaches = None  # ApproachMap under approach sensing, built by reset

    def __post_init__(self) -> None:
        self._validate()  # at construction, not only when a run starts

    def _validate(self) -> None:
        if isinstance(self.min_green_s, bool) or not isinstance(self.min_green_s, (int, float)) or \
                not math.isfinite(self.min_green_s) or self.min_green_s < 0:  # NaN: it never switched
            raise ConfigError("<controller:max_pressure>", "min_green_s", self.min_green_s,
                              "must be a finite number >= 0")
        flag(self.use_halting, "<controller:max_pressure>", "use_halting")  # bool("no") is True
        flag(self.tie_break_by_inflow, "<controller:max_pressure>", "tie_break_by_inflow")
        if self.sensing not in SENSING:
            raise ConfigError("<controller:max_pressure>", "sensing", self.sensing, f"expected one of {SENSING}")

    def reset(self, sim: Simulator) -> None:
        self._validate()
        self._approaches = approach_map(sim.network) if self.sensing == "approach" else None
        self._readings = FaultyReadings(self.detectors, sim) if self.detectors is not None else None

    def movement_counts(self, sim: Simulator) -> tuple[torch.Tensor, torch.Tensor]:
        """Vehicles upstream and downstream of every movement, ``[B, M]`` each, as the lane
        detectors report them (`envs.rl.features.movement_counts` when they are true and count
        lanes)."""
        if self._readings is None and self._approaches is None:
            return movement_counts(sim.network, sim.state, self.use_halting, sim.params.halting_speed)
        state, lanes = sim.state, sim.network.num_lanes
        counts = state.lane_count[:, :lanes]
        if self._readings is not None:
            counts = self._readings.read("lane_count", counts, state.t)
        upstream = counts
        if self.use_halting:
            upstream = lane_halting(state, lanes, sim.params.halting_speed)
            if self._readings is not None:  # one detector station: halting never above its count
                upstream = torch.minimum(
                    self._readings.read("lane_halting", upstream, state.t, sets_blind=False), counts)
        if self._approaches is not None:
            upstream = self._approaches.upstream.apply(upstream)
            counts = self._approaches.downstream.apply(counts)
        return movement_lane_sums(sim.network, upstream.to(torch.float32), counts.to(torch.float32))

    @staticmethod
    def per_phase(sim: Simulator, movement: torch.Tensor) -> torch.Tensor:
        """Sum a per-movement quantity over each phase's green movements ``[B, I, P]``;
        -inf for phases that are not signal phases (transition phases are never chosen)."""
        phase = per_phase(sim.network, movement)
        return torch.where(sim.network.signal_phase.unsqueeze(0), phase, -torch.inf)

    def phase_pressure(self, sim: Simulator) -> torch.Tensor:
        upstream, downstream = self.movement_counts(sim)
        return self.per_phase(sim, upstream - downstream)

    def act(self, sim: Simulator) -> torch.Tensor:
        upstream, downstream = self.movement_counts(sim)
        score = self.per_phase(sim, upstream - downstream)
        if self.tie_break_by_inflow:
            score = score + TIE_BREAK * self.per_phase(sim, upstream)
        best = score.argmax(dim=-1)  # first maximum: lowest phase index on a full tie
        ready = green_elapsed(sim.network, sim.params, sim.state) >= self.min_green_s
        command = torch.where(ready, best, -1)
        return command if self._readings is None else self._readings.fail_safe(sim, command)
