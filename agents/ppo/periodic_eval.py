"""Periodic evaluation during training: the current policy on held-out demand, vs baselines.

The demands are samples ``0 .. seeds-1`` of the scenario's ``eval`` split (the ones
evaluate.py uses; training draws the ``train`` split, so it never sees them). The baselines run
once, in one batched simulation; each evaluation of the policy runs all seeds in one batch
(deterministic actions, `agents.ppo.PolicyController`) for ``steps`` simulated seconds.
Reductions are evaluate.py's: per seed, 100 x (baseline - policy) / baseline of the mean travel
time, then averaged over seeds.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.classical import CONTROLLERS
from envs.evaluation.mixture import ControllerMix
from envs.engine.simulator import Controller, Simulator
from envs.engine.state import EngineParams
from envs.evaluation.metrics import METRIC_NAMES, episode_metrics
from envs.evaluation.report import PRIMARY
from envs.scenario import Scenario
from envs.scenario.splits import DemandSpec, sample_trips
from envs.evaluation.stats import reduction_percent


Metrics = dict[str, np.ndarray]  # metric name -> [seeds]


class Evaluator:
    def __init__(self, scenario: Scenario, spec: DemandSpec, seeds: int, steps: int,
                 params: EngineParams, compile: bool = False) -> None:
        self.scenario = scenario
        self.seeds = seeds
        self.steps = steps
        self.params = params
        self.compile = compile
        self.samples = [sample_trips(scenario, spec, "eval", s) for s in range(seeds)]
        self.demand = scenario.demand(trips=self.samples)
        self._sim: Simulator | None = None  # built on first use, reused (its slot pool grows once)
        self.baselines: dict[str, Metrics] = {}

    def _run(self, sim: Simulator, controller: Controller) -> dict[str, np.ndarray]:
        sim.reset()
        controller.reset(sim)
        for _ in range(self.steps):
            sim.step(controller.act(sim))
        metrics = episode_metrics(sim.demand, sim.state, self.params)
        return {name: metrics[name].detach().cpu().numpy().astype(np.float64) for name in METRIC_NAMES}

    def run_baselines(self, names: list[str], params: dict[str, dict]) -> dict[str, Metrics]:
        """Every baseline on every eval seed, in one batched run: copy ``c * seeds + s``."""
        if not names:
            return {}
        controllers = [CONTROLLERS[name](**dict(params.get(name, {}))) for name in names]
        demand = self.scenario.demand(trips=self.samples * len(names))
        sim = Simulator(self.scenario.network, demand, self.params, compile=self.compile)
        owner = torch.arange(len(names) * self.seeds) // self.seeds
        everything = self._run(sim, ControllerMix(controllers, owner))
        for c, name in enumerate(names):
            rows = slice(c * self.seeds, (c + 1) * self.seeds)
            self.baselines[name] = {metric: values[rows] for metric, values in everything.items()}
        return self.baselines

    def evaluate(self, controller: Controller) -> Metrics:
        """`controller` on every eval seed (one copy per seed)."""
        if self._sim is None:
            self._sim = Simulator(self.scenario.network, self.demand, self.params, compile=self.compile)
        return self._run(self._sim, controller)

    def reductions(self, metrics: Metrics) -> dict[str, float]:
        """Mean over seeds of the paired travel-time reduction (%) vs each baseline."""
        return {
            name: float(reduction_percent(base[PRIMARY], metrics[PRIMARY]).mean())
            for name, base in self.baselines.items()
        }


__all__ = ["Evaluator", "PRIMARY"]
