"""What SUMO's max pressure (benchmarks/sumo_max_pressure.py) counts on a stub lane: with
``sensing="road"`` the stretch of road gridlight's lengthened copy of it covers, walked back
(incoming) or on (outgoing) through internal and neighbouring lanes; with ``"lane"`` SUMO's lane
as it is. A stand-in for TraCI holds a hand-made layout, so SUMO itself is not needed."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from sumo_max_pressure import RoadSensors  # noqa: E402

# A (100 m) -> :n_0_0 (2 m) -> S (0.2 m, the light's incoming stub) ... O (0.2 m, an outgoing
# stub) -> :m_0_0 (1 m) -> B (50 m); vehicle positions are their fronts, metres from the lane start
LENGTHS = {"A_0": 100.0, ":n_0_0": 2.0, "S_0": 0.2, "O_0": 0.2, ":m_0_0": 1.0, "B_0": 50.0}
LINKS = {"A_0": [("S_0", ":n_0_0")], "O_0": [("B_0", ":m_0_0")]}
VEHICLES = {"A_0": {"a1": 99.0, "a2": 90.0, "a3": 85.0, "a4": 20.0}, ":n_0_0": {"n1": 1.0},
            "S_0": {"s1": 0.1}, "O_0": {"o1": 0.15}, ":m_0_0": {},
            "B_0": {"b1": 3.0, "b2": 13.0, "b3": 20.0}}
GRIDLIGHT_LENGTHS = {"A": 100.0, "S": 14.9, "O": 14.9, "B": 50.0}  # one step at 13.9 m/s + 1 m


def fake_traci() -> SimpleNamespace:
    position = {v: p for lane in VEHICLES.values() for v, p in lane.items()}
    lane = SimpleNamespace(
        getIDList=lambda: list(LENGTHS),
        getLinks=lambda lane_id, extended=True: [(to, True, True, False, via, "G", "s", 0.0)
                                                 for to, via in LINKS.get(lane_id, [])],
        getLength=LENGTHS.__getitem__,
        getLastStepVehicleIDs=lambda lane_id: list(VEHICLES[lane_id]),
        getLastStepVehicleNumber=lambda lane_id: len(VEHICLES[lane_id]),
    )
    return SimpleNamespace(lane=lane, vehicle=SimpleNamespace(getLanePosition=position.__getitem__))


def test_road_sensing_reads_a_stub_over_gridlights_length():
    sensors = RoadSensors(fake_traci(), "road", GRIDLIGHT_LENGTHS)
    # upstream of S's stop line, 14.9 m: S (0.2 m) + the internal lane (2 m) + A's last 12.7 m
    assert sensors.count("S_0", incoming=True) == 1 + 1 + 2  # s1, n1, a1 (99 m), a2 (90 m)
    # downstream from O's start: O + the internal lane (1 m) + B's first 13.7 m
    assert sensors.count("O_0", incoming=False) == 1 + 0 + 2  # o1, b1 (3 m), b2 (13 m)
    # a lane as long as gridlight's road counts itself only
    assert sensors.count("A_0", incoming=True) == 4


def test_lane_sensing_reads_sumos_lanes():
    sensors = RoadSensors(fake_traci(), "lane", GRIDLIGHT_LENGTHS)
    assert (sensors.count("S_0", True), sensors.count("O_0", False)) == (1, 1)


def test_an_unknown_sensing_is_refused():
    with pytest.raises(ValueError, match="sensing='detector'"):
        RoadSensors(fake_traci(), "detector", GRIDLIGHT_LENGTHS)
