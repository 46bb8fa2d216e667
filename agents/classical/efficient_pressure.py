"""Efficient-MP and Advanced-MP (Zhang et al. 2022, "Expression might be enough: representing
pressure and demand for reinforcement learning based traffic signal control"), batched over
copies and intersections.

Both read `envs.engine.movement_readings`: a movement's *efficient pressure* is its queue
(halting vehicles that take it next) minus the mean queue of the lanes it leads into; its
*effective running vehicles* are the moving vehicles taking it next that can reach the stop line
within ``horizon_s`` at the lane's speed limit. A phase's value is the sum over the movements it
makes green, leaving out those green in every signal phase (the datasets' right turns), as Zhang
et al.'s phases sum only their through and left movements: no switch changes what those serve.

- **Efficient-MP** (``efficient_mp``): once the current phase has shown ``min_green_s`` of green,
  switch to the signal phase with the largest efficient pressure.
- **Advanced-MP** (``advanced_mp``): the same, except that the current phase is kept while
  ``weight`` x its effective running vehicles >= the largest efficient pressure of any phase:
  vehicles about to cross on green are served before a queue elsewhere that is no larger.

Zhang et al. decide every 15 s (their action interval, with ``horizon_s`` 15 s: 167 m at
11.1 m/s) and ``weight`` 1. Here, as `max_pressure`, a controller reconsiders every second once
min green has passed; ``horizon_s`` is what the running vehicles must reach the stop line within.
Ties go to the phase with more halting vehicles, then to the lowest index. Transition phases
(right turns only, each green in a signal phase too) are never chosen.

Both run on lane detectors: a halting count per lane (the queues, the lanes each movement leads
into) and, for Advanced-MP, a count of the moving vehicles within ``horizon_s`` of the stop line.
With ``detectors`` set they read what faulty ones report, each lane's count split over the
movements its vehicles take next in their true shares, with a fixed-time fail-safe where an
intersection's detectors are all dead (`agents.classical.detector_readings`); without, the true
counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from agents.classical.detector_readings import FaultyReadings
from envs.engine.intersections import always_green
from envs.engine.movement_readings import (
    effective_running, exit_mean, halting_vehicles, movement_queue, running_vehicles,
)
from envs.engine.readings import lane_halting
from envs.engine.signals import green_elapsed
from envs.engine.simulator import Simulator
from envs.errors import ConfigError
from envs.rl.features import per_phase

# Weight of the halting count that breaks ties. Efficient pressures are sums of fractions with
# denominators up to the exit lanes of a movement (differences of at least ~1/60 for <= 5 lanes);
# 1e-5 x even 1000 halting vehicles stays below that.
TIE_BREAK = 1e-5


def _number(source: str, name: str, value, minimum: float, strict: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        raise ConfigError(source, name, value, f"must be a finite number {'>' if strict else '>='} {minimum}")


def phase_scores(sim: Simulator, movement: torch.Tensor) -> torch.Tensor:
    """Sum a per-movement quantity ``[B, M]`` over each phase's green movements that a switch can
    stop (not green in every signal phase) ``[B, I, P]``; -inf for non-signal phases."""
    switchable = ~always_green(sim.network).reshape(-1)  # [M]
    phase = per_phase(sim.network, movement * switchable)
    return torch.where(sim.network.signal_phase.unsqueeze(0), phase, -torch.inf)


@dataclass
class EfficientMaxPressure:
    min_green_s: float = 10.0
    # faulty lane detectors (envs.incidents.perturbations.DetectorFaults); None reads the true counts
    detectors: object | None = field(default=None, repr=False, compare=False)
    _readings = None  # FaultyReadings over `detectors`, built by reset

    def _source(self) -> str:
        return "<controller:efficient_mp>"

    def __post_init__(self) -> None:
        self._validate()  # at construction, not only when a run starts

    def _validate(self) -> None:
        _number(self._source(), "min_green_s", self.min_green_s, 0, False)

    def reset(self, sim: Simulator) -> None:
        self._validate()
        self._readings = FaultyReadings(self.detectors, sim) if self.detectors is not None else None

    def movement_pressure(self, sim: Simulator) -> tuple[torch.Tensor, torch.Tensor]:
        """Efficient pressure and queue of every movement ``[B, M]`` each, as the halting
        detectors report them."""
        network, state, halting_speed = sim.network, sim.state, sim.params.halting_speed
        if self._readings is None:
            queue = movement_queue(network, state, halting_speed)
            per_lane = lane_halting(state, network.num_lanes, halting_speed).to(torch.float32)
        else:
            lane, halting = halting_vehicles(network, state, halting_speed)
            queue, per_lane = self._readings.by_movement("lane_halting", state, lane, halting)
        # Zhang et al.'s efficient pressure (envs.engine.movement_readings.efficient_pressure)
        return queue * network.movement_valid - exit_mean(network, per_lane), queue

    def phase_pressure(self, sim: Simulator) -> torch.Tensor:
        """Efficient pressure of every phase ``[B, I, P]`` (-inf for non-signal phases)."""
        return phase_scores(sim, self.movement_pressure(sim)[0])

    def best_phase(self, sim: Simulator, pressure: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """The signal phase of highest efficient pressure `pressure` ``[B, I, P]``, ties to the
        larger movement `queue` ``[B, M]``."""
        return (pressure + TIE_BREAK * phase_scores(sim, queue)).argmax(-1)

    def ready(self, sim: Simulator) -> torch.Tensor:
        return green_elapsed(sim.network, sim.params, sim.state) >= self.min_green_s

    def fail_safe(self, sim: Simulator, command: torch.Tensor) -> torch.Tensor:
        return command if self._readings is None else self._readings.fail_safe(sim, command)

    def act(self, sim: Simulator) -> torch.Tensor:
        movement, queue = self.movement_pressure(sim)
        best = self.best_phase(sim, phase_scores(sim, movement), queue)
        return self.fail_safe(sim, torch.where(self.ready(sim), best, -1))


@dataclass
class AdvancedMaxPressure(EfficientMaxPressure):
    horizon_s: float = 10.0  # running vehicles count if they reach the stop line within this
    weight: float = 1.0  # keep while weight x running on green >= the largest efficient pressure

    def _source(self) -> str:
        return "<controller:advanced_mp>"

    def _validate(self) -> None:
        super()._validate()
        _number(self._source(), "horizon_s", self.horizon_s, 0, True)
        _number(self._source(), "weight", self.weight, 0, False)

    def running_on_green(self, sim: Simulator) -> torch.Tensor:
        """Effective running vehicles of each intersection's current phase ``[B, I]``, as the
        detectors over each lane's last ``horizon_s`` of driving report them."""
        network, state, halting_speed = sim.network, sim.state, sim.params.halting_speed
        if self._readings is None:
            running = effective_running(network, state, self.horizon_s, halting_speed)
        else:  # the halting reading decides which intersections are blind
            lane, moving = running_vehicles(network, state, self.horizon_s, halting_speed)
            running, _ = self._readings.by_movement("lane_running", state, lane, moving, sets_blind=False,
                                                    zone=self.horizon_s)
        per = phase_scores(sim, running)  # [B, I, P]; -inf on a non-signal phase, never kept
        return torch.gather(per, 2, state.phase.unsqueeze(-1)).squeeze(-1)

    def act(self, sim: Simulator) -> torch.Tensor:
        movement, queue = self.movement_pressure(sim)
        pressure = phase_scores(sim, movement)
        keep = self.weight * self.running_on_green(sim) >= pressure.amax(-1)
        command = torch.where(self.ready(sim) & ~keep, self.best_phase(sim, pressure, queue), -1)
        return self.fail_safe(sim, command)
