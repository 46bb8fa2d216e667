"""Probe-vehicle sensing: a seeded share of the vehicles report lane, position and speed every
few seconds, as navigation apps, ride-hailing fleets and connected vehicles do.

`ProbeSpec` (the ``probes`` config section; every field checked, a bad one is a `ConfigError`
naming ``probes.<field>`` and the value):

==================  =========  ==================================================================
field               default    meaning
==================  =========  ==================================================================
``p``               0.0        share of trips that are probes (0: no reports at all)
``interval_s``      5          seconds between reports: every probe reports at each step t with
                               ``t % interval_s == 0`` (t = the copy's clock after the step)
``gps_noise_m``     0.0        std of Gaussian noise on the reported position along the lane (m)
``speed_noise``     0.0        std of Gaussian noise on the reported speed (m/s); a noisy speed
                               is reported as ``max(0, speed + noise)``, as a speedometer reads
``dropout_p``       0.0        each report is lost with this probability, independently
``seed``            0          the probe stream's seed
==================  =========  ==================================================================

Who is a probe: trip ``j`` of copy (``split``, ``index``) is a probe iff ``u < p`` for a uniform
``u`` that is a hash of (the copy key, ``j``) — the copy key comes from
``SeedSequence(seed, spawn_key=(split_seed(split, index), 4))`` (`copy_key`), so the draw is per
trip of the copy's demand, reproducible and different per copy. The key is one 32-bit word of
that sequence: two copies of different split seeds (a training and an evaluation copy among
them) get equal keys, and so draw alike, with probability 2^-32 per pair; incidents and demand
samples, drawn from the sequences themselves (`envs.scenario.splits`), never share a draw.
Noise and dropouts are hashes of (copy key, trip, report time, stream): the same run reports
the same values, whatever the engine's vehicle slots. Everything is batched over copies and
vehicles; no Python loop over either.

A report is what a probe knows of itself: ``(lane, position, speed)``; `probe_reports` returns
them as fixed-size tensors ``[B, S]`` (S = the simulator's vehicle pool) with a ``valid`` mask,
the valid reports first, ordered by lane then reported position — never a vehicle's slot, trip,
leader or any vehicle that is not a probe. Position is metres from the lane's start (the stop
line is at the lane's length), noise not clipped (a noisy position may fall a little outside
the lane). A probe crossing a junction (the engine already counts it on its next lane, before
that lane's start) reports nothing: its lane is ambiguous inside the box.

`lane_summary` aggregates reports per lane ``[B, L]`` (what a detector or policy reads):
``reports``; ``halted`` (reported speed < `HALTED_SPEED`, 0.1 m/s, the engine's halting speed);
``halted_nearest_m`` — distance from the stop line of the halted probe nearest it: large when a
queue stands away from the stop line (behind a mid-lane blockage), small for a queue at a red
light; ``halted_furthest_m`` — the furthest halted probe's distance (the queue's reach). Both 0
without a halted probe. `ProbeSensor` keeps each copy's latest reports and summary for the RL
features (`envs.rl.probe_features`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from envs.engine.state import SimState
from envs.errors import ConfigError, config_path
from envs.scenario.network import Network
from envs.scenario.splits import finite_number, split_seed

SOURCE = "<probes>"
PROBE_STREAM = 4  # spawn key of the probe stream (perturbation_specs._STREAM holds 1-3)
HALTED_SPEED = 0.1  # m/s: a report slower than this is halted (the engine's halting speed)
_MASK32 = 0xFFFFFFFF
# hash streams: which draw a uniform feeds
_IDENTITY, _DROPOUT, _POS_A, _POS_B, _SPEED_A, _SPEED_B = range(1, 7)


@dataclass(frozen=True)
class ProbeSpec:
    p: float = 0.0  # share of trips that are probes
    interval_s: int = 5  # seconds between reports
    gps_noise_m: float = 0.0  # std of the position noise, metres
    speed_noise: float = 0.0  # std of the speed noise, m/s
    dropout_p: float = 0.0  # each report lost with this probability
    seed: int = 0  # the probe stream's seed

    def __post_init__(self) -> None:
        for name in ("p", "dropout_p"):
            value = getattr(self, name)
            if not finite_number(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(SOURCE, f"probes.{name}", value, "a probability must lie in [0, 1]")
        interval = self.interval_s
        if isinstance(interval, bool) or not isinstance(interval, (int, np.integer)) or interval < 1:
            raise ConfigError(SOURCE, "probes.interval_s", interval, "must be a whole number of seconds >= 1")
        for name, unit in (("gps_noise_m", "metres"), ("speed_noise", "m/s")):
            value = getattr(self, name)
            if not finite_number(value) or value < 0:
                raise ConfigError(SOURCE, f"probes.{name}", value, f"must be a standard deviation in {unit} >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(SOURCE, "probes.seed", self.seed, "must be an integer >= 0")


def probes_from_config(config: dict | ProbeSpec | None, source: str = SOURCE,
                       path: str = "probes") -> ProbeSpec:
    """A `ProbeSpec` from a plain mapping (None: no probes, p = 0); unknown keys are errors.
    `path` is where the mapping sits in the config (``env.probes``), which errors name."""
    if isinstance(config, ProbeSpec):
        return config
    if not config:
        return ProbeSpec()
    if not isinstance(config, dict):
        raise ConfigError(source, path, config, "expected a mapping")
    known = set(ProbeSpec.__dataclass_fields__)
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(source, f"{path}.{unknown[0]}", config[unknown[0]], f"unknown key; known: {sorted(known)}")
    with config_path(source, f"{path}.", own_prefix="probes."):
        return ProbeSpec(**config)


def copy_key(spec: ProbeSpec, split: str, index: int) -> int:
    """The probe key of copy `index` of `split` (a 32-bit integer): module doc."""
    sequence = np.random.SeedSequence(int(spec.seed), spawn_key=(split_seed(split, index), PROBE_STREAM))
    return int(sequence.generate_state(1)[0])


def _times(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2^32`` for x in [0, 2^32), in two 16-bit halves of c so int64 never overflows."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply rounds) of int64 values, taken mod 2^32."""
    x = x & _MASK32
    x = _times(x ^ (x >> 16), 0x7FEB352D)
    x = _times(x ^ (x >> 15), 0x846CA68B)
    return x ^ (x >> 16)


