"""Perturbations for robustness work: incidents in the engine and demand surges.

A `Perturbation` composes (from Hydra's ``configs/perturbation/``, or in code):

- ``incidents`` (`IncidentSpec`): per copy, ``count`` lane incidents on chosen lanes (CityFlow
  lane ids) or on random lanes that end at a signalised intersection, each starting at a time
  drawn from ``start_s`` (a number or a ``[low, high]`` range), lasting ``duration_s``, with
  ``capacity`` 0 (a closure: nothing leaves the lane, upstream lane choice avoids it where the
  route allows) or in (0, 1) (a capacity drop: the lane's speed limit scaled). The engine applies
  them (`envs.engine.step`); every copy draws its own. ``placement`` says how random lanes are
  drawn: ``uniform`` (the default) — every lane of the pool alike; ``traffic`` — in proportion
  to the traffic the copy's demand sends through each lane (`lane_traffic`), since real crashes
  and breakdowns happen where vehicles are (exposure): a lane no trip uses is never drawn.
- ``surge`` (`SurgeSpec`): demand multiplied by a time-varying factor ``f(t)`` of the departure
  time: 1 outside ``[start_s, end_s)``; inside, it climbs linearly from 1 to ``scale`` over the
  first ``ramp_s`` seconds, holds ``scale``, and falls back to 1 over the last ``ramp_s`` seconds
  (a trapezoid; ``ramp_s`` 0 is a step, the whole window at ``scale``). Each trip is kept
  ``floor(f) + Bernoulli(f - floor(f))`` times (binomial thinning below 1), replicas departing at
  the same step.
- ``detectors`` (`DetectorFaultSpec`): faults of the lane detectors, which change what agents
  *observe* (the ``lane_count`` / ``lane_halting`` readings), never the traffic or the rewards:
  Gaussian noise (``noise_std`` vehicles; the reading is rounded and never negative, as a
  counter's), dropouts (each reading lost with ``dropout_p``), stuck detectors (each lane's with
  ``stuck_p`` per episode, frozen at its reading at ``stuck_at_s``) and dead intersections (all
  detectors of an intersection, with ``dead_p`` per episode). A lost or dead reading is 0 in RL
  observations and NaN (missing) for the deployment controller (`agents.deploy.simulated`).

Seeds: copy ``index`` of split ``split`` draws from ``SeedSequence(seed, spawn_key=(split seed
of index, stream))`` — evaluation and training perturbations never share a draw, as demand
samples do not (`envs.scenario.splits.split_seed`).

`lane_traffic(network, trips)`: a trip counts once on each road of its route; on every road but
its last it is shared evenly by the lanes that serve its movement onto the next road (the
engine's lane choice picks among exactly those lanes, by room, so in expectation they share
it), and on its last road by all the road's lanes. The copy's own trips are used (its demand
sample after any surge), so the weights are the traffic that copy really carries over the
episode; ``sample_incidents`` then needs them (``trips=``).

Every field is checked when the spec is built: a closure on an unknown lane, a negative
duration, a capacity outside [0, 1), a probability outside [0, 1] or a placement other than
``uniform`` / ``traffic`` is a `ScenarioError` naming the field and the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from envs.errors import ScenarioError
from envs.scenario.demand import Demand, Trips, route_movements
from envs.scenario.network import Network, lane_ids
from envs.scenario.splits import _finite_number, split_seed

SOURCE = "<perturbation>"
_STREAM = {"incidents": 1, "surge": 2, "detectors": 3}
_READING_KEY = {"lane_count": 0, "lane_halting": 1, "approach": 2, "approach_platoon": 3}  # noise streams
PLACEMENTS = ("uniform", "traffic")  # how random incident lanes are drawn (module doc)


def _window(value: Any, name: str) -> tuple[float, float]:
    """A time as a number or a ``[low, high]`` range, checked."""
    if _finite_number(value):
        low = high = float(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_finite_number(v) for v in value):
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
    placement: str = "uniform"  # uniform | traffic: how lanes are drawn from the pool

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ScenarioError(SOURCE, "incidents.placement", self.placement, f"expected one of {PLACEMENTS}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ScenarioError(SOURCE, "incidents.count", self.count, "must be an integer >= 0")
        _window(self.start_s, "incidents.start_s")
        if not _finite_number(self.duration_s) or self.duration_s <= 0:
            raise ScenarioError(SOURCE, "incidents.duration_s", self.duration_s, "must be a number of seconds > 0")
        if not _finite_number(self.capacity) or not 0.0 <= self.capacity < 1.0:
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
    scale: float = 1.5  # demand multiplier at the surge's height
    start_s: float = 900.0
    end_s: float = 1800.0
    ramp_s: float = 0.0  # seconds to climb to `scale` after start_s, and to fall back before end_s

    def __post_init__(self) -> None:
        if not _finite_number(self.scale) or self.scale < 0:
            raise ScenarioError(SOURCE, "surge.scale", self.scale, "must be a number >= 0")
        start, end = _window([self.start_s, self.end_s], "surge.[start_s, end_s]")
        if not _finite_number(self.ramp_s) or self.ramp_s < 0 or 2 * self.ramp_s > end - start:
            raise ScenarioError(SOURCE, "surge.ramp_s", self.ramp_s,
                                f"must be seconds in [0, (end_s - start_s) / 2 = {(end - start) / 2:g}]")

    def factor(self, t: np.ndarray) -> np.ndarray:
        """The demand factor at departure times `t` (seconds; see the module doc)."""
        t = np.asarray(t, dtype=np.float64)
        if self.ramp_s > 0:  # the trapezoid's height: 0 at the window's ends, 1 on its plateau
            height = np.clip(np.minimum(t - self.start_s, self.end_s - t) / self.ramp_s, 0.0, 1.0)
        else:
            height = ((t >= self.start_s) & (t < self.end_s)).astype(np.float64)
        return 1.0 + (self.scale - 1.0) * height


@dataclass(frozen=True)
class DetectorFaultSpec:
    noise_std: float = 0.0  # vehicles
    dropout_p: float = 0.0  # per lane and reading
    stuck_p: float = 0.0  # per lane and episode
    stuck_at_s: float = 600.0
    dead_p: float = 0.0  # per intersection and episode

    def __post_init__(self) -> None:
        if not _finite_number(self.noise_std) or self.noise_std < 0:
            raise ScenarioError(SOURCE, "detectors.noise_std", self.noise_std, "must be a number of vehicles >= 0")
        for name in ("dropout_p", "stuck_p", "dead_p"):
            value = getattr(self, name)
            if not _finite_number(value) or not 0.0 <= value <= 1.0:
                raise ScenarioError(SOURCE, f"detectors.{name}", value, "a probability must lie in [0, 1]")
        if not _finite_number(self.stuck_at_s) or self.stuck_at_s < 0:
            raise ScenarioError(SOURCE, "detectors.stuck_at_s", self.stuck_at_s, "must be a number of seconds >= 0")

    @property
    def is_clean(self) -> bool:
        return self.noise_std == 0 and self.dropout_p == 0 and self.stuck_p == 0 and self.dead_p == 0


@dataclass(frozen=True)
class Perturbation:
    name: str = "clean"
    seed: int = 0
    incidents: IncidentSpec | None = None
    surge: SurgeSpec | None = None
    detectors: DetectorFaultSpec | None = None

    @property
    def is_clean(self) -> bool:
        return ((self.incidents is None or self.incidents.count == 0) and self.surge is None
                and (self.detectors is None or self.detectors.is_clean))


def perturbation_from_config(config: dict | None, source: str = SOURCE) -> Perturbation:
    """A `Perturbation` from a plain mapping (Hydra's ``perturbation`` group); unknown keys and
    bad values are errors naming the field."""
    if not config:
        return Perturbation()
    config = dict(config)
    known = {"name", "seed", "incidents", "surge", "detectors"}
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
                        incidents=part("incidents", IncidentSpec), surge=part("surge", SurgeSpec),
                        detectors=part("detectors", DetectorFaultSpec))


def _rng(perturbation: Perturbation, split: str, index: int, stream: str) -> np.random.Generator:
    sequence = np.random.SeedSequence(perturbation.seed, spawn_key=(split_seed(split, index), _STREAM[stream]))
    return np.random.default_rng(sequence)


@dataclass(frozen=True)
class Incident:
    lane: int  # global lane id
    start: int  # step
    end: int  # step (exclusive)
    factor: float


def lane_traffic(network: Network, trips: Trips) -> np.ndarray:
    """``[L]`` vehicles each lane carries under `trips` (how trips are shared: module doc)."""
    pad = network.num_lanes  # a scratch column for the tables' -1 padding

    def share(lanes: np.ndarray, vehicles: np.ndarray) -> np.ndarray:
        """`vehicles` ``[K]`` shared evenly by the lanes of each row of `lanes` ``[K, E]``."""
        used = lanes >= 0
        each = vehicles / np.maximum(used.sum(1), 1)
        out = np.zeros(pad + 1)
        np.add.at(out, np.where(used, lanes, pad), np.where(used, each[:, None], 0.0))
        return out[:pad]

    moves = route_movements(trips, network)  # [T, legs - 1] each trip's movements, -1 past its end
    per_movement = np.bincount(moves[moves >= 0], minlength=network.num_movements)
    legs = (trips.routes >= 0).sum(1)
    last_road = trips.routes[np.arange(trips.num_trips), np.maximum(legs - 1, 0)][legs > 0]
    per_last_road = np.bincount(last_road, minlength=network.num_roads)
    return (share(network.movement_in_lanes.cpu().numpy(), per_movement)
            + share(network.road_lanes.cpu().numpy(), per_last_road))


def _draw_lanes(spec: IncidentSpec, network: Network, rng: np.random.Generator, trips: Trips | None) -> np.ndarray:
    pool = spec.lane_pool(network)
    if spec.placement == "uniform":
        return rng.choice(pool, size=spec.count, replace=spec.count > pool.size)
    if trips is None:
        raise ScenarioError(SOURCE, "incidents.placement", spec.placement,
                            "traffic placement needs the copy's trips (pass trips= to sample_incidents)")
    weight = lane_traffic(network, trips)[pool]
    used = int((weight > 0).sum())
    if used == 0:
        raise ScenarioError(SOURCE, "incidents.placement", spec.placement,
                            f"no trip of {trips.source} uses a lane of the incident pool: nothing to weight by")
    return rng.choice(pool, size=spec.count, replace=spec.count > used, p=weight / weight.sum())


def sample_incidents(perturbation: Perturbation, network: Network, split: str, index: int,
                     trips: Trips | None = None) -> list[Incident]:
    """The incidents of copy `index` of `split` (distinct lanes while the pool allows). `trips`:
    the copy's demand, which ``placement: traffic`` weights the lanes by."""
    spec = perturbation.incidents
    if spec is None or spec.count == 0:
        return []
    rng = _rng(perturbation, split, index, "incidents")
    lanes = _draw_lanes(spec, network, rng, trips)
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
    factor = spec.factor(trips.depart)
    whole = np.floor(factor)
    copies = (whole + (rng.random(trips.num_trips) < factor - whole)).astype(np.int64)
    rows = np.repeat(np.arange(trips.num_trips), copies)
    order = np.lexsort((trips.flow_index[rows], trips.depart[rows]))  # (departure, flow) as sampled
    rows = rows[order]
    return Trips(f"{trips.source}+surge", trips.depart[rows], trips.routes[rows], trips.vehicle[rows],
                 trips.flow_index[rows])


class DetectorFaults:
    """The detector faults of B copies, applied to per-lane readings ``[B, L]``.

    `start_episode(copy, split, index)` draws a copy's per-episode faults (stuck lanes, dead
    intersections) from the perturbation's seed; per-reading noise and dropouts are drawn from
    (seed, split, index, time, reading), so copies on the same episode sample (every controller
    on one evaluation seed) see the same faults, and a run is reproducible."""

    def __init__(self, perturbation: Perturbation, network: Network, in_lanes: torch.Tensor, copies: int) -> None:
        self.perturbation = perturbation
        self.spec = perturbation.detectors or DetectorFaultSpec()
        self.network = network
        lanes = network.num_lanes
        # which lanes each intersection's detectors cover (its incoming lanes)
        owner = torch.full((lanes + 1,), -1, dtype=torch.int64)
        for i, row in enumerate(in_lanes.cpu().tolist()):
            for lane in row:
                if lane >= 0:
                    owner[lane] = i
        self.lane_owner = owner[:lanes].to(network.device)
        self.stuck = torch.zeros(copies, lanes, dtype=torch.bool, device=network.device)
        self.dead = torch.zeros(copies, lanes, dtype=torch.bool, device=network.device)
        self.frozen: dict[str, torch.Tensor] = {}  # reading -> [B, L] values stuck lanes show
        self.frozen_set: dict[str, torch.Tensor] = {}  # reading -> [B] already frozen this episode
        self.enabled = torch.zeros(copies, dtype=torch.bool, device=network.device)  # copies with faults
        self.episode = [("", -1)] * copies  # (split, index) each copy's faults were drawn for

    @property
    def active(self) -> bool:
        return not self.spec.is_clean

    def start_episode(self, copy: int, split: str, index: int) -> None:
        if not self.active:
            return
        rng = _rng(self.perturbation, split, index, "detectors")
        lanes, inter = self.network.num_lanes, int(self.lane_owner.max()) + 1
        stuck = rng.random(lanes) < self.spec.stuck_p
        dead_inter = rng.random(inter) < self.spec.dead_p
        owner = self.lane_owner.cpu().numpy()
        dead = np.where(owner >= 0, dead_inter[owner.clip(min=0)], False)
        self.stuck[copy] = torch.as_tensor(stuck, device=self.stuck.device)
        self.dead[copy] = torch.as_tensor(dead, device=self.dead.device)
        self.enabled[copy] = True
        self.episode[copy] = (split, index)
        for flags in self.frozen_set.values():
            flags[copy] = False

    def apply(self, name: str, values: torch.Tensor, t: torch.Tensor, upper: torch.Tensor | None = None,
              missing: float = 0.0) -> torch.Tensor:
        """The detectors' view of true per-lane `values` ``[B, L]`` at steps `t` ``[B]`` (copies
        whose episode was started with faults; the others read true). `upper` ``[L]``: the most
        a lane's detector can report (what the lane holds)."""
        if not self.active or not bool(self.enabled.any()):
            return values
        spec, true, out = self.spec, values.to(torch.float32), values.to(torch.float32)
        if spec.stuck_p > 0:  # freeze each stuck lane at its first reading from stuck_at_s on
            done = self.frozen_set.setdefault(name, torch.zeros(out.shape[0], dtype=torch.bool, device=out.device))
            due = (t >= spec.stuck_at_s) & ~done
            frozen = self.frozen.get(name, torch.zeros_like(out))
            self.frozen[name] = torch.where(due.unsqueeze(1), out, frozen)
            done |= due
            out = torch.where(self.stuck & (t >= spec.stuck_at_s).unsqueeze(1), self.frozen[name], out)
        lost = self.dead
        if spec.noise_std > 0 or spec.dropout_p > 0:
            noise, dropped = self._draws(name, t, out.shape[1])
            out = (out + noise.to(out.device) * spec.noise_std).round().clamp(min=0.0) if spec.noise_std > 0 else out
            if upper is not None:  # a counter reads whole vehicles, never < 0, never above what its lane holds
                out = torch.minimum(out, upper.to(out.dtype).unsqueeze(0))
            lost = lost | (dropped.to(out.device) < spec.dropout_p)
        out = torch.where(lost, torch.full_like(out, missing), out)
        return torch.where(self.enabled.unsqueeze(1), out, true)

    def _draws(self, name: str, t: torch.Tensor, lanes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per copy ``[B, L]``: standard normal noise and uniform dropout draws, a function of
        (seed, split, index, time, reading) only."""
        noise = torch.zeros(len(self.episode), lanes)
        uniform = torch.ones(len(self.episode), lanes)
        times = t.cpu().tolist()
        cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        for copy, (split, index) in enumerate(self.episode):
            if index < 0:
                continue
            key = (split, index, int(times[copy]))
            if key not in cache:
                state = np.random.SeedSequence(
                    [self.perturbation.seed, split_seed(split, index), key[2], _READING_KEY.get(name, 9), 3]
                ).generate_state(1)[0]
                generator = torch.Generator().manual_seed(int(state))
                cache[key] = (torch.randn(lanes, generator=generator), torch.rand(lanes, generator=generator))
            noise[copy], uniform[copy] = cache[key]
        return noise, uniform


__all__ = [
    "DetectorFaultSpec", "DetectorFaults", "Incident", "IncidentSpec", "PLACEMENTS", "Perturbation", "SurgeSpec",
    "lane_ids", "lane_traffic", "perturbation_from_config", "sample_incidents", "surge_trips", "with_incidents",
]
