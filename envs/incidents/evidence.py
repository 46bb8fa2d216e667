"""A closure's first *evidence*, per sensor set: the readings from which an ideal observer of
those sensors could tell the closure apart from the signal's doing. The ideal detector with the
same sensors (`envs.incidents.detection.oracle_alarms`) alarms there: the floor of the time to
detect for any detector reading them, up to lucky guesses.

The exact moment a lane's readings first differ from those it would show without the closure
would need a second, incident-free run of every copy; instead the definition is the first
reading in which a vehicle *stands behind the blockage* in a way the signal does not explain,
as each sensor set sees it (the engine's ground truth says which vehicle stands where; the
sensors must show it):

- **lane detectors** (``"lane"``): for a closure at the stop line, as before: a vehicle stands
  in the 50 m before the closed stop line (``seg0`` and ``halting`` >= 1) while the lane had
  green in the interval. For a closure at a place (mid-lane): the queue's head stands — a
  vehicle on the lane, halted (< the halting speed), whose front is at most `QUEUE_HEAD_M`
  behind the blockage (the first vehicle stops at the blockage minus its 2.5 m gap) — so the
  lane's ``halting`` count includes a vehicle held by the blockage, and the signal does not
  explain it: the lane had green in the interval, or the blockage lies beyond the first
  `SEGMENT_M` before the stop line (a red light holds its queue from the stop line back; a
  vehicle standing with the stretch ahead of it free is not queuing for it).
- **probes** (``"probe"``): the latest probe report (what a probe detector reads at the
  reading) has a halted probe (reported speed < 0.1 m/s) whose true front is at or behind the
  blockage (the stop line for a stop-line closure), under the same signal condition: green in
  the interval or a blockage beyond the first `SEGMENT_M`.
- **both** (``"fused"``): either.

A reading's evidence only counts while the closure is active (`scored_incidents`).
"""

from __future__ import annotations

import numpy as np
import torch

from envs.engine.ops import FAR
from envs.engine.readings import SEGMENT_M
from envs.incidents.demand_perturbations import Incident
from envs.incidents.probes import HALTED_SPEED, ProbeSensor, slot_reports
from envs.scenario.network import Network

SENSORS = ("lane", "probe", "fused")
QUEUE_HEAD_M = 10.0  # a halted vehicle this close behind a blockage heads its queue


