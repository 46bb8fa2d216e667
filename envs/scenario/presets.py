"""Named generated scenarios: ``PRESETS[name](seed) -> (roadnet, flow, info)``.

``grid_4x4`` is the project's default scenario. Demand levels live in the module-level constants
below so they can be recalibrated against the engine (fixed-time control should load the network
without gridlocking it) without touching the generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envs.scenario.generate import DEFAULT_TURN_RATIOS, grid_roadnet, peak_demand, uniform_demand

Scenario = tuple[dict, list[dict], dict[str, Any]]

DEFAULT_PRESET = "grid_4x4"

HORIZON_S = 3600
ROAD_LENGTH_M = 300.0
LANES = ("L", "S", "R")
TURN_RATIOS = DEFAULT_TURN_RATIOS  # left, straight, right

# Uniform presets: veh/h on each boundary entry road.
# Calibrated (engine of commit a9c1275, demand seeds 0-2, benchmarks/baselines.py): at 200 the
# fixed-time plan keeps grid_4x4 loaded but stable (~300-350 vehicles in the network, flat over
# the last 20 minutes, entry queue ~0.1, drains within ~15 min after the hour) and max-pressure
# cuts mean travel time by ~1/3. 240 already grows slowly under fixed time; 300 (the old value)
# was near gridlock (~1000 vehicles in the network at t=3600, ~900 halting).
UNIFORM_RATE_PER_ORIGIN = 200.0

# grid_4x4_peak: one rush hour in the middle of the hour.
# Calibrated like the uniform rate: at the peak, demand (16 x 360 veh/h) is ~1.3x what the
# fixed-time plan serves (~4,400 veh/h), so the network loads (~700-770 vehicles at t~2400 s)
# and falls back after the peak without spilling back to the origins (entry queue ~0.2); 450
# (the old value) gridlocked (entry queue 12-39 vehicles, ~200 still in the network at 4500 s).
PEAK_4X4_BASE_RATE = 150.0
PEAK_4X4_PEAK_RATE = 360.0
PEAK_4X4_PEAK_TIME_S = 1800.0
PEAK_4X4_WIDTH_S = 600.0  # standard deviation of the Gaussian peak

# grid_16x8: 16 columns x 8 rows = 128 signals, the size of the Hangzhou City Brain pilot.
# Calibrated like the others: routes are long here (11 roads on average, p90 24), so even the
# base rate keeps ~1,700 vehicles in the network. At a 300 veh/h peak, fixed time loads it to
# ~3,300 vehicles at t~2400 s and it falls back afterwards with no spillback to the origins
# (entry queue ~0.5); 400 spills back (entry queue 12-15) and 450 (the old value) gridlocks.
CITY_COLS = 16
CITY_ROWS = 8
CITY_BASE_RATE = 150.0
CITY_PEAK_RATE = 300.0
CITY_PEAK_TIME_S = 1800.0
CITY_WIDTH_S = 600.0


def _uniform_grid(name: str, rows: int, cols: int, seed: int) -> Scenario:
    roadnet = grid_roadnet(rows, cols, lanes=LANES, road_length=ROAD_LENGTH_M, name=name)
    flow = uniform_demand(
        roadnet,
        rate_per_origin=UNIFORM_RATE_PER_ORIGIN,
        horizon=HORIZON_S,
        turn_ratios=TURN_RATIOS,
        seed=seed,
    )
    info = {
        "preset": name,
        "rows": rows,
        "cols": cols,
        "lanes": list(LANES),
        "road_length": ROAD_LENGTH_M,
        "demand": "uniform",
        "rate_per_origin": UNIFORM_RATE_PER_ORIGIN,
        "horizon": HORIZON_S,
        "turn_ratios": list(TURN_RATIOS),
        "seed": seed,
        "vehicles": len(flow),
    }
    return roadnet, flow, info


def _peak_grid(
    name: str,
    rows: int,
    cols: int,
    seed: int,
    *,
    base_rate: float,
    peak_rate: float,
    peak_time: float,
    width: float,
) -> Scenario:
    roadnet = grid_roadnet(rows, cols, lanes=LANES, road_length=ROAD_LENGTH_M, name=name)
    flow = peak_demand(
        roadnet,
        base_rate=base_rate,
        peak_rate=peak_rate,
        peak_times=(peak_time,),
        peak_width_s=width,
        horizon=HORIZON_S,
        turn_ratios=TURN_RATIOS,
        seed=seed,
    )
    info = {
        "preset": name,
        "rows": rows,
        "cols": cols,
        "lanes": list(LANES),
        "road_length": ROAD_LENGTH_M,
        "demand": "peak",
        "base_rate": base_rate,
        "peak_rate": peak_rate,
        "peak_times": [peak_time],
        "peak_width_s": width,
        "horizon": HORIZON_S,
        "turn_ratios": list(TURN_RATIOS),
        "seed": seed,
        "vehicles": len(flow),
    }
    return roadnet, flow, info


def grid_1x1(seed: int = 0) -> Scenario:
    return _uniform_grid("grid_1x1", 1, 1, seed)


def grid_4x4(seed: int = 0) -> Scenario:
    """The default scenario."""
    return _uniform_grid("grid_4x4", 4, 4, seed)


def grid_4x4_peak(seed: int = 0) -> Scenario:
    return _peak_grid(
        "grid_4x4_peak", 4, 4, seed,
        base_rate=PEAK_4X4_BASE_RATE,
        peak_rate=PEAK_4X4_PEAK_RATE,
        peak_time=PEAK_4X4_PEAK_TIME_S,
        width=PEAK_4X4_WIDTH_S,
    )


def grid_6x6(seed: int = 0) -> Scenario:
    return _uniform_grid("grid_6x6", 6, 6, seed)


def grid_16x8(seed: int = 0) -> Scenario:
    return _peak_grid(
        "grid_16x8", CITY_ROWS, CITY_COLS, seed,
        base_rate=CITY_BASE_RATE,
        peak_rate=CITY_PEAK_RATE,
        peak_time=CITY_PEAK_TIME_S,
        width=CITY_WIDTH_S,
    )


PRESETS: dict[str, Callable[..., Scenario]] = {
    "grid_1x1": grid_1x1,
    "grid_4x4": grid_4x4,
    "grid_4x4_peak": grid_4x4_peak,
    "grid_6x6": grid_6x6,
    "grid_16x8": grid_16x8,
}
