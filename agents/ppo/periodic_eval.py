"""Periodic evaluation during training: the current policy on held-out demand, vs baselines.

The demands are samples ``0 .. seeds-1`` of the scenario's ``eval`` split (the ones
evaluate.py uses; training draws the ``train`` split, so it never sees them). The baselines run
once, in one batched simulation; each evaluation of the policy runs all seeds in one batch
(deterministic actions, `agents.ppo.PolicyController`) for ``steps`` simulated seconds. Both
run through evaluate.py's runner (`envs.evaluation.runner.EvaluationBatch`).
Reductions are evaluate.py's: per seed, 100 x (baseline - policy) / baseline of the mean travel
time, then averaged over seeds.
"""

from __future__ import annotations

from agents.classical import CONTROLLERS
from envs.engine.simulator import Controller
from envs.engine.state import EngineParams
from envs.evaluation.report import PRIMARY
from envs.evaluation.runner import EvaluationBatch, Metrics, check_departures
from envs.evaluation.stats import reduction_percent
from envs.scenario import Scenario
from envs.scenario.splits import DemandSpec, check_scale, sample_trips


class Evaluator:
    def __init__(self, scenario: Scenario, spec: DemandSpec, seeds: int, steps: int,
                 params: EngineParams, compile: bool = False) -> None:
        self.scenario = scenario
        self.seeds = seeds
        self.steps = steps
        self.params = params
        self.compile = compile
        self.spec = spec
        check_scale(scenario, spec, samples=seeds)  # held side by side: the memory bound counts every seed
        self.samples = [sample_trips(scenario, spec, "eval", s) for s in range(seeds)]
        check_departures(self.samples, steps)  # before any training: NaN evaluations otherwise
        self._policy_batch: EvaluationBatch | None = None  # built on first use, reused (its slot pool grows once)
        self.baselines: dict[str, Metrics] = {}  # name -> metric -> [seeds]

    def run_baselines(self, names: list[str], params: dict[str, dict]) -> dict[str, Metrics]:
        """Every baseline on every eval seed, in one batched run: copy ``c * seeds + s``."""
        if not names:
            return {}
        controllers = [CONTROLLERS[name](**dict(params.get(name, {}))) for name in names]
        batch = EvaluationBatch(self.scenario, len(names), [self.samples], self.params, compile=self.compile,
                                design=self.spec)
        everything = batch.run(controllers, self.steps)
        for c, name in enumerate(names):
            self.baselines[name] = batch.per_controller(everything, c)
        return self.baselines

    def evaluate(self, controller: Controller) -> Metrics:
        """`controller` on every eval seed (one copy per seed)."""
        if self._policy_batch is None:
            self._policy_batch = EvaluationBatch(self.scenario, 1, [self.samples], self.params, compile=self.compile)
        return self._policy_batch.run([controller], self.steps)

    def reductions(self, metrics: Metrics) -> dict[str, float]:
        """Mean over seeds of the paired travel-time reduction (%) vs each baseline."""
        return {
            name: float(reduction_percent(base[PRIMARY], metrics[PRIMARY]).mean())
            for name, base in self.baselines.items()
        }


__all__ = ["Evaluator", "PRIMARY"]
