"""Incident detection from lane-detector data: the recording, the classifiers' interface, the
scores.

The task: lanes get closed (envs/incidents/perturbations.py incidents) while a signal controller runs;
from what lane detectors measure — no engine internals — say which lane has an incident and
since when. `record(...)` runs the simulator and samples, every ``interval_s`` seconds, for
every lane that ends at a signal (the lanes incidents are drawn on):

==============  =============================================================================
reading         meaning
==============  =============================================================================
``count``       vehicles on the lane
``halting``     of those, vehicles slower than the halting speed
``seg0..2``     vehicles in the 50 m segments before the stop line (nearest first)
``speed``       mean speed of the vehicles on the lane, m/s (0 when empty)
``outflow``     vehicles that crossed the lane's stop line during the interval (a stop-line
                loop's count)
``green``       seconds of the interval in which a movement the lane feeds showed green: the
                *signal indication*, which the traffic system knows because it commanded it
                (not a lane detector, and not an engine internal; classifiers that should
                not use it simply ignore the column)
==============  =============================================================================

and the ground truth: which (lane, reading) has an active incident. With ``probes`` (a `ProbeSpec`,
`envs.incidents.probes`) it also records, per reading and monitored lane, the latest probe-vehicle
summary (``Recording.probes`` ``[B, T, N, 4]``, columns `PROBE_READINGS`: ``reports``, ``halted``,
``halted_nearest_m``, ``halted_furthest_m``; probes keyed per copy by the split and seed, as the
incidents). An incident *classifier* (agents/incidents/classifiers.py) maps the readings of one
copy ``[T, N, F]`` to alarms ``[T, N]`` (bool), reading only the past at each step. `score` turns
alarms into the benchmark's figures:

- an *alarm* is an onset (a lane's alarm switching on); it is *true* if an incident is active on
  that lane at that time, else a false alarm;
- precision = true alarms / alarms; recall = incidents with a true alarm / incidents, one alarm
  detecting one incident (closures overlapping on a lane take the alarms in the order they started);
- false alarms per hour, per network (copy);
- mean time to detect = mean over detected incidents of first true alarm − incident start;
- and, to separate what a classifier could have known, the incident's first *evidence* to a
  sensor set (``"lane"`` detectors, ``"probe"`` vehicles, ``"fused"``: both;
  `envs.incidents.evidence`, recorded by `record` in ``Recording.evidence``): for the lane
  detectors and a closure at the stop line, the first reading while it is active in which a
  vehicle stands (``halting`` >= 1) in the closed lane's first 50 m segment (``seg0`` >= 1) and
  the lane had green in the interval (``green`` > 0) — before it the closed lane reads like an
  empty lane or a red light (`evidence`); for a closure mid-lane, the first reading in which a
  vehicle stands behind the blockage unexplained by the signal. Reported: the *oracle floor* —
  mean over incidents with evidence of start → first evidence: the mean time to detect of the
  ideal classifier that alarms at the first evidence reading (`oracle_alarms`), a lower bound
  for any classifier reading those sensors, up to lucky guesses — and each classifier's mean
  time from evidence to its first true alarm, over incidents it detected at or after their
  evidence. An incident without evidence while active cannot be detected except by guessing,
  so the share of incidents with evidence bounds recall.

Scores are sums over copies (`tally` per copy, `combine`), so bootstrap resamples of copies
cost no rescan of the readings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from envs.engine import EngineParams, Simulator, signal_state
from envs.engine.readings import segment_counts
from envs.engine.intersections import lane_movements
from envs.engine.readings import lane_halting
from envs.errors import ConfigError
from envs.incidents.evidence import SENSORS, EvidenceRecorder, evidence_by_sensors
from envs.incidents.perturbations import Incident, Perturbation, sample_incidents, with_incidents
from envs.incidents.probes import ProbeSensor, ProbeSpec
from envs.scenario import Scenario
from envs.scenario.splits import DemandSpec, design_demand, sample_trips

READINGS = ("count", "halting", "seg0", "seg1", "seg2", "speed", "outflow", "green")
COLUMN = {name: k for k, name in enumerate(READINGS)}
PROBE_READINGS = ("reports", "halted", "halted_nearest_m", "halted_furthest_m")  # `ProbeLanes`' fields
PROBE_COLUMN = {name: k for k, name in enumerate(PROBE_READINGS)}
SOURCE = "<incident detection>"


@dataclass
class Recording:
    """Lane-detector data of B copies: ``readings [B, T, N, F]``, ``truth [B, T, N]`` (bool), the
    monitored lanes (global ids ``[N]``), reading times ``[T]`` (s) and each copy's incidents."""

    readings: np.ndarray
    truth: np.ndarray
    lanes: np.ndarray
    times: np.ndarray
    incidents: list[list[Incident]]
    interval_s: int
    probes: np.ndarray | None = None  # [B, T, N, len(PROBE_READINGS)] when recorded with probes
    split: str | None = None  # the split the copies were drawn from (calibration takes "train" only)
    # {sensor set: [B, T, N]} first-evidence readings (envs/incidents/evidence.py); None: the
    # lane detectors' stop-line definition (`evidence`) read from the readings
    evidence: dict | None = None

    def seen(self, sensors: str = "lane") -> np.ndarray:
        """``[B, T, N]`` the readings that show evidence to the sensor set `sensors`."""
        if self.evidence is not None:
            return self.evidence[sensors]
        if sensors != "lane":
            raise ConfigError(SOURCE, "sensors", sensors, "this recording holds lane-detector evidence only")
        return evidence(self.readings)


