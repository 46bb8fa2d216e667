"""Incident detection from detector data: the recording, the detectors' interface, the scores.

The task: lanes get closed (envs/perturbations.py incidents) while a signal controller runs;
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
                (not a detector, and not an engine internal; detectors that should not use
                it simply ignore the column)
==============  =============================================================================

and the ground truth: which (lane, reading) has an active incident. A detector maps the
readings of one copy ``[T, N, F]`` to alarms ``[T, N]`` (bool), reading only the past at each
step. `score` turns alarms into the benchmark's figures:

- an *alarm* is an onset (a lane's alarm switching on); it is *true* if an incident is active on
  that lane at that time, else a false alarm;
- precision = true alarms / alarms; recall = incidents with a true alarm / incidents;
- false alarms per hour, per network (copy);
- mean time to detect = mean over detected incidents of first true alarm − incident start;
- and, to separate what a detector could have known: the mean time from the incident's first
  *evidence* — the first reading after its start in which a vehicle stands at the closed lane's
  stop line while the lane has green — to the first true alarm. Before that, a closed lane looks
  exactly like an empty lane or a red light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from envs.engine import EngineParams, Simulator, signal_state
from envs.features import segment_counts
from envs.metrics import lane_halting
from envs.perturbations import Incident, Perturbation, sample_incidents, with_incidents
from envs.scenario import Scenario
from envs.scenario.splits import DemandSpec, sample_trips

READINGS = ("count", "halting", "seg0", "seg1", "seg2", "speed", "outflow", "green")


@dataclass
class Recording:
    """Detector data of B copies: ``readings [B, T, N, F]``, ``truth [B, T, N]`` (bool), the
    monitored lanes (global ids ``[N]``), reading times ``[T]`` (s) and each copy's incidents."""

    readings: np.ndarray
    truth: np.ndarray
    lanes: np.ndarray
    times: np.ndarray
    incidents: list[list[Incident]]
    interval_s: int


def monitored_lanes(scenario: Scenario) -> np.ndarray:
    network = scenario.network
    ends = network.road_end[network.lane_road].cpu().numpy()
    return np.flatnonzero(ends >= 0)


def _lane_movements(network) -> torch.Tensor:
    """``[L, M]``: movement m starts from lane l (the lane feeds it)."""
    lanes = torch.arange(network.num_lanes, device=network.lane_road.device)
    road, index = network.lane_road[lanes], network.lane_index[lanes]
    starts = network.movement_start_road.unsqueeze(0) == road.unsqueeze(1)  # [L, M]
    from_lane = network.movement_from_lane[:, index].T  # [L, M]: lane index e of its road in m
    return starts & from_lane & network.movement_valid.unsqueeze(0)


def record(
    scenario: Scenario, controller, perturbation: Perturbation, split: str, seeds: list[int],
    steps: int = 3600, interval_s: int = 10, demand: DemandSpec | None = None, progress=None,
    params: EngineParams | None = None,
) -> Recording:
    """Run `controller` on copies with incidents (copy k: demand and incidents of seed
    ``seeds[k]`` of `split`) and record the detector readings (see the module doc)."""
    network = scenario.network
    demand = demand or DemandSpec("poisson")
    trips = [sample_trips(scenario, demand, split, s, horizon=steps) for s in seeds]
    incidents = [sample_incidents(perturbation, network, split, s) for s in seeds]
    sim = Simulator(network, with_incidents(scenario.demand(trips=trips), incidents), params)
    controller.reset(sim)
    lanes = monitored_lanes(scenario)
    lanes_t = torch.as_tensor(lanes, device=sim.device)
    num_lanes = network.num_lanes
    outflow = torch.zeros(sim.batch_size, num_lanes + 1, device=sim.device)
    green_s = torch.zeros(sim.batch_size, num_lanes, device=sim.device)
    feeds = _lane_movements(network).to(torch.float32)  # [L, M]
    readings, times = [], []
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
            times.append(k + 1)
            outflow.zero_()
            green_s.zero_()
        if progress is not None:
            progress(1)
    times_a = np.asarray(times)
    truth = np.zeros((len(seeds), len(times), len(lanes)), dtype=bool)
    column = {int(lane): n for n, lane in enumerate(lanes)}
    for b, copy in enumerate(incidents):
        for incident in copy:
            n = column.get(incident.lane)
            if n is not None and incident.factor == 0.0:  # closures are what is detected
                # the reading at time t covers the interval (t - interval, t]
                truth[b, :, n] |= (times_a > incident.start) & (times_a - interval_s < incident.end)
    return Recording(np.stack(readings, 1), truth, lanes, times_a, incidents, interval_s)


@dataclass(frozen=True)
class Scores:
    alarms: int
    true_alarms: int
    incidents: int
    detected: int
    precision: float
    recall: float
    false_alarms_per_hour: float
    mean_time_to_detect_s: float
    mean_time_from_evidence_s: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def score(recording: Recording, alarms: np.ndarray) -> Scores:
    """The benchmark's figures for `alarms` ``[B, T, N]`` (see the module doc)."""
    alarms = np.asarray(alarms, dtype=bool)
    onset = alarms & ~np.concatenate([np.zeros_like(alarms[:, :1]), alarms[:, :-1]], 1)
    true_onset = onset & recording.truth
    column = {int(lane): n for n, lane in enumerate(recording.lanes)}
    delays, from_evidence, total = [], [], 0
    seg0, green = READINGS.index("seg0"), READINGS.index("green")
    for b, copy in enumerate(recording.incidents):
        for incident in copy:
            n = column.get(incident.lane)
            if n is None or incident.factor != 0.0:
                continue
            total += 1
            after = recording.times > incident.start
            hits = np.flatnonzero(true_onset[b, :, n] & after)
            if hits.size:
                delays.append(float(recording.times[hits[0]] - incident.start))
                lane = recording.readings[b, :, n]
                evidence = np.flatnonzero(after & (lane[:, seg0] >= 1) & (lane[:, green] > 0))
                if evidence.size and evidence[0] <= hits[0]:
                    from_evidence.append(float(recording.times[hits[0]] - recording.times[evidence[0]]))
    count, true = int(onset.sum()), int(true_onset.sum())
    hours = recording.readings.shape[0] * recording.times[-1] / 3600.0
    return Scores(
        alarms=count, true_alarms=true, incidents=total, detected=len(delays),
        precision=true / count if count else float("nan"),
        recall=len(delays) / total if total else float("nan"),
        false_alarms_per_hour=(count - true) / hours,
        mean_time_to_detect_s=float(np.mean(delays)) if delays else float("nan"),
        mean_time_from_evidence_s=float(np.mean(from_evidence)) if from_evidence else float("nan"),
    )


def subset(recording: Recording, copies: np.ndarray) -> Recording:
    """The recording of some copies (for bootstrap intervals over copies)."""
    return Recording(recording.readings[copies], recording.truth[copies], recording.lanes, recording.times,
                     [recording.incidents[c] for c in copies], recording.interval_s)


__all__ = ["READINGS", "Recording", "Scores", "monitored_lanes", "record", "score", "subset"]
