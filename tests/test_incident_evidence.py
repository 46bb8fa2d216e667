"""A mid-lane closure's first evidence (envs/incidents/evidence.py), on hand-placed vehicles: to
the lane detectors, the queue's head standing at most `QUEUE_HEAD_M` behind the blockage where
the signal does not explain it; to the probes, a halted probe behind the blockage under the
same signal condition. The recorded runs (tests/test_detection_probes.py) check the definitions'
consequences; these check each condition on its own."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from envs.engine.readings import SEGMENT_M
from envs.incidents.evidence import QUEUE_HEAD_M, EvidenceRecorder
from envs.incidents.perturbations import Incident
from envs.incidents.probes import ProbeSensor, ProbeSpec
from tests.scenarios import small_grid

NETWORK = small_grid(1, 1, road_length=300.0).network
LANE = 1  # a 300 m lane that ends at the signal
LENGTH = float(NETWORK.lane_length[LANE])
HALTED, MOVING = 0.0, 8.0  # m/s
FAR_BACK = 100.0  # a blockage 200 m before the stop line: no red light holds a queue there
NEAR_LINE = LENGTH - 30.0  # one inside the first segment, where a red light's queue stands


def _state(t: int, vehicles: list[tuple[float, float]]) -> SimpleNamespace:
    """One copy at clock `t` with `vehicles` (position from the lane's start, speed) on LANE;
    trips 0, 1, ...; the last slot free, as the engine's."""
    slots = len(vehicles) + 1
    lane = torch.full((1, slots), -1, dtype=torch.int32)
    trip = torch.full((1, slots), -1, dtype=torch.int32)
    pos, speed = torch.zeros(1, slots), torch.zeros(1, slots)
    for s, (p, v) in enumerate(vehicles):
        lane[0, s], trip[0, s], pos[0, s], speed[0, s] = LANE, s, p, v
    return SimpleNamespace(t=torch.tensor([t]), veh_lane=lane, veh_pos=pos, veh_speed=speed, veh_trip=trip)


def _evidence(place: float, vehicles: list[tuple[float, float]], green_s: float) -> tuple[bool, bool]:
    """(lane, probe) evidence at a reading (t = 100 s, every vehicle a probe) of a closure of
    LANE at `place`, active since t = 0, with `vehicles` on it and `green_s` s of green."""
    recorder = EvidenceRecorder(NETWORK, [[Incident(LANE, 0, 1000, 0.0, place)]], torch.tensor([LANE]), 0.1, 10)
    state = _state(100, vehicles)
    sensor = ProbeSensor(ProbeSpec(p=1.0), NETWORK, 1)
    recorder.observe_probes(sensor, state)
    lanes = NETWORK.num_lanes
    green, seg0, halting = torch.zeros(1, lanes), torch.zeros(1, lanes), torch.zeros(1, lanes)
    green[0, LANE] = green_s
    seg0[0, LANE] = sum(p >= LENGTH - SEGMENT_M for p, _ in vehicles)
    halting[0, LANE] = sum(v < 0.1 for _, v in vehicles)
    lane_seen, probe_seen = recorder.frame(state, green, seg0, halting)[0, 0].tolist()
    return lane_seen, probe_seen


def test_lane_evidence_of_a_mid_lane_closure_is_its_queue_head_standing_unexplained_by_the_signal():
    head = (FAR_BACK - 2.5, HALTED)  # the first vehicle stops its minimum gap short of the blockage
    # far from the stop line a red light explains no standing vehicle: evidence at red too
    assert _evidence(FAR_BACK, [head], green_s=0.0)[0]
    # a vehicle halted further back than QUEUE_HEAD_M is not the queue's head (it may be slowing
    # into traffic): no evidence yet, even with green
    behind = (FAR_BACK - QUEUE_HEAD_M - 20.0, HALTED)
    assert not _evidence(FAR_BACK, [behind], green_s=10.0)[0]
    assert not _evidence(FAR_BACK, [(FAR_BACK - 2.5, MOVING)], green_s=10.0)[0]  # not halted
    # a vehicle standing at the stop line, past the blockage, is a queue the signal holds: the
    # stop-line definition (seg0, halting, green) is for stop-line closures only
    assert not _evidence(FAR_BACK, [(LENGTH - 5.0, HALTED)], green_s=10.0)[0]
    # within the first segment a red light explains the queue's head; green does not
    near_head = (NEAR_LINE - 2.5, HALTED)
    assert not _evidence(NEAR_LINE, [near_head], green_s=0.0)[0]
    assert _evidence(NEAR_LINE, [near_head], green_s=10.0)[0]


def test_probe_evidence_is_a_halted_probe_behind_the_blockage_under_the_same_signal_condition():
    # a halted probe anywhere behind the blockage (not only at its head) is probe evidence ...
    assert _evidence(FAR_BACK, [(FAR_BACK - 40.0, HALTED)], green_s=0.0)[1]
    # ... but not one past it (it stands in the queue at the stop line), nor a moving one
    assert not _evidence(FAR_BACK, [(LENGTH - 5.0, HALTED)], green_s=10.0)[1]
    assert not _evidence(FAR_BACK, [(FAR_BACK - 40.0, MOVING)], green_s=10.0)[1]
    # near the stop line a red light explains a halted probe; green does not
    assert not _evidence(NEAR_LINE, [(NEAR_LINE - 20.0, HALTED)], green_s=0.0)[1]
    assert _evidence(NEAR_LINE, [(NEAR_LINE - 20.0, HALTED)], green_s=10.0)[1]