def _uniform(key: torch.Tensor, trip: torch.Tensor, t: torch.Tensor | int, stream: int) -> torch.Tensor:
    """Uniform in [0, 1) ``[B, S]`` as a hash of (copy key ``[B]``, trip ``[B, S]``, time, stream)."""
    h = _mix(key.unsqueeze(1) ^ (stream * 0x9E3779B9))
    h = _mix(h ^ trip)
    t = t.unsqueeze(1) if isinstance(t, torch.Tensor) else t
    h = _mix(h ^ _times(t & _MASK32, 0x85EBCA6B) if isinstance(t, torch.Tensor) else h ^ (t * 0x85EBCA6B & _MASK32))
    return (h >> 8).to(torch.float32) / float(1 << 24)


def _normal(key: torch.Tensor, trip: torch.Tensor, t: torch.Tensor, streams: tuple[int, int]) -> torch.Tensor:
    """Standard normal ``[B, S]`` (Box-Muller over two hashed uniforms)."""
    u1 = 1.0 - _uniform(key, trip, t, streams[0])  # in (0, 1]: log is finite
    u2 = _uniform(key, trip, t, streams[1])
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)


def probe_trips(spec: ProbeSpec, key: torch.Tensor, trip: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` bool: which of the trips `trip` ``[B, N]`` (ids in each copy's demand) of the
    copies keyed `key` ``[B]`` are probes."""
    if spec.p <= 0.0:
        return torch.zeros(trip.shape, dtype=torch.bool, device=trip.device)
    return _uniform(key, trip, 0, _IDENTITY) < spec.p


def probe_vehicles(spec: ProbeSpec, key: torch.Tensor, state: SimState) -> torch.Tensor:
    """``[B, S]`` bool: the vehicle slots that hold a probe now (ground truth; reports never
    carry it)."""
    slots = state.veh_lane.shape[1] - 1
    active = state.veh_lane[:, :slots] >= 0
    return active & probe_trips(spec, key, state.veh_trip[:, :slots].clamp(min=0))


class SlotReports(NamedTuple):
    """Per vehicle slot ``[B, S]`` (the engine's order; for `probe_reports` and tests)."""

    valid: torch.Tensor  # bool, this slot's probe reports now (a probe, on a lane, not lost)
    lane: torch.Tensor  # int64, -1 where not valid
    pos: torch.Tensor  # float32 reported metres from the lane's start
    speed: torch.Tensor  # float32 reported m/s


def slot_reports(spec: ProbeSpec, key: torch.Tensor, state: SimState) -> SlotReports:
    """Every probe's report at this state, slot-aligned (module doc for noise and dropouts)."""
    slots = state.veh_lane.shape[1] - 1
    lane = state.veh_lane[:, :slots]
    pos, speed = state.veh_pos[:, :slots], state.veh_speed[:, :slots]
    trip = state.veh_trip[:, :slots].clamp(min=0)
    valid = probe_vehicles(spec, key, state) & (pos >= 0.0)  # inside the junction box: no report
    t = state.t
    if spec.dropout_p > 0:
        valid = valid & (_uniform(key, trip, t, _DROPOUT) >= spec.dropout_p)
    if spec.gps_noise_m > 0:
        pos = pos + spec.gps_noise_m * _normal(key, trip, t, (_POS_A, _POS_B))
    if spec.speed_noise > 0:
        speed = (speed + spec.speed_noise * _normal(key, trip, t, (_SPEED_A, _SPEED_B))).clamp(min=0.0)
    return SlotReports(valid, torch.where(valid, lane, -1), torch.where(valid, pos, 0.0),
                       torch.where(valid, speed, 0.0))


class ProbeReports(NamedTuple):
    """One report time's probe reports ``[B, S]``: valid ones first, by lane then position."""

    valid: torch.Tensor  # bool
    lane: torch.Tensor  # int32 global lane id (the state's), -1 where not valid
    pos: torch.Tensor  # float32 metres from the lane's start (0 where not valid)
    speed: torch.Tensor  # float32 m/s (0 where not valid)
    t: torch.Tensor  # [B] int64 the report time (the copy's clock)


def probe_reports(spec: ProbeSpec, key: torch.Tensor, state: SimState) -> ProbeReports:
    """The probes' reports at this state, stripped of the engine's slot order (module doc)."""
    raw = slot_reports(spec, key, state)
    by_pos = torch.argsort(torch.where(raw.valid, raw.pos, torch.inf), dim=1, stable=True)
    lane = torch.gather(raw.lane, 1, by_pos)
    last = torch.iinfo(lane.dtype).max
    by_lane = torch.gather(by_pos, 1, torch.argsort(torch.where(lane >= 0, lane, last), dim=1, stable=True))
    return ProbeReports(*(torch.gather(x, 1, by_lane) for x in raw), state.t.clone())


class ProbeLanes(NamedTuple):
    """Per lane ``[B, L]`` float32 aggregates of one report time (module doc)."""

    reports: torch.Tensor
    halted: torch.Tensor
    halted_nearest_m: torch.Tensor
    halted_furthest_m: torch.Tensor


def lane_summary(network: Network, reports: ProbeReports) -> ProbeLanes:
    lanes = network.num_lanes
    lane = torch.where(reports.valid, reports.lane, lanes)
    halted = reports.valid & (reports.speed < HALTED_SPEED)
    to_line = torch.cat([network.lane_length, network.lane_length.new_zeros(1)])[lane] - reports.pos
    zeros = torch.zeros(lane.shape[0], lanes + 1, device=lane.device)
    count = zeros.scatter_add(1, lane, reports.valid.to(torch.float32))
    stood = zeros.scatter_add(1, lane, halted.to(torch.float32))
    halted_lane = torch.where(halted, lane, lanes)
    nearest = torch.full_like(zeros, torch.inf).scatter_reduce(1, halted_lane, to_line, reduce="amin")
    furthest = torch.full_like(zeros, -torch.inf).scatter_reduce(1, halted_lane, to_line, reduce="amax")
    some = stood > 0
    return ProbeLanes(count[:, :lanes], stood[:, :lanes], torch.where(some, nearest, 0.0)[:, :lanes],
                      torch.where(some, furthest, 0.0)[:, :lanes])


class ProbeSensor:
    """The probe reports of B copies over their episodes: `start_episode(copy, split, index)`
    sets a copy's probe key; `observe(state)` after each engine step records the reports of the
    copies at a report time, once per time (a second call at the same time, e.g. a controller
    that reads before it decides, computes nothing); `latest` holds each copy's last summary
    (zeros before the first)."""

    def __init__(self, spec: ProbeSpec, network: Network, copies: int, split: str = "train") -> None:
        self.spec, self.network = spec, network
        # until a copy starts an episode of its own (a replayed flow file never does), copy b is
        # keyed as sample b of `split`
        self.key = torch.tensor([copy_key(spec, split, b) for b in range(copies)], device=network.device)
        zeros = torch.zeros(copies, network.num_lanes, device=network.device)
        self.latest = ProbeLanes(zeros, zeros.clone(), zeros.clone(), zeros.clone())
        self.read_at = torch.full((copies,), -1, dtype=torch.int64, device=network.device)  # -1: not yet

    @property
    def active(self) -> bool:
        return self.spec.p > 0

    def start_episode(self, copy: int, split: str, index: int) -> None:
        self.key[copy] = copy_key(self.spec, split, index)

    def restart(self, copies: torch.Tensor, state: SimState) -> None:
        """The copies of the ``[B]`` mask start an episode: their summaries are cleared, then
        read at their first report time (t = 0)."""
        self.latest = ProbeLanes(*(torch.where(copies.unsqueeze(1), 0.0, old) for old in self.latest))
        self.read_at = torch.where(copies, -1, self.read_at)
        self.observe(state)

    def observe(self, state: SimState) -> None:
        if not self.active:
            return
        due = (state.t % self.spec.interval_s == 0) & (state.t != self.read_at)
        if not bool(due.any()):
            return
        now = lane_summary(self.network, probe_reports(self.spec, self.key, state))
        self.latest = ProbeLanes(*(torch.where(due.unsqueeze(1), new, old) for new, old in zip(now, self.latest)))
        self.read_at = torch.where(due, state.t, self.read_at)


__all__ = ["HALTED_SPEED", "ProbeLanes", "ProbeReports", "ProbeSensor", "ProbeSpec", "SlotReports", "copy_key",
           "lane_summary", "probe_reports", "probe_trips", "probe_vehicles", "probes_from_config", "slot_reports"]
