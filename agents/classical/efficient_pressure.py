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
(right turns only) are never chosen. The true state is read: these controllers take no
detector faults (``detectors`` is not a field, so evaluate.py's faulty detectors pass them by).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from envs.engine.intersections import always_green
from envs.engine.movement_readings import effective_running, efficient_pressure, movement_queue
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

    def _source(self) -> str:
        return "<controller:efficient_mp>"

    def __post_init__(self) -> None:
        self._validate()  # at construction, not only when a run starts

    def _validate(self) -> None:
        _number(self._source(), "min_green_s", self.min_green_s, 0, False)

    def reset(self, sim: Simulator) -> None:
        self._validate()

    def phase_pressure(self, sim: Simulator) -> torch.Tensor:
        """Efficient pressure of every phase ``[B, I, P]`` (-inf for non-signal phases)."""
        return phase_scores(sim, efficient_pressure(sim.network, sim.state, sim.params.halting_speed))

    def best_phase(self, sim: Simulator, pressure: torch.Tensor) -> torch.Tensor:
        queue = movement_queue(sim.network, sim.state, sim.params.halting_speed)
        return (pressure + TIE_BREAK * phase_scores(sim, queue)).argmax(-1)

    def ready(self, sim: Simulator) -> torch.Tensor:
        return green_elapsed(sim.network, sim.params, sim.state) >= self.min_green_s

    def act(self, sim: Simulator) -> torch.Tensor:
        pressure = self.phase_pressure(sim)
        return torch.where(self.ready(sim), self.best_phase(sim, pressure), -1)


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
        """Effective running vehicles of each intersection's current phase ``[B, I]``."""
        running = effective_running(sim.network, sim.state, self.horizon_s, sim.params.halting_speed)
        per = phase_scores(sim, running)  # [B, I, P]; -inf on a non-signal phase, never kept
        return torch.gather(per, 2, sim.state.phase.unsqueeze(-1)).squeeze(-1)

    def act(self, sim: Simulator) -> torch.Tensor:
        pressure = self.phase_pressure(sim)
        keep = self.weight * self.running_on_green(sim) >= pressure.amax(-1)
        return torch.where(self.ready(sim) & ~keep, self.best_phase(sim, pressure), -1)
