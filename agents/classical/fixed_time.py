"""Fixed-time control: the roadnet's own plan as written, or a uniform split of a given cycle.

``plan="roadnet"`` commands each intersection's ``lightphases`` in order with their written
durations (CityFlow's own behaviour when it runs the plan). The engine's intergreen (yellow +
all-red) is inserted inside the commanded phase's time, so the cycle length is the written
one; the engine's minimum green also holds a transition phase (right turns only), which delays
the next phase by up to ``min_green_s`` (docs/controllers.md gives the effect).
``plan="uniform"`` gives each signal phase (transition phases excluded) an equal share of
``cycle_s`` (which only it reads: a cycle changed under the roadnet plan is refused).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from envs.engine.simulator import Simulator
from envs.errors import CommandError, ConfigError

SOURCE = "<controller:fixed_time>"
DEFAULT_CYCLE_S = 120.0


@dataclass
class FixedTime:
    plan: str = "roadnet"  # "roadnet" | "uniform"
    cycle_s: float = DEFAULT_CYCLE_S  # uniform plan only
    offset_s: float = 0.0

    def __post_init__(self) -> None:
        self._validate()  # at construction, not only when a run starts

    def _validate(self) -> None:
        # written as `not isfinite`: NaN and inf pass any `x <= 0` test, and either one turns every
        # slot of the cycle into NaN, so the plan would silently run phase 0 or the last phase
        for name in ("offset_s", "cycle_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(SOURCE, name, value, "must be a finite number")
        if self.plan not in ("roadnet", "uniform"):
            raise ConfigError(SOURCE, "plan", self.plan, "expected 'roadnet' or 'uniform'")
        if self.plan == "uniform" and not self.cycle_s > 0:
            raise ConfigError(SOURCE, "cycle_s", self.cycle_s, "must be a finite number > 0")
        if self.plan == "roadnet" and self.cycle_s != DEFAULT_CYCLE_S:  # was ignored
            raise ConfigError(SOURCE, "cycle_s", self.cycle_s,
                              "only plan=uniform reads cycle_s; the roadnet plan runs its written durations")

    def reset(self, sim: Simulator) -> None:
        self._validate()
        net = sim.network
        if self.plan == "roadnet":
            durations = net.phase_duration.clone()
            phases = torch.arange(durations.shape[1], device=net.device).expand_as(durations)
            valid = net.phase_valid
        else:  # uniform
            valid = net.signal_phase
            count = valid.sum(1, keepdim=True).clamp(min=1)
            durations = torch.where(valid, self.cycle_s / count, 0.0)
            phases = torch.arange(durations.shape[1], device=net.device).expand_as(durations)
        # order the used phases first so the cycle is a prefix of each row
        order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
        self._phases = phases.gather(1, order)
        self._ends = torch.cumsum(torch.where(valid, durations, 0.0).gather(1, order), 1)  # [I, P]
        self._cycle = self._ends[:, -1].clamp(min=1e-9)  # [I]

    def act(self, sim: Simulator) -> torch.Tensor:
        if not hasattr(self, "_cycle"):  # an AttributeError before
            raise CommandError("<controller>", "act", "FixedTime", "call reset(sim) before act(sim)")
        t = sim.state.t.to(torch.float32).unsqueeze(1) + self.offset_s  # [B, 1]
        in_cycle = torch.remainder(t, self._cycle.unsqueeze(0))  # [B, I]
        slot = (in_cycle.unsqueeze(-1) >= self._ends.unsqueeze(0)).sum(-1)  # [B, I]
        slot = slot.clamp(max=self._phases.shape[1] - 1)
        return torch.gather(self._phases.expand(t.shape[0], -1, -1), 2, slot.unsqueeze(-1)).squeeze(-1)
