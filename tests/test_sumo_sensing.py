"""What SUMO's max pressure (benchmarks/sumo_max_pressure.py) counts on a stub lane: with
``sensing="road"`` the stretch of road gridlight's lengthened copy of it covers, walked back
(incoming) or on (outgoing) through internal and neighbouring lanes; with ``"lane"`` SUMO's lane
as it is; with ``"approach"`` the lane plus the weighted lanes of its approach (gridlight's
`approach_map`, translated to SUMO's lane ids by `approach_lanes`). A stand-in for TraCI holds a
hand-made layout, so SUMO itself is not needed."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from sumo_max_pressure import RoadSensors, approach_lanes  # noqa: E402

from envs.scenario import load_scenario  # noqa: E402
from envs.scenario.registry import sumo_folder  # noqa: E402
from envs.scenario.sumo.config import find_config, read_config  # noqa: E402
from envs.scenario.sumo.net_reader import read_net  # noqa: E402

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


def test_approach_sensing_adds_the_weighted_approach_lanes():
    # S_0's approach: A's vehicles spread over S's one lane; O_0's: B's over O's one lane
    approaches = {("S_0", True): [("A_0", 1.0)], ("O_0", False): [("B_0", 0.5)]}
    sensors = RoadSensors(fake_traci(), "approach", {}, approaches)
    assert sensors.count("S_0", incoming=True) == 1 + 4
    assert sensors.count("O_0", incoming=False) == 1 + 0.5 * 3
    assert sensors.count("S_0", incoming=False) == 1  # an outgoing count of S has no approach
    assert sensors.count("A_0", incoming=True) == 4


def test_approach_lanes_name_sumos_lanes(datasets_dir):
    # ingolstadt7: a light's incoming stub 10425609#1 (lengthened to 14.9 m) is fed
    # through pass-through nodes by 10425609#0 (3 passenger lanes) and 201956811#0 (1; most of
    # its trips end on it, which a detector cannot tell): its 3
    # passenger lanes each add a third of those 4 lanes' vehicles
    config = read_config(find_config(sumo_folder("resco_ingolstadt7", datasets_dir)))
    scenario = load_scenario("resco_ingolstadt7", data_dir=datasets_dir)
    found = approach_lanes(scenario.network, read_net(config.net_file))
    feeding = {"10425609#0_1", "10425609#0_2", "10425609#0_3", "201956811#0_1"}
    for lane in ("10425609#1_1", "10425609#1_2", "10425609#1_3"):
        assert {other for other, _ in found[(lane, True)]} == feeding
        assert [weight for _, weight in found[(lane, True)]] == pytest.approx([1 / 3] * 4)
    assert ("10425609#1_0", True) not in found  # SUMO's lane 0 there is not a passenger lane