class ClosurePlaces:
    """The copies' closures as tensors ``[B, K]``; `at(t)` gives per lane ``[B, L+1]`` the place
    (metres from the lane's start) of the active closure nearest the lane's start (the stop
    line, i.e. the lane's length, for a stop-line closure; `FAR` without one) and whether it is
    at a place."""

    def __init__(self, network: Network, incidents: list[list[Incident]]) -> None:
        self.network = network
        width = max(1, max((len(i) for i in incidents), default=0))
        lane = np.full((len(incidents), width), network.num_lanes, dtype=np.int64)
        start = np.zeros(lane.shape, dtype=np.int64)
        end = np.zeros(lane.shape, dtype=np.int64)
        place = np.full(lane.shape, FAR, dtype=np.float32)
        placed = np.zeros(lane.shape, dtype=bool)
        length = network.lane_length.cpu().numpy()
        for b, copy in enumerate(incidents):
            for k, incident in enumerate(copy):
                if incident.factor != 0.0:  # closures only: what is detected
                    continue
                lane[b, k], start[b, k], end[b, k] = incident.lane, incident.start, incident.end
                at_place = incident.position is not None and incident.position >= 0
                place[b, k] = incident.position if at_place else length[incident.lane]
                placed[b, k] = at_place
        device = network.device
        self.lane, self.start, self.end = (torch.as_tensor(x, device=device) for x in (lane, start, end))
        self.place, self.placed = torch.as_tensor(place, device=device), torch.as_tensor(placed, device=device)

    def at(self, t: torch.Tensor, window: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The closures active during some step of the `window` seconds up to clock `t` (a
        reading covers its interval, as the ground truth: `scored_incidents`)."""
        now = t.unsqueeze(1)
        active = (self.start < now) & (now - window < self.end) & (self.place < FAR)
        lanes = self.network.num_lanes
        lane = torch.where(active, self.lane, lanes)
        place = torch.full((lane.shape[0], lanes + 1), FAR, device=lane.device).scatter_reduce(
            1, lane, torch.where(active, self.place, FAR), reduce="amin")
        placed = torch.zeros(place.shape, dtype=torch.bool, device=lane.device).scatter_reduce(
            1, lane, active & self.placed, reduce="amax")
        return place, placed


def _per_lane_any(lanes: int, lane: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """``[B, L+1]``: lanes with a vehicle of ``[B, S]`` `hit` on them (`lane` -1 = none)."""
    column = torch.where(hit & (lane >= 0), lane, lanes)
    out = torch.zeros(lane.shape[0], lanes + 1, device=lane.device)
    return out.scatter_add(1, column, hit.to(torch.float32)) > 0


class EvidenceRecorder:
    """Per reading ``[B, N, 2]`` (lane, probe) evidence of the monitored lanes (module doc);
    `observe_probes` after each step where a `ProbeSensor` observed keeps the latest report's
    probe part."""

    def __init__(self, network: Network, incidents: list[list[Incident]], lanes: torch.Tensor,
                 halting_speed: float, interval_s: int) -> None:
        self.network, self.lanes, self.halting_speed, self.interval_s = network, lanes, halting_speed, interval_s
        self.places = ClosurePlaces(network, incidents)
        self.probe_behind = torch.zeros(len(incidents), network.num_lanes + 1, dtype=torch.bool,
                                        device=network.device)

    def _slot_place(self, state, lane: torch.Tensor, window: int = 1) -> torch.Tensor:
        place, _ = self.places.at(state.t, window)
        return torch.gather(place, 1, torch.where(lane >= 0, lane, self.network.num_lanes))

    def observe_probes(self, sensor: ProbeSensor, state) -> None:
        if not sensor.active:
            return
        due = state.t % sensor.spec.interval_s == 0
        if not bool(due.any()):
            return
        slots = state.veh_lane.shape[1] - 1
        reports = slot_reports(sensor.spec, sensor.key, state)
        lane = state.veh_lane[:, :slots]
        place = self._slot_place(state, lane)  # a closure active at the report itself: a halted probe on a
        # lane without one (FAR) is queuing for the light, and a later reading must not credit it to a
        # closure that began after the report
        behind = (reports.valid & (reports.speed < HALTED_SPEED) & (place < FAR) & (state.veh_pos[:, :slots] <= place))
        now = _per_lane_any(self.network.num_lanes, lane, behind)
        self.probe_behind = torch.where(due.unsqueeze(1), now, self.probe_behind)

    def frame(self, state, green_s: torch.Tensor, seg0: torch.Tensor, halting: torch.Tensor) -> torch.Tensor:
        """``[B, N, 2]`` bool at a reading: `green_s`, `seg0`, `halting` ``[B, L]`` are the
        interval's readings of every lane."""
        lanes = self.network.num_lanes
        place, placed = self.places.at(state.t, self.interval_s)
        slots = state.veh_lane.shape[1] - 1
        lane = state.veh_lane[:, :slots]
        pos = state.veh_pos[:, :slots]
        slot_place = self._slot_place(state, lane, self.interval_s)
        head = ((lane >= 0) & (state.veh_speed[:, :slots] < self.halting_speed) & (pos <= slot_place)
                & (slot_place - pos <= QUEUE_HEAD_M))
        head_stands = _per_lane_any(lanes, lane, head)[:, :lanes]
        length = self.network.lane_length.unsqueeze(0)
        unexplained = (green_s > 0) | ((length - place[:, :lanes]) > SEGMENT_M)
        active = place[:, :lanes] < FAR
        placed = placed[:, :lanes]
        stop_line = active & ~placed & (seg0 >= 1) & (halting >= 1) & (green_s > 0)
        lane_seen = stop_line | (placed & head_stands & unexplained)
        probe_seen = active & self.probe_behind[:, :lanes] & unexplained
        return torch.stack([lane_seen, probe_seen], -1)[:, self.lanes]


def evidence_by_sensors(frames: np.ndarray) -> dict[str, np.ndarray]:
    """``{sensors: [B, T, N]}`` from the recorded ``[B, T, N, 2]`` (lane, probe) frames."""
    return {"lane": frames[..., 0], "probe": frames[..., 1], "fused": frames[..., 0] | frames[..., 1]}


__all__ = ["ClosurePlaces", "EvidenceRecorder", "QUEUE_HEAD_M", "SENSORS", "evidence_by_sensors"]
