"""Perturbations for robustness work: incidents in the engine and demand surges.

A `Perturbation` composes (from Hydra's ``configs/perturbation/``, or in code):

- ``incidents`` (`IncidentSpec`): per copy, ``count`` lane incidents on chosen lanes (CityFlow
  lane ids) or on random lanes that end at a signalised intersection, each starting at a time
  drawn from ``start_s`` (a number or a ``[low, high]`` range), lasting ``duration_s``, with
  ``capacity`` 0 (a closure: nothing leaves the lane, upstream lane choice avoids it where the
  route allows) or in (0, 1) (a capacity drop: the lane's speed limit scaled). The engine applies
  them (`envs.engine.step`); every copy draws its own.
- ``surge`` (`SurgeSpec`): demand multiplied by ``scale`` for trips departing in
  ``[start_s, end_s)``: each such trip is kept ``floor(scale) + Bernoulli(scale - floor(scale))``
  times (binomial thinning below 1), replicas departing at the same step.

Seeds: copy ``index`` of split ``split`` draws from ``SeedSequence(seed, spawn_key=(split seed
of index, stream))`` — evaluation and training perturbations never share a draw, as demand
samples do not (`envs.scenario.splits.split_seed`).

Every field is checked when the spec is built: a closure on an unknown lane, a negative
duration, a capacity outside [0, 1) or a probability outside [0, 1] is a `ScenarioError` naming
the field and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from envs.errors import ScenarioError
from envs.scenario.demand import Demand, Trips
from envs.scenario.network import Network, lane_ids
from envs.scenario.splits import split_seed

SOURCE = "<perturbation>"
_STREAM = {"incidents": 1, "surge": 2}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _window(value: Any, name: str) -> tuple[float, float]:
    """A time as a number or a ``[low, high]`` range, checked."""
    if _number(value):
        low = high = float(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value):
        low, high = float(value[0]), float(value[1])
    else:
        raise ScenarioError(SOURCE, name, value, "expected seconds, or a [low, high] range of seconds")
    if low < 0 or high < low:
        raise ScenarioError(SOURCE, name, value, "need 0 <= low <= high (seconds)")
    return low, high


@dataclass(frozen=True)
class IncidentSpec:
    count: int = 1  # incidents per copy
    lanes: tuple[str, ...] | None = None  # CityFlow lane ids to draw from; None = random lanes
    start_s: Any = (600.0, 2400.0)  # seconds: a number or a [low, high] range
    duration_s: float = 900.0
    capacity: float = 0.0  # 0 = closed; in (0, 1) = speed limit scaled by it

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ScenarioError(SOURCE, "incidents.count", self.count, "must be an integer >= 0")
        _window(self.start_s, "incidents.start_s")
        if not _number(self.duration_s) or self.duration_s <= 0:
            raise ScenarioError(SOURCE, "incidents.duration_s", self.duration_s, "must be a number of seconds > 0")
        if not _number(self.capacity) or not 0.0 <= self.capacity < 1.0:
            raise ScenarioError(SOURCE, "incidents.capacity", self.capacity,
                                "must be in [0, 1): 0 closes the lane, a fraction scales its speed limit")
        if self.lanes is not None:
            lanes = tuple(self.lanes)
            if not lanes or not all(isinstance(x, str) for x in lanes):
                raise ScenarioError(SOURCE, "incidents.lanes", self.lanes, "expected a non-empty list of lane ids")
            object.__setattr__(self, "lanes", lanes)

    def lane_pool(self, network: Network) -> np.ndarray:
        """Global lane ids the incidents are drawn from (checked against the network)."""
        names = lane_ids(network)
        if self.lanes is None:
            ends = network.road_end[network.lane_road].cpu().numpy()
            pool = np.flatnonzero(ends >= 0)  # lanes that end at a signal
            if pool.size == 0:
                raise ScenarioError(SOURCE, "incidents.lanes", None, f"{network.source} has no lane ending at a signal")
            return pool
        index = {name: lane for lane, name in enumerate(names)}
        unknown = [x for x in self.lanes if x not in index]
        if unknown:
            raise ScenarioError(SOURCE, "incidents.lanes", unknown[0],
                                f"no such lane in {network.source} (lane ids are <road id>_<lane index>, "
                                f"e.g. {names[0]})")
        return np.array([index[x] for x in self.lanes], dtype=np.int64)


@dataclass(frozen=True)
class SurgeSpec:
    scale: float = 1.5  # demand multiplier inside the window
    start_s: float = 900.0
    end_s: float = 1800.0

    def __post_init__(self) -> None:
        if not _number(self.scale) or self.scale < 0:
            raise ScenarioError(SOURCE, "surge.scale", self.scale, "must be a number >= 0")
        _window([self.start_s, self.end_s], "surge.[start_s, end_s]")


@dataclass(frozen=True)
class Perturbation:
    name: str = "clean"
    seed: int = 0
    incidents: IncidentSpec | None = None
    surge: SurgeSpec | None = None

    @property
    def is_clean(self) -> bool:
        return (self.incidents is None or self.incidents.count == 0) and self.surge is None


def perturbation_from_config(config: dict | None, source: str = SOURCE) -> Perturbation:
    """A `Perturbation` from a plain mapping (Hydra's ``perturbation`` group); unknown keys and
    bad values are errors naming the field."""
    if not config:
        return Perturbation()
    config = dict(config)
    known = {"name", "seed", "incidents", "surge"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ScenarioError(source, f"perturbation.{unknown[0]}", config[unknown[0]], f"unknown key; known: {sorted(known)}")

    def part(key: str, cls):
        value = config.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ScenarioError(source, f"perturbation.{key}", value, "expected a mapping or null")
        fields = set(cls.__dataclass_fields__)
        bad = sorted(set(value) - fields)
        if bad:
            raise ScenarioError(source, f"perturbation.{key}.{bad[0]}", value[bad[0]], f"unknown key; known: {sorted(fields)}")
        return cls(**value)

    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ScenarioError(source, "perturbation.seed", seed, "must be an integer >= 0")
    return Perturbation(name=str(config.get("name", "perturbed")), seed=seed,
                        incidents=part("incidents", IncidentSpec), surge=part("surge", SurgeSpec))


def _rng(perturbation: Perturbation, split: str, index: int, stream: str) -> np.random.Generator:
    sequence = np.random.SeedSequence(perturbation.seed, spawn_key=(split_seed(split, index), _STREAM[stream]))
    return np.random.default_rng(sequence)


@dataclass(frozen=True)
class Incident:
    lane: int  # global lane id
    start: int  # step
    end: int  # step (exclusive)
    factor: float


def sample_incidents(perturbation: Perturbation, network: Network, split: str, index: int) -> list[Incident]:
    """The incidents of copy `index` of `split` (distinct lanes while the pool allows)."""
    spec = perturbation.incidents
    if spec is None or spec.count == 0:
        return []
    rng = _rng(perturbation, split, index, "incidents")
    pool = spec.lane_pool(network)
    lanes = rng.choice(pool, size=spec.count, replace=spec.count > pool.size)
    low, high = _window(spec.start_s, "incidents.start_s")
    starts = rng.integers(int(low), int(high) + 1, size=spec.count)
    return [Incident(int(lane), int(t), int(t + round(spec.duration_s)), float(spec.capacity))
            for lane, t in zip(lanes, starts)]


def with_incidents(demand: Demand, per_copy: list[list[Incident]]) -> Demand:
    """`demand` with the given incidents of each copy (its incident tables replaced)."""
    if len(per_copy) != demand.batch_size:
        raise ScenarioError(SOURCE, "incidents", len(per_copy), f"need one list per copy ({demand.batch_size})")
    width = max((len(x) for x in per_copy), default=0)
    if width == 0:
        return replace(demand, incident_lane=None, incident_start=None, incident_end=None, incident_factor=None)
    device = demand.depart.device
    lane = torch.full((demand.batch_size, width), -1, dtype=torch.int64)
    start = torch.zeros((demand.batch_size, width), dtype=torch.int64)
    end = torch.zeros((demand.batch_size, width), dtype=torch.int64)
    factor = torch.ones((demand.batch_size, width), dtype=torch.float32)
    for b, incidents in enumerate(per_copy):
        for k, incident in enumerate(incidents):
            lane[b, k], start[b, k], end[b, k], factor[b, k] = incident.lane, incident.start, incident.end, incident.factor
    return replace(demand, incident_lane=lane.to(device), incident_start=start.to(device),
                   incident_end=end.to(device), incident_factor=factor.to(device))


def surge_trips(trips: Trips, perturbation: Perturbation, split: str, index: int) -> Trips:
    """`trips` with the surge applied (see the module doc); unchanged without a surge."""
    spec = perturbation.surge
    if spec is None:
        return trips
    rng = _rng(perturbation, split, index, "surge")
    inside = (trips.depart >= spec.start_s) & (trips.depart < spec.end_s)
    whole = math.floor(spec.scale)
    copies = np.where(inside, whole + (rng.random(trips.num_trips) < spec.scale - whole), 1)
    rows = np.repeat(np.arange(trips.num_trips), copies)
    order = np.lexsort((trips.flow_index[rows], trips.depart[rows]))  # (departure, flow) as sampled
    rows = rows[order]
    return Trips(f"{trips.source}+surge", trips.depart[rows], trips.routes[rows], trips.vehicle[rows],
                 trips.flow_index[rows])


__all__ = [
    "Incident", "IncidentSpec", "Perturbation", "SurgeSpec", "lane_ids", "perturbation_from_config",
    "sample_incidents", "surge_trips", "with_incidents",
]
