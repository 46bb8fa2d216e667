"""Parameter search for SOTL and max pressure on the TRAINING split of demand only.

A trial is one parameter setting of a controller class; its score is the mean travel time
(`envs.evaluation.metrics`, ``travel_time/mean``) over ``seeds`` demand samples of the ``train``
split (`envs.scenario.splits`: train sample k has seed 2k, evaluation sample k seed 2k + 1, so
the search never sees a demand that evaluate.py reports on). Episodes are short (``steps``
simulated seconds, the flow cut there). Trials run several at a time in one batched simulation
(`envs.evaluation.runner.EvaluationBatch`: every trial of a batch sees the same demands).

The search over the grid in `SEARCH_SPACES`: trial 0 is the class's defaults, then a random
sample of ``random_trials - 1`` other grid points (without repeats); then, while the budget of
``trials`` lasts and the best improves, every untried neighbour of the best (one parameter moved
to the next value of its grid) — a coordinate search from the best random point. Every demand sample
the search draws is recorded in `TuningResult.samples` as ``(split, index)``, so a caller (and
tests/test_tuning.py) can check that no evaluation sample was touched.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from envs.errors import ConfigError
from envs.evaluation.runner import EvaluationBatch
from envs.scenario import Scenario, given_by_path
from envs.scenario.splits import MAX_INDEX, DemandSpec, sample_trips

SOURCE = "<tune>"
PRIMARY = "travel_time/mean"
TUNING_SPLIT = "train"  # the only split the search draws from

# The grids searched per controller config name (the fields of its dataclass). Values around the
# defaults, in the ranges the literature uses (Cools et al. 2008 for SOTL: theta tens of
# vehicle-seconds, 50-100 m detectors; max pressure: minimum green 5-30 s).
SEARCH_SPACES: dict[str, dict[str, list]] = {
    "sotl": {
        "theta": [10.0, 20.0, 30.0, 40.0, 60.0, 80.0, 120.0],
        "distance_m": [40.0, 60.0, 80.0, 100.0, 150.0],
        "omega_m": [0.0, 15.0, 25.0, 40.0],
        "mu": [1, 3, 5],
        "min_green_s": [5.0, 10.0, 15.0, 20.0],
    },
    "max_pressure": {
        "min_green_s": [5, 8, 10, 12, 15, 20, 25, 30],
        "use_halting": [False, True],
        "tie_break_by_inflow": [True],
    },
}


@dataclass(frozen=True)
class TuningSettings:
    trials: int = 40  # parameter settings tried in all, the defaults included
    random_trials: int = 16  # of which the first ones: defaults + a random sample of the grid
    seeds: int = 2  # training demand samples every trial runs on
    steps: int = 1800  # simulated seconds per episode
    batch_trials: int = 8  # trials per batched simulation (cost grows with trials x copies)
    search_seed: int = 0  # the random sample of the grid
    first_sample: int = 0  # train-split sample indices first_sample .. first_sample + seeds - 1
    demand: DemandSpec = field(default_factory=lambda: DemandSpec(mode="poisson"))

    def validate(self) -> None:
        for name in ("trials", "random_trials", "seeds", "steps", "batch_trials"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(SOURCE, name, value, "must be an integer >= 1")
        for name in ("search_seed", "first_sample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(SOURCE, name, value, "must be an integer >= 0")
        if self.first_sample + self.seeds - 1 > MAX_INDEX:  # was found at the draw, named 'index'
            raise ConfigError(SOURCE, "first_sample", self.first_sample,
                              f"the samples first_sample .. first_sample + seeds - 1 must end by {MAX_INDEX}")
        if self.demand.mode == "original":  # every split and index replays the flow file evaluate.py reports on
            raise ConfigError(SOURCE, "demand_mode", self.demand.mode, "replays the scenario's own trips, which "
                              "evaluation reports on: tuning on it is not training demand; use poisson or jitter")


@dataclass
class TuningResult:
    controller: str
    scenario: str
    best: dict  # the best trial's parameters (every searched field)
    best_score: float
    default_score: float
    trials: list[dict]  # {"params", "score", "per_seed"} in the order run
    samples: list[tuple[str, int]]  # every (split, index) of demand drawn
    wall_s: float
    engine: dict = field(default_factory=dict)  # the engine settings every trial ran under (EngineParams' fields)
    scenario_seed: int | None = None  # a generated preset's demand seed; None: the scenario has its own files


def candidate_params(controller: str, cls, settings: TuningSettings) -> list[dict]:
    """The trials' parameters: the class's defaults first, then distinct grid points."""
    if controller not in SEARCH_SPACES:
        raise ConfigError(SOURCE, "controller", controller, f"no search space; known: {sorted(SEARCH_SPACES)}")
    space = SEARCH_SPACES[controller]
    check_space(controller, cls, space)
    defaults = {f.name: f.default for f in fields(cls) if f.name in space}
    grid = [dict(zip(space, values)) for values in itertools.product(*space.values())]
    grid = [p for p in grid if p != defaults]
    rng = np.random.default_rng(settings.search_seed)
    take = min(min(settings.random_trials, settings.trials) - 1, len(grid))
    picked = rng.choice(len(grid), size=take, replace=False) if take else []
    return [defaults] + [grid[int(k)] for k in picked]


def check_space(controller: str, cls, space: dict[str, list]) -> None:
    """Each key of `space` a parameter of `cls` with a non-empty grid of values it accepts, before any
    trial runs: a misspelt key was a TypeError traceback at the first batch, a value the class refuses
    an error minutes into the search, and an empty grid emptied the whole product (defaults only)."""
    # its parameters, as agents.ppo.schema.parameters reads them (a layer above this one)
    known = [f.name for f in fields(cls) if f.init and f.compare]
    for key, values in space.items():
        where = f"SEARCH_SPACES.{controller}.{key}"
        if key not in known:
            raise ConfigError(SOURCE, where, values, f"not a parameter of {controller}; its parameters: {known}")
        if not values:
            raise ConfigError(SOURCE, where, values, "an empty grid leaves no point to search")
        for value in values:
            try:
                cls(**{key: value})
            except ConfigError as error:
                raise ConfigError(SOURCE, where, value, error.reason) from None


def neighbours(space: dict[str, list], point: dict) -> list[dict]:
    """Grid points one step from `point` along one parameter (its grid's adjacent values)."""
    out = []
    for key, values in space.items():
        if point[key] not in values:
            continue
        k = values.index(point[key])
        out += [{**point, key: values[j]} for j in (k - 1, k + 1) if 0 <= j < len(values)]
    return out


def tune(controller: str, cls, scenario: Scenario, settings: TuningSettings, params,
         progress: Callable[[dict], None] | None = None) -> TuningResult:
    """Run the search for controller class `cls` (config name `controller`) on `scenario`."""
    settings.validate()
    started = time.perf_counter()
    candidates = candidate_params(controller, cls, settings)
    samples: list[tuple[str, int]] = []
    trips = []
    for k in range(settings.first_sample, settings.first_sample + settings.seeds):
        samples.append((TUNING_SPLIT, k))
        trips.append(sample_trips(scenario, settings.demand, TUNING_SPLIT, k))
    trials: list[dict] = []

    def run(candidates: list[dict], stage: str) -> None:
        for start in range(0, len(candidates), settings.batch_trials):
            chunk = candidates[start:start + settings.batch_trials]
            batch = EvaluationBatch(scenario, len(chunk), [trips], params)
            metrics = batch.run([cls(**p) for p in chunk], settings.steps)
            for c, p in enumerate(chunk):
                per_seed = batch.per_controller(metrics, c)[PRIMARY]
                entry = {"trial": len(trials), "stage": stage, "params": p, "score": float(per_seed.mean()),
                         "per_seed": [float(v) for v in per_seed]}
                trials.append(entry)
                if progress is not None:
                    progress({**entry, "elapsed_s": round(time.perf_counter() - started, 1)})

    run(candidates, "random")
    best = min(trials, key=lambda t: t["score"])
    while len(trials) < settings.trials:
        tried = [t["params"] for t in trials]
        around = [p for p in neighbours(SEARCH_SPACES[controller], best["params"]) if p not in tried]
        if not around:
            break
        run(around[:settings.trials - len(trials)], "refine")
        new_best = min(trials, key=lambda t: t["score"])
        if new_best is best:
            break
        best = new_best
    return TuningResult(controller, scenario.name, best["params"], best["score"], trials[0]["score"],
                        trials, samples, time.perf_counter() - started, engine=asdict(params),
                        scenario_seed=None if scenario.info.get("seed") is None else int(scenario.info["seed"]))


def tuned_config_text(result: TuningResult, settings: TuningSettings, command: str, out: Path | None = None) -> str:
    """The YAML of a ``controller`` group option: the class's structured config with the best
    parameters over it (``controller@controller_params.NAME=NAME_tuned_SCENARIO``; a scenario given by path
    is ``scenario.name=`` its absolute path, and its presets are named by `scenario_key`). `out`: where it is
    written; elsewhere than the preset's place, the use line says to copy it there first (that option
    loaded the file in configs/controller, a committed preset, not this one)."""
    from agents.classical.tuned_presets import preset_path, record_line, shown_path
    from envs.engine.state import EngineParams

    by_path = given_by_path(result.scenario)
    recorded = str(Path(result.scenario).expanduser().resolve()) if by_path else result.scenario
    scenario = f"scenario.name={recorded}" if by_path else f"scenario={recorded}"
    scenario += f" scenario.seed={result.scenario_seed}" if result.scenario_seed else ""  # 0: the default
    place = preset_path(result.controller, result.scenario)
    copy = (f"copy this file to {shown_path(place)}, then: "
            if out is not None and Path(out).resolve() != place.resolve() else "")
    defaults = asdict(EngineParams())  # the use line gives the engine settings it was tuned under that are not these
    engine = "".join(f" engine.{key}={_yaml_value(value)}" for key, value in result.engine.items()
                     if value != defaults.get(key))
    lines = [
        f"# {result.controller} tuned on {result.scenario}, TRAINING demand only "
        f"({settings.seeds} train-split sample(s) from index {settings.first_sample}, "
        f"{settings.demand.mode}, {settings.steps} s episodes, {len(result.trials)} trials).",
        f"# Written by: {command}",
        record_line(recorded, result.scenario_seed, result.engine),
        f"# Mean travel time on those samples: {result.best_score:.1f} s (defaults: {result.default_score:.1f} s).",
        f"# Use: {copy}python evaluate.py {scenario}{engine} controller@controller_params.{result.controller}="
        f"{place.stem}",
        "defaults:",
        f"  - {result.controller}",
        "  - _self_",
    ]
    for key, value in result.best.items():
        lines.append(f"{key}: {_yaml_value(value)}")
    return "\n".join(lines) + "\n"


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)


__all__ = ["SEARCH_SPACES", "TuningResult", "TuningSettings", "candidate_params", "check_space", "neighbours",
           "tune", "tuned_config_text"]
