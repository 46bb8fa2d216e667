"""Controllers x demand seeds (x conditions) in one batched simulation, measured per copy.

Both evaluate.py and training's periodic evaluation run their controllers this way. Copy
``(k * C + c) * S + s`` is controller c (of C) on demand seed s (of S) under condition k (the
clean demands first; evaluate.py adds a perturbed condition). Every controller sees the same
demands, so results are paired by seed. The controllers are passed to `run`, so one batch (and
its simulator, whose vehicle-slot pool grows once) serves many evaluations of new controllers.
A controller with a ``probe_samples`` attribute (a policy that observes probe vehicles) is told
each copy's eval seed, which keys the copy's probe vehicles (`agents.ppo.policy`); one with a
``design_demand`` attribute (a plan designed from the demand: `fixed_time_webster`) gets
`envs.scenario.splits.design_samples` of the evaluated demand's spec, train-split demand drawn
like the evaluated one: the plan never sees the evaluated samples, nor a surge of the perturbed
condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from envs.engine.simulator import Controller, Simulator
from envs.engine.state import EngineParams
from envs.errors import ConfigError
from envs.evaluation.metrics import METRIC_NAMES, episode_metrics
from envs.evaluation.mixture import ControllerMix
from envs.incidents.perturbations import Incident, Perturbation, sample_incidents, surge_trips, with_incidents
from envs.scenario import Scenario
from envs.scenario.demand import Trips
from envs.scenario.splits import DemandSpec, check_scale, design_demand, sample_trips

Metrics = dict[str, np.ndarray]  # metric name -> float64 values, one per copy (or per seed)


@dataclass(frozen=True)
class EvalDemands:
    """``trips[k][s]``: demand seed s under condition ``conditions[k]`` (``clean`` first)."""

    conditions: list[str]
    trips: list[list[Trips]]
    incidents: list[list[list[Incident]]] | None  # [condition][seed]; None without a perturbation


def eval_demands(scenario: Scenario, spec: DemandSpec, seeds: int, perturbation: Perturbation) -> EvalDemands:
    """Samples ``0 .. seeds-1`` of the eval split (training never draws them); under a
    perturbation each seed also runs perturbed, with the same incidents and surge for every
    controller on that seed."""
    check_scale(scenario, spec, samples=seeds)  # evaluated side by side: the memory bound counts every seed
    samples = [sample_trips(scenario, spec, "eval", s) for s in range(seeds)]
    if perturbation.is_clean:
        return EvalDemands(["clean"], [samples], None)
    perturbed = [surge_trips(samples[s], perturbation, "eval", s) for s in range(seeds)]
    incidents = [sample_incidents(perturbation, scenario.network, "eval", s, trips=perturbed[s])
                 for s in range(seeds)]
    name = perturbation.name if perturbation.name != "clean" else "perturbed"
    return EvalDemands(["clean", name], [samples, perturbed], [[[]] * seeds, incidents])


def check_departures(samples: Sequence[Trips], steps: int, field: str = "eval.steps", value=None,
                     remedy: str | None = None) -> None:
    """ConfigError naming `field` (= `value`, by default `steps`) when a seed's demand departs no
    trip in the `steps` evaluated: its metrics would be NaN (no travel time at all), found only
    after the whole run. `remedy`: what to change (by default: raise `field`)."""
    for seed, trips in enumerate(samples):
        if not (trips.depart < steps).any():
            first = f" (its first at {int(trips.depart.min())} s)" if trips.num_trips else ""
            raise ConfigError("<config>", field, steps if value is None else value,
                              f"no trip of evaluation demand seed {seed} departs within the {steps} s evaluated"
                              f"{first}: no travel time to report; {remedy or f'raise {field}'}")


class EvaluationBatch:
    """`controllers` controller slots x ``len(trips)`` conditions x ``len(trips[0])`` seeds.

    ``trips[k][s]``: the demand of seed s under condition k; ``incidents[k][s]`` (optional) its
    incidents."""

    def __init__(self, scenario: Scenario, controllers: int, trips: Sequence[Sequence[Trips]],
                 params: EngineParams, *, incidents: Sequence[Sequence[list[Incident]]] | None = None,
                 compile: bool = False, design: DemandSpec | None = None) -> None:
        # `design`: the evaluated demand's spec, whose splits.design_samples a demand-designed plan
        # reads (built when a controller asks); None: such a plan reads the evaluated demand
        self.scenario, self.design, self._design_demand = scenario, design, None
        self.num_controllers = controllers
        self.conditions = len(trips)
        self.seeds = len(trips[0])
        demand = scenario.demand(trips=[t for condition in trips for _ in range(controllers) for t in condition])
        if incidents is not None and any(any(per_seed) for per_seed in incidents):
            demand = with_incidents(
                demand, [i for condition in incidents for _ in range(controllers) for i in condition])
        self.sim = Simulator(scenario.network, demand, params, compile=compile)
        copy = torch.arange(self.copies)
        self.owner = (copy // self.seeds) % controllers  # [copies] controller index
        self.condition = copy // (controllers * self.seeds)  # [copies] condition index
        self.seed = copy % self.seeds  # [copies] demand seed

    def plan_demand(self):
        """The `Demand` a demand-designed plan reads (None without a design spec), built once."""
        if self.design is not None and self._design_demand is None:
            self._design_demand = design_demand(self.scenario, self.design)
        return self._design_demand

    @property
    def copies(self) -> int:
        return self.sim.batch_size

    def run(self, controllers: Sequence[Controller], steps: int,
            on_step: Callable[[int, Simulator], None] | None = None) -> Metrics:
        """Reset, run every controller on its copies for `steps` simulated seconds, and return
        every metric of the hub per copy. ``on_step(k, sim)`` is called after step k."""
        if len(controllers) != self.num_controllers:
            raise ValueError(f"the batch has {self.num_controllers} controller slots, got {len(controllers)}")
        sim = self.sim
        sim.reset()
        for controller in controllers:  # probe-reading policies key each copy's probes by its eval seed
            if hasattr(controller, "probe_samples"):
                controller.probe_samples = [("eval", int(s)) for s in self.seed]
            if hasattr(controller, "design_demand"):  # a plan from the demand: from train-split samples
                controller.design_demand = self.plan_demand()
        mix = ControllerMix(list(controllers), self.owner)
        mix.reset(sim)
        for k in range(steps):
            sim.step(mix.act(sim))
            if on_step is not None:
                on_step(k, sim)
        metrics = episode_metrics(sim.demand, sim.state)
        return {name: metrics[name].detach().cpu().numpy().astype(np.float64) for name in METRIC_NAMES}

    def mine(self, controller: int, condition: int = 0) -> np.ndarray:
        """Bool ``[copies]``: the copies of `controller` under `condition` (seed order)."""
        return ((self.owner == controller) & (self.condition == condition)).numpy()

    def per_controller(self, metrics: Metrics, controller: int, condition: int = 0) -> Metrics:
        """`controller`'s values ``[seeds]`` under `condition`."""
        rows = self.mine(controller, condition)
        return {name: values[rows] for name, values in metrics.items()}

    def rows(self, metrics: Metrics, names: Sequence[str], conditions: Sequence[str], scenario: str) -> list[dict]:
        """One row per copy: scenario, controller, seed, condition and every metric."""
        return [
            {"scenario": scenario, "controller": names[int(self.owner[b])], "seed": int(self.seed[b]),
             "condition": conditions[int(self.condition[b])], **{m: float(metrics[m][b]) for m in METRIC_NAMES}}
            for b in range(self.copies)
        ]
