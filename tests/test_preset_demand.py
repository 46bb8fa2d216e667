"""The generated presets build the demand they were calibrated with: the rates, peak and grid size
of presets.py's calibration notes, the vehicle of docs/engine.md (headwayTime 1.45 s), the
30 s per phase plan of docs/training.md, 300 m roads, the seed; and the vehicles each preset
generates agree with the rates its info records (a Poisson count within 5 sigma)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.scenario.demand_generators import peak_rate_profile, uniform_demand
from envs.scenario.grid_roadnet import grid_roadnet
from envs.scenario.presets import PRESETS
from tests.roadnet_dicts import entry_and_exit_roads, road_length, signalised_intersections

# presets.py's calibration notes (measured against the engine; changing one changes every figure)
CALIBRATED = {
    "grid_1x1": {"rows": 1, "cols": 1, "demand": "uniform", "rate_per_origin": 500.0},
    "grid_4x4": {"rows": 4, "cols": 4, "demand": "uniform", "rate_per_origin": 500.0},
    "grid_6x6": {"rows": 6, "cols": 6, "demand": "uniform", "rate_per_origin": 500.0},
    "grid_4x4_peak": {"rows": 4, "cols": 4, "demand": "peak", "base_rate": 150.0, "peak_rate": 600.0,
                      "peak_times": [1800.0], "peak_width_s": 600.0},
    # "16 columns x 8 rows = 128 signals, the size of the Hangzhou City Brain pilot"
    "grid_16x8": {"rows": 8, "cols": 16, "demand": "peak", "base_rate": 150.0, "peak_rate": 500.0,
                  "peak_times": [1800.0], "peak_width_s": 600.0},
}


@pytest.fixture(scope="module", params=sorted(PRESETS))
def preset(request):
    roadnet, flow, info = PRESETS[request.param](seed=0)
    return request.param, roadnet, flow, info


def test_every_preset_is_covered() -> None:
    assert sorted(CALIBRATED) == sorted(PRESETS)


def _expected_vehicles(info: dict, origins: int) -> float:
    if info["demand"] == "uniform":
        return origins * info["rate_per_origin"] * info["horizon"] / 3600
    profile = peak_rate_profile(info["horizon"], info["base_rate"], info["peak_rate"], info["peak_times"],
                                info["peak_width_s"])
    return origins * profile.sum() / 3600


def test_each_preset_has_its_calibrated_size_and_rates_and_generates_them(preset) -> None:
    name, roadnet, flow, info = preset
    assert {key: info[key] for key in CALIBRATED[name]} == CALIBRATED[name]
    signals = signalised_intersections(roadnet)
    assert len({s["point"]["x"] for s in signals}) == info["cols"]
    assert len({s["point"]["y"] for s in signals}) == info["rows"]
    origins = len(entry_and_exit_roads(roadnet)[0])
    assert origins == 2 * (info["rows"] + info["cols"])  # one entry road per boundary cell
    expected = _expected_vehicles(info, origins)
    assert abs(len(flow) - expected) < 5 * math.sqrt(expected), (name, len(flow), expected)
    if info["demand"] == "peak":
        # a symmetric peak in the middle of the hour: the departures centre on it
        steps = np.array([entry["startTime"] for entry in flow])
        assert abs(steps.mean() - info["peak_times"][0]) < 30
        in_peak = np.sum(np.abs(steps - info["peak_times"][0]) < info["peak_width_s"] / 2)
        assert in_peak > 2 * np.sum(steps < info["peak_width_s"])


def test_each_preset_has_the_documented_vehicle_plan_and_road_lengths(preset) -> None:
    _, roadnet, flow, info = preset
    # docs/engine.md: the generated scenarios' headway is 1.45 s (about 1895 veh/h per lane)
    assert {entry["vehicle"]["headwayTime"] for entry in flow} == {1.45}
    assert {entry["vehicle"]["maxSpeed"] for entry in flow} == {11.111}
    # docs/training.md: fixed_time is the roadnet's plan, 30 s per phase
    times = {phase["time"] for s in signalised_intersections(roadnet)
             for phase in s["trafficLight"]["lightphases"]}
    assert times == {30}
    # every road, the boundary ones included, is the preset's road length
    assert info["road_length"] == 300.0
    assert {round(road_length(road), 6) for road in roadnet["roads"]} == {300.0}


@pytest.mark.parametrize("name", ["grid_1x1", "grid_4x4", "grid_4x4_peak", "grid_6x6"])
def test_a_presets_demand_follows_its_seed(name) -> None:
    _, flow_0, info_0 = PRESETS[name](seed=0)
    _, flow_1, info_1 = PRESETS[name](seed=1)
    assert (info_0["seed"], info_1["seed"]) == (0, 1)
    assert flow_0 != flow_1
    assert PRESETS[name](seed=1)[1] == flow_1


def test_the_default_turn_ratios_are_the_presets_calibrated_ones() -> None:
    # the presets were calibrated with (left, straight, right) = (0.2, 0.6, 0.2)
    roadnet = grid_roadnet(2, 2)
    default = uniform_demand(roadnet, rate_per_origin=400, horizon=600, seed=3)
    explicit = uniform_demand(roadnet, rate_per_origin=400, horizon=600, seed=3, turn_ratios=(0.2, 0.6, 0.2))
    assert default == explicit
    assert PRESETS["grid_4x4"](seed=0)[2]["turn_ratios"] == [0.2, 0.6, 0.2]