def monitored_lanes(scenario: Scenario) -> np.ndarray:
    network = scenario.network
    ends = network.road_end[network.lane_road].cpu().numpy()
    return np.flatnonzero(ends >= 0)


def record(
    scenario: Scenario, controller, perturbation: Perturbation, split: str, seeds: list[int],
    steps: int = 3600, interval_s: int = 10, demand: DemandSpec | None = None, progress=None,
    params: EngineParams | None = None, probes: ProbeSpec | None = None,
) -> Recording:
    """Run `controller` on copies with incidents (copy k: demand and incidents of seed
    ``seeds[k]`` of `split`) and record the detector readings (see the module doc)."""
    return record_sweep(scenario, controller, perturbation, split, seeds, steps, interval_s, demand, progress,
                        params, [probes] if probes is not None else [])[0]


def record_sweep(
    scenario: Scenario, controller, perturbation: Perturbation, split: str, seeds: list[int],
    steps: int = 3600, interval_s: int = 10, demand: DemandSpec | None = None, progress=None,
    params: EngineParams | None = None, probe_specs=(),
) -> list[Recording]:
    """`record` with several probe configurations at once: probes change no vehicle's way, so
    one run serves them all. One `Recording` per spec of `probe_specs` (the same readings, truth
    and lane evidence; each its own probe readings and probe evidence); one without probes when
    `probe_specs` is empty."""
    network = scenario.network
    demand = demand or DemandSpec("poisson")
    cut = scenario.info.get("horizon")  # scenario.horizon cuts the flow file, as in evaluate.py's signals task
    trips = [sample_trips(scenario, demand, split, s, horizon=steps if cut is None else min(steps, cut)) for s in seeds]
    incidents = [sample_incidents(perturbation, network, split, s, trips=t) for s, t in zip(seeds, trips)]
    sim = Simulator(network, with_incidents(scenario.demand(trips=trips), incidents), params)
    if hasattr(controller, "design_demand"):  # a plan designed from the demand: past counts, never these samples
        controller.design_demand = design_demand(scenario, demand)
    controller.reset(sim)
    lanes = monitored_lanes(scenario)
    lanes_t = torch.as_tensor(lanes, device=sim.device)
    num_lanes = network.num_lanes
    outflow = torch.zeros(sim.batch_size, num_lanes + 1, device=sim.device)
    green_s = torch.zeros(sim.batch_size, num_lanes, device=sim.device)
    feeds = lane_movements(network).to(torch.float32)  # [L, M]
    sensors = [ProbeSensor(spec, network, sim.batch_size) for spec in probe_specs]
    witnesses = [EvidenceRecorder(network, incidents, lanes_t, sim.params.halting_speed, interval_s)
                 for _ in sensors or [None]]
    for sensor in sensors:
        for b, seed in enumerate(seeds):
            sensor.start_episode(b, split, seed)
    readings, times, probe_frames, evidence_frames = [], [], [[] for _ in sensors], [[] for _ in witnesses]
    for k in range(steps):
        before_lane, before_trip = sim.state.veh_lane[:, :-1].clone(), sim.state.veh_trip[:, :-1].clone()
        sim.step(controller.act(sim))
        after = sim.state
        slots = min(before_lane.shape[1], after.veh_lane.shape[1] - 1)
        was, now = before_lane[:, :slots], after.veh_lane[:, :slots]
        same = before_trip[:, :slots] == after.veh_trip[:, :slots]
        left = (was >= 0) & ((now != was) | ~same)  # crossed its stop line (or left the network)
        outflow.scatter_add_(1, torch.where(left, was, num_lanes), left.to(torch.float32))
        green, _ = signal_state(network, sim.params, after.phase, after.prev_phase, after.phase_timer - 1)
        green_s += ((green.to(torch.float32) @ feeds.T) > 0).to(torch.float32)
        for sensor, witness in zip(sensors, witnesses):
            sensor.observe(after)
            witness.observe_probes(sensor, after)
        if (k + 1) % interval_s == 0:
            state = after
            count = state.lane_count[:, :num_lanes].to(torch.float32)
            halting = lane_halting(state, num_lanes, sim.params.halting_speed).to(torch.float32)
            slots_all = state.veh_lane.shape[1] - 1
            lane = state.veh_lane[:, :slots_all]
            speed_sum = torch.zeros(sim.batch_size, num_lanes + 1, device=sim.device)
            speed_sum.scatter_add_(1, torch.where(lane >= 0, lane, num_lanes),
                                   torch.where(lane >= 0, state.veh_speed[:, :slots_all], 0.0))
            speed = speed_sum[:, :num_lanes] / count.clamp(min=1.0)
            segments = segment_counts(network, state)
            frame = torch.stack([count, halting, segments[..., 0], segments[..., 1], segments[..., 2], speed,
                                 outflow[:, :num_lanes], green_s], -1)[:, lanes_t]
            readings.append(frame.cpu().numpy())
            for frames, sensor in zip(probe_frames, sensors):
                frames.append(torch.stack(list(sensor.latest), -1)[:, lanes_t].cpu().numpy())
            for frames, witness in zip(evidence_frames, witnesses):
                frames.append(witness.frame(state, green_s, segments[..., 0], halting).cpu().numpy())
            times.append(k + 1)
            outflow.zero_()
            green_s.zero_()
        if progress is not None:
            progress(1)
    truth = np.zeros((len(seeds), len(times), len(lanes)), dtype=bool)
    stacked = np.stack(readings, 1)
    out = []
    for n, frames in enumerate(evidence_frames):
        probes = np.stack(probe_frames[n], 1) if sensors else None
        out.append(Recording(stacked, truth, lanes, np.asarray(times), incidents, interval_s, probes, split,
                             evidence_by_sensors(np.stack(frames, 1))))
    for b in range(len(seeds)):
        for _, n, active in scored_incidents(out[0], b):
            truth[b, :, n] |= active
    return out


