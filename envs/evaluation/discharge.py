"""The two rates that set an approach's capacity, measured as traffic engineers measure them: how
fast a standing queue discharges over a green stop line (the saturation flow) and how fast new
vehicles get onto an empty road. Held to figures in the engine's tests and compared with SUMO's
by benchmarks/sumo_discharge.py."""

from __future__ import annotations

import numpy as np
import torch

from envs.engine import Simulator
from envs.scenario import Scenario, scenario_from_dicts
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet

# the generated 1x1 grid: the west entry road, the east exit road, and the phases that show the
# east-west and north-south straight movements green (the generator's phase order)
WEST_IN, EAST_OUT = "road_0_1_0", "road_1_1_0"
STRAIGHT_EW, STRAIGHT_NS = 0, 1
# HCM practice: the first vehicles of a queue start up slower; time from the 4th to the 64th
FIRST_TIMED, LAST_TIMED = 4, 64


def single_route(route: list[str], departures: list[int], *, road_length: float = 300.0,
                 vehicle: dict | None = None) -> Scenario:
    """A 1x1 grid with one vehicle per listed departure step on `route`."""
    roadnet = grid_roadnet(1, 1, road_length=road_length)
    block = dict(vehicle or DEFAULT_VEHICLE)
    flow = [{"vehicle": block, "route": list(route), "interval": 1.0, "startTime": t, "endTime": t}
            for t in departures]
    return scenario_from_dicts(roadnet, flow, name="single_route")


def saturation_flow(vehicle: dict | None = None, red_s: int = 600) -> float:
    """veh/h over the west approach's stop line: a queue builds during `red_s` of red (one trip a
    second on an 800 m road, ~100 vehicles), then the light turns green and stays green."""
    scenario = single_route([WEST_IN, EAST_OUT], list(range(red_s + 100)), road_length=800.0,
                            vehicle=vehicle)
    sim = Simulator(scenario.network, scenario.demand(1))
    downstream = scenario.network.road_lanes[scenario.network.road_ids.index(EAST_OUT)]
    crossed = []
    for k in range(red_s + 300):
        sim.step(torch.tensor([[STRAIGHT_NS if k < red_s else STRAIGHT_EW]]))
        done = int((sim.state.trip_finish[:, :-1] >= 0).sum())  # last column: the scratch trip
        crossed.append(int(sim.state.lane_count[0, downstream].sum()) + done)
    return timed_rate(np.array(crossed))


def entry_rate(vehicle: dict | None = None, seconds: int = 120) -> float:
    """veh/h that get onto the west entry road while trips wait for it (two departures a second,
    more than any road admits), its light green throughout."""
    scenario = single_route([WEST_IN, EAST_OUT], [k // 2 for k in range(2 * seconds)],
                            road_length=800.0, vehicle=vehicle)
    sim = Simulator(scenario.network, scenario.demand(1))
    for _ in range(seconds):
        sim.step(torch.tensor([[STRAIGHT_EW]]))
    return int((sim.state.trip_enter[0, :-1] >= 0).sum()) / seconds * 3600


def timed_rate(crossed: np.ndarray) -> float:
    """veh/h between the FIRST_TIMED-th and LAST_TIMED-th crossing of a cumulative count."""
    first = int(np.argmax(crossed >= FIRST_TIMED))
    last = int(np.argmax(crossed >= LAST_TIMED))
    return (LAST_TIMED - FIRST_TIMED) / (last - first) * 3600
