"""What a perturbation is made of (`IncidentSpec`, `SurgeSpec`, `DetectorFaultSpec`, composed
by `Perturbation`; their meaning is in `envs.incidents.perturbations`), read from a config
mapping by `perturbation_from_config`, and the random stream each copy draws them from.

Every field is checked when the spec is built; a bad one is a `ConfigError` naming the field and
the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.errors import ConfigError, config_path
from envs.scenario.network import Network, lane_ids
from envs.scenario.splits import finite_number, split_seed

SOURCE = "<perturbation>"
_STREAM = {"incidents": 1, "surge": 2, "detectors": 3}
PLACEMENTS = ("uniform", "traffic")  # how random incident lanes are drawn (module doc)
POSITIONS = ("stop_line", "random")  # where along its lane an incident is, besides a fraction


def time_window(value: Any, name: str) -> tuple[float, float]:
    """A time as a number or a ``[low, high]`` range, checked."""
    if finite_number(value):
        low = high = float(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(finite_number(v) for v in value):
        low, high = float(value[0]), float(value[1])
    else:
        raise ConfigError(SOURCE, name, value, "expected seconds, or a [low, high] range of seconds")
    if low < 0 or high < low:
        raise ConfigError(SOURCE, name, value, "need 0 <= low <= high (seconds)")
    return low, high


@dataclass(frozen=True)
class IncidentSpec:
    count: int = 1  # incidents per copy (unless rate_per_hour is given)
    # incidents per hour per copy (network): a Poisson number over the start_s window, replacing
    # count (which must then stay 1, its default); start times uniform over the window
    rate_per_hour: float | None = None
    lanes: tuple[str, ...] | None = None  # CityFlow lane ids to draw from; None = random lanes
    start_s: Any = (600.0, 2400.0)  # seconds: a number or a [low, high] range
    duration_s: float = 900.0
    capacity: float = 0.0  # 0 = closed; in (0, 1) = speed limit scaled by it
    placement: str = "uniform"  # uniform | traffic: how lanes are drawn from the pool
    # where along the lane: stop_line (the whole lane) | a fraction of the lane's length in [0, 1]
    # from its start | random (uniform over the lane's length, from the copy's incident stream)
    position: Any = "stop_line"

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ConfigError(SOURCE, "incidents.placement", self.placement, f"expected one of {PLACEMENTS}")
        if not (self.position in POSITIONS or (finite_number(self.position) and 0.0 <= self.position <= 1.0)):
            raise ConfigError(SOURCE, "incidents.position", self.position,
                              f"expected one of {POSITIONS} or a fraction of the lane's length in [0, 1]")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ConfigError(SOURCE, "incidents.count", self.count, "must be an integer >= 0")
        low, high = time_window(self.start_s, "incidents.start_s")
        if low != int(low) or high != int(high):  # onsets are drawn in whole seconds: a bound would be cut
            raise ConfigError(SOURCE, "incidents.start_s", self.start_s,
                              "onsets are whole seconds (the engine's step): give whole-second bounds")
        if self.rate_per_hour is not None:
            if not finite_number(self.rate_per_hour) or self.rate_per_hour < 0:
                raise ConfigError(SOURCE, "incidents.rate_per_hour", self.rate_per_hour,
                                  "must be a number of incidents per hour >= 0 (or null: use count)")
            if self.rate_per_hour > 0 and high == low:  # a rate over a window of no length draws nothing
                raise ConfigError(SOURCE, "incidents.start_s", self.start_s,
                                  "a rate_per_hour needs a [low, high] window of onsets (low < high)")
            if self.count != 1:
                raise ConfigError(SOURCE, "incidents.count", self.count,
                                  "give one of count or rate_per_hour, not both")
        if not finite_number(self.duration_s) or self.duration_s <= 0:
            raise ConfigError(SOURCE, "incidents.duration_s", self.duration_s, "must be a number of seconds > 0")
        if round(self.duration_s) < 1:  # the engine's whole seconds: an incident ending where it starts
            raise ConfigError(SOURCE, "incidents.duration_s", self.duration_s,
                              "rounds to 0 s (incidents last whole seconds): an incident that never acts")
        if not finite_number(self.capacity) or not 0.0 <= self.capacity < 1.0:
            raise ConfigError(SOURCE, "incidents.capacity", self.capacity,
                                "must be in [0, 1): 0 closes the lane, a fraction scales its speed limit")
        if self.lanes is not None:
            lanes = tuple(self.lanes)
            if not lanes or not all(isinstance(x, str) for x in lanes):
                raise ConfigError(SOURCE, "incidents.lanes", self.lanes, "expected a non-empty list of lane ids")
            twice = next((x for k, x in enumerate(lanes) if x in lanes[:k]), None)
            if twice is not None:  # the pool would hold it twice: two closures on it at once, counted apart
                raise ConfigError(SOURCE, "incidents.lanes", twice, "listed twice")
            object.__setattr__(self, "lanes", lanes)

    @property
    def none(self) -> bool:
        """Whether no incident is ever drawn (count 0, or a rate of 0)."""
        return self.rate_per_hour == 0 if self.rate_per_hour is not None else self.count == 0

    def draw_count(self, rng: np.random.Generator) -> int:
        """The number of incidents of a copy: `count`, or Poisson(rate x window hours) from `rng`."""
        if self.rate_per_hour is None:
            return self.count
        low, high = time_window(self.start_s, "incidents.start_s")
        return int(rng.poisson(self.rate_per_hour * (high - low) / 3600.0))

    def lane_pool(self, network: Network) -> np.ndarray:
        """Global lane ids the incidents are drawn from (checked against the network)."""
        names = lane_ids(network)
        if self.lanes is None:
            ends = network.road_end[network.lane_road].cpu().numpy()
            pool = np.flatnonzero(ends >= 0)  # lanes that end at a signal
            if pool.size == 0:
                raise ConfigError(SOURCE, "incidents.lanes", None,
                                  f"{network.source} has no lane ending at a signal to draw incidents on: "
                                  "a scenario with signals, or lanes given by id")
            return pool
        index = {name: lane for lane, name in enumerate(names)}
        unknown = [x for x in self.lanes if x not in index]
        if unknown:
            raise ConfigError(SOURCE, "incidents.lanes", unknown[0],
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
        if not finite_number(self.scale) or self.scale < 0:
            raise ConfigError(SOURCE, "surge.scale", self.scale, "must be a number >= 0")
        start, end = time_window([self.start_s, self.end_s], "surge.[start_s, end_s]")
        if not finite_number(self.ramp_s) or self.ramp_s < 0 or 2 * self.ramp_s > end - start:
            raise ConfigError(SOURCE, "surge.ramp_s", self.ramp_s,
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
        if not finite_number(self.noise_std) or self.noise_std < 0:
            raise ConfigError(SOURCE, "detectors.noise_std", self.noise_std, "must be a number of vehicles >= 0")
        for name in ("dropout_p", "stuck_p", "dead_p"):
            value = getattr(self, name)
            if not finite_number(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(SOURCE, f"detectors.{name}", value, "a probability must lie in [0, 1]")
        if not finite_number(self.stuck_at_s) or self.stuck_at_s < 0:
            raise ConfigError(SOURCE, "detectors.stuck_at_s", self.stuck_at_s, "must be a number of seconds >= 0")

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

    def __post_init__(self) -> None:  # numpy's SeedSequence refused a negative seed at the first draw
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(SOURCE, "seed", self.seed, "must be an integer >= 0")

    @property
    def is_clean(self) -> bool:
        return ((self.incidents is None or self.incidents.none) and self.surge is None
                and (self.detectors is None or self.detectors.is_clean))

    def draws_nothing(self) -> tuple[str, Any] | None:
        """(field, value) of the part that makes a perturbation with parts clean after all (an
        incident count or rate of 0, detector faults of probability 0), or None."""
        if self.is_clean and (self.incidents is not None or self.detectors is not None):
            if self.incidents is None:
                return "detectors", "every fault 0 (noise_std, dropout_p, stuck_p, dead_p)"
            rate = self.incidents.rate_per_hour
            return ("incidents.count", self.incidents.count) if rate is None else ("incidents.rate_per_hour", rate)
        return None

    def windows_past(self, episode_s: float) -> list[str]:
        """The parts whose active time reaches past an episode of `episode_s` seconds, each as
        ``field [start, end] s``: what they do after its end never shows in its metrics."""
        late = []
        if self.incidents is not None and not self.incidents.none:
            low, high = time_window(self.incidents.start_s, "incidents.start_s")
            if high + self.incidents.duration_s > episode_s:  # the last onset, then its duration
                late.append(f"incidents.start_s + duration_s [{low:g}, {high + self.incidents.duration_s:g}] s")
        if self.surge is not None and self.surge.end_s > episode_s:
            late.append(f"surge.[start_s, end_s] [{self.surge.start_s:g}, {self.surge.end_s:g}] s")
        if self.detectors is not None and self.detectors.stuck_p > 0 and self.detectors.stuck_at_s >= episode_s:
            late.append(f"detectors.stuck_at_s {self.detectors.stuck_at_s:g} s")
        return late


def perturbation_from_config(config: dict | None, source: str = SOURCE) -> Perturbation:
    """A `Perturbation` from a plain mapping (Hydra's ``perturbation`` group); unknown keys and
    bad values are errors naming the field."""
    known = {"name", "seed", "incidents", "surge", "detectors"}
    if config is not None and not isinstance(config, Mapping):  # a name was a ValueError from dict()
        raise ConfigError(source, "perturbation", config, f"expected a Perturbation or a mapping of {sorted(known)} "
                          "(the fields of configs/perturbation/*.yaml), or None")
    if not config:
        return Perturbation()
    config = dict(config)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(source, f"perturbation.{unknown[0]}", config[unknown[0]],
                          f"unknown key; known: {sorted(known)}")

    def part(key: str, cls):
        value = config.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(source, f"perturbation.{key}", value, "expected a mapping or null")
        fields = set(cls.__dataclass_fields__)
        bad = sorted(set(value) - fields)
        if bad:
            raise ConfigError(source, f"perturbation.{key}.{bad[0]}", value[bad[0]],
                              f"unknown key; known: {sorted(fields)}")
        with config_path(source, "perturbation."):  # the spec's `incidents.capacity` as typed
            return cls(**value)

    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(source, "perturbation.seed", seed, "must be an integer >= 0")
    return Perturbation(name=str(config.get("name", "perturbed")), seed=seed,
                        incidents=part("incidents", IncidentSpec), surge=part("surge", SurgeSpec),
                        detectors=part("detectors", DetectorFaultSpec))


def check_incident_lanes(perturbation: Perturbation, network: Network, source: str, at_signals: bool = False) -> None:
    """The ``perturbation.incidents.lanes`` a run will draw from, checked against `network` before
    any work (they were checked when the first incident was drawn, after the baselines ran), errors
    named as typed; `at_signals`: each must end at a signal (incident detection watches only those).
    Random lanes (no ``lanes``) need a lane that ends at a signal: a network without one was refused
    only when the first copy drew its incidents, as ``<perturbation>``'s ``incidents.lanes``."""
    incidents = perturbation.incidents
    if incidents is None or incidents.none:
        return
    with config_path(source, "perturbation."):
        pool = incidents.lane_pool(network)
    if incidents.lanes is None:
        return
    ends = network.road_end[network.lane_road].cpu().numpy()[pool]
    if at_signals and (ends < 0).any():
        raise ConfigError(source, "perturbation.incidents.lanes", incidents.lanes[int(np.flatnonzero(ends < 0)[0])],
                          "ends at no signal: incident detection watches the lanes that end at one")


def stream_rng(perturbation: Perturbation, split: str, index: int, stream: str) -> np.random.Generator:
    sequence = np.random.SeedSequence(perturbation.seed, spawn_key=(split_seed(split, index), _STREAM[stream]))
    return np.random.default_rng(sequence)