def evidence(readings: np.ndarray) -> np.ndarray:
    """``[..., T, N]``: readings that show a closure's signature — a vehicle stands in the 50 m
    before the stop line (``seg0`` and ``halting`` at least 1) while the lane had green in the
    interval. Without it a closed lane reads exactly like an empty lane or a red light."""
    r = readings
    return (r[..., COLUMN["seg0"]] >= 1) & (r[..., COLUMN["halting"]] >= 1) & (r[..., COLUMN["green"]] > 0)


@dataclass(frozen=True)
class IncidentTimes:
    """One scored closure: when it started, and the reading times (s) of its first evidence and
    of the first true alarm on it (None: none while it was active)."""

    copy: int
    lane: int  # global lane id
    start: int
    evidence_at: float | None
    detected_at: float | None

    @property
    def to_evidence(self) -> float | None:
        return None if self.evidence_at is None else self.evidence_at - self.start

    @property
    def to_detect(self) -> float | None:
        return None if self.detected_at is None else self.detected_at - self.start

    @property
    def from_evidence(self) -> float | None:
        """Evidence -> alarm, for an incident detected at or after its evidence."""
        if self.detected_at is None or self.evidence_at is None or self.detected_at < self.evidence_at:
            return None
        return self.detected_at - self.evidence_at


def _onsets(alarms: np.ndarray) -> np.ndarray:
    alarms = np.asarray(alarms, dtype=bool)
    return alarms & ~np.concatenate([np.zeros_like(alarms[..., :1, :]), alarms[..., :-1, :]], -2)


def scored_incidents(recording: Recording, copy: int):
    """(incident, its column, its active readings ``[T]``) for the closures on monitored lanes
    of copy `copy`: what is detected (the reading at time t covers the interval (t - interval, t])."""
    column = {int(lane): n for n, lane in enumerate(recording.lanes)}
    times = recording.times
    for incident in recording.incidents[copy]:
        n = column.get(incident.lane)
        if n is not None and incident.factor == 0.0:  # closures are what is detected
            yield incident, n, (times > incident.start) & (times - recording.interval_s < incident.end)


def incident_times(recording: Recording, alarms: np.ndarray, copy: int, sensors: str = "lane") -> list[IncidentTimes]:
    """Per scored closure of copy `copy`, its `IncidentTimes` under `alarms` ``[T, N]`` (first
    evidence: to the sensor set `sensors`, `envs.incidents.evidence`)."""
    true_onset = _onsets(alarms) & recording.truth[copy]
    seen = recording.seen(sensors)[copy]
    times, out = recording.times, []
    # a report detects one closure: closures on one lane overlapping in time (lanes drawn again once
    # the count passes the lanes) take the reports in the order they started; one counted for all
    scored = sorted(scored_incidents(recording, copy), key=lambda item: item[0].start)
    for incident, n, active in scored:
        first_evidence = np.flatnonzero(active & seen[:, n])
        hits = np.flatnonzero(true_onset[:, n] & active)
        if hits.size:
            true_onset[hits[0], n] = False  # used up
        out.append(IncidentTimes(copy, incident.lane, incident.start,
                                 float(times[first_evidence[0]]) if first_evidence.size else None,
                                 float(times[hits[0]]) if hits.size else None))
    return out


