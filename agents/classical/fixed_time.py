"""Fixed-time control: the roadnet's own plan as written, or a uniform split of a given cycle.

``plan="roadnet"`` commands each intersection's ``lightphases`` in order with their written
durations (CityFlow's own behaviour when it runs the plan). The engine's intergreen (yellow +
all-red) is inserted inside the commanded phase's time, so the cycle length is the written
one. A transition phase (one serving only right turns that signal phases serve too, such as
CityFlow's 5 s phase 0) is commanded as written where the engine can show it for its written time. Where it cannot (its
written time is shorter than the engine's intergreen plus minimum green, which also holds a
phase that shows no new green), the next signal phase is commanded for the transition's time and
its own instead, so the engine's intergreen runs where the transition was written and the next
green starts when the plan has it (when the intergreen is as long as the transition, as on the
CityFlow datasets: 5 s each) or when the intergreen ends (when it is longer). Commanding the
transition there would start the next green ``min_green_s`` late. Only where the lights shown are
the plan's: every green of the transition is green in the next signal phase, and every movement
green in both the previous and the next signal phase is green in the transition; elsewhere, and
at the start of a run while the engine still shows the transition, it is commanded as written.
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
            _check_uniform_shares(self.cycle_s, int(count.max()), sim.params)
            durations = torch.where(valid, self.cycle_s / count, 0.0)
            phases = torch.arange(durations.shape[1], device=net.device).expand_as(durations)
        # order the used phases first so the cycle is a prefix of each row
        order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
        self._phases = phases.gather(1, order)
        params = sim.params
        self._commanded = folded_transitions(net.phase_green, net.signal_phase, self._phases,
                                             durations.gather(1, order), valid.gather(1, order),
                                             params.yellow_s + params.all_red_s, params.min_green_s)
        self._ends = torch.cumsum(torch.where(valid, durations, 0.0).gather(1, order), 1)  # [I, P]
        self._cycle = self._ends[:, -1].clamp(min=1e-9)  # [I]

    def act(self, sim: Simulator) -> torch.Tensor:
        if not hasattr(self, "_cycle"):  # an AttributeError before
            raise CommandError("<controller>", "act", "FixedTime", "call reset(sim) before act(sim)")
        t = sim.state.t.to(torch.float32).unsqueeze(1) + self.offset_s  # [B, 1]
        in_cycle = torch.remainder(t, self._cycle.unsqueeze(0))  # [B, I]
        slot = (in_cycle.unsqueeze(-1) >= self._ends.unsqueeze(0)).sum(-1)  # [B, I]
        slot = slot.clamp(max=self._phases.shape[1] - 1).unsqueeze(-1)
        written = torch.gather(self._phases.expand(t.shape[0], -1, -1), 2, slot).squeeze(-1)
        commanded = torch.gather(self._commanded.expand(t.shape[0], -1, -1), 2, slot).squeeze(-1)
        # at the start of a run every intersection shows phase 0 (a transition on the datasets): it
        # keeps it for its written time, as the plan does, instead of leaving it at once
        return torch.where(sim.state.phase == written, written, commanded)


def _check_uniform_shares(cycle_s: float, phases: int, params) -> None:
    """A uniform share shorter than what the engine holds every phase (intergreen + minimum green)
    would be cut short: the switches it refuses push the cycle past later phases, which then never
    show green. Refused, naming cycle_s and the least that fits."""
    least = params.yellow_s + params.all_red_s + params.min_green_s
    if cycle_s / phases < least:
        raise ConfigError(SOURCE, "cycle_s", cycle_s, f"gives each of {phases} phases {cycle_s / phases:g} s; the "
                          f"engine holds a phase at least {least} s (engine.yellow_s + all_red_s + min_green_s): "
                          f"use cycle_s >= {least * phases}")


def folded_transitions(phase_green: torch.Tensor, signal_phase: torch.Tensor, phases: torch.Tensor,
                       durations: torch.Tensor, used: torch.Tensor, intergreen_s: float,
                       min_green_s: float) -> torch.Tensor:
    """The phase to command in each slot of the cycle ``phases [I, P]`` (written ``durations``, the
    `used` slots first): the slot's own phase, except a transition phase that the engine would hold
    past its written time, which folds into the next signal phase where that shows the same lights
    (module doc). ``phase_green [I, P, K]`` and ``signal_phase [I, P]`` are indexed by phase."""
    commanded = phases.clone()
    green, signal, cycle, written, in_use = (x.cpu().numpy() for x in (phase_green, signal_phase, phases,
                                                                       durations, used))
    for inter in range(cycle.shape[0]):
        row = [(int(p), float(d)) for p, d, u in zip(cycle[inter], written[inter], in_use[inter]) if u]
        signals = [k for k, (p, _) in enumerate(row) if signal[inter, p]]
        for k, (phase, duration) in enumerate(row):
            if signal[inter, phase] or not signals:
                continue
            following = row[min((j for j in signals if j > k), default=signals[0])][0]
            preceding = row[max((j for j in signals if j < k), default=signals[-1])][0]
            kept = green[inter, phase]
            cut = green[inter, preceding] & ~kept
            held_longer = duration < intergreen_s * bool(cut.any()) + min_green_s
            if held_longer and not (kept & ~green[inter, following]).any() and not (
                    cut & green[inter, following]).any():
                commanded[inter, k] = following
    return commanded