def oracle_alarms(recording: Recording, sensors: str = "lane") -> np.ndarray:
    """``[B, T, N]`` the ideal evidence-based classifier: an alarm on each closed lane from its
    first evidence reading to the closure's end, no other alarm. Its mean time to detect is the
    oracle floor."""
    alarms = np.zeros(recording.truth.shape, dtype=bool)
    for b in range(alarms.shape[0]):
        seen = recording.seen(sensors)[b]
        for _, n, active in scored_incidents(recording, b):
            alarms[b, :, n] |= active & np.maximum.accumulate(active & seen[:, n])
    return alarms


@dataclass(frozen=True)
class CopyTally:
    """One copy's part of the scores, so that scores over any multiset of copies (bootstrap
    resamples) add up without rescanning readings."""

    alarms: int
    true_alarms: int
    incidents: tuple[IncidentTimes, ...]
    seconds: float  # recorded time


def tally(recording: Recording, alarms: np.ndarray, copy: int, sensors: str = "lane") -> CopyTally:
    """Copy `copy`'s tally of `alarms` ``[T, N]`` (see the module doc; evidence to `sensors`)."""
    onset = _onsets(alarms)
    return CopyTally(int(onset.sum()), int((onset & recording.truth[copy]).sum()),
                     tuple(incident_times(recording, alarms, copy, sensors)), float(recording.times[-1]))


@dataclass(frozen=True)
class Scores:
    alarms: int
    true_alarms: int
    incidents: int
    detected: int
    with_evidence: int  # incidents whose closure showed evidence while active
    precision: float
    recall: float
    false_alarms_per_hour: float
    mean_time_to_detect_s: float
    mean_time_from_evidence_s: float
    oracle_floor_s: float  # mean start -> first evidence: no classifier reading these data does better
    # mean (time to detect - the floor's) over the closures both detected and with evidence: the two
    # means above are over different closures (found / with evidence), so a detector that misses the
    # slow ones can show a mean under the floor without being faster on any closure
    mean_gap_to_floor_s: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def combine(tallies: list[CopyTally]) -> Scores:
    """The scores of copies from their tallies (a copy listed twice counts twice)."""
    count = sum(t.alarms for t in tallies)
    true = sum(t.true_alarms for t in tallies)
    incidents = [i for t in tallies for i in t.incidents]

    def known(values):
        return [v for v in values if v is not None]

    to_detect = known(i.to_detect for i in incidents)
    to_evidence = known(i.to_evidence for i in incidents)
    hours = sum(t.seconds for t in tallies) / 3600.0
    return Scores(
        alarms=count, true_alarms=true, incidents=len(incidents), detected=len(to_detect),
        with_evidence=len(to_evidence),
        precision=true / count if count else float("nan"),
        recall=len(to_detect) / len(incidents) if incidents else float("nan"),
        false_alarms_per_hour=(count - true) / hours,
        mean_time_to_detect_s=_mean(to_detect),
        mean_time_from_evidence_s=_mean(known(i.from_evidence for i in incidents)),
        oracle_floor_s=_mean(to_evidence),
        mean_gap_to_floor_s=_mean([i.detected_at - i.evidence_at for i in incidents
                                   if i.detected_at is not None and i.evidence_at is not None]),
    )


def score(recording: Recording, alarms: np.ndarray, sensors: str = "lane") -> Scores:
    """The benchmark's figures for `alarms` ``[B, T, N]`` (see the module doc)."""
    return combine([tally(recording, alarms[b], b, sensors) for b in range(recording.readings.shape[0])])


def subset(recording: Recording, copies: np.ndarray) -> Recording:
    """The recording of some copies (for bootstrap intervals over copies)."""
    return Recording(recording.readings[copies], recording.truth[copies], recording.lanes, recording.times,
                     [recording.incidents[c] for c in copies], recording.interval_s,
                     None if recording.probes is None else recording.probes[copies], recording.split,
                     None if recording.evidence is None else {k: v[copies] for k, v in recording.evidence.items()})


__all__ = ["COLUMN", "PROBE_COLUMN", "PROBE_READINGS", "READINGS", "SENSORS", "CopyTally", "IncidentTimes", "Recording",
           "Scores", "combine", "evidence", "incident_times", "monitored_lanes", "oracle_alarms", "record",
           "record_sweep", "score", "scored_incidents", "subset", "tally"]
