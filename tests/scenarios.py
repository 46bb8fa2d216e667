"""Small generated scenarios for engine tests (fast to build and to run)."""

from __future__ import annotations

from envs.evaluation.discharge import single_route  # noqa: F401  (the tests' 1x1 scenario)
from envs.scenario import Scenario, scenario_from_dicts
from envs.scenario.generate import grid_roadnet, uniform_demand


def small_grid(
    rows: int = 2, cols: int = 2, *, rate: float = 600.0, horizon: int = 400, seed: int = 0,
    road_length: float = 150.0,
) -> Scenario:
    roadnet = grid_roadnet(rows, cols, road_length=road_length)
    flow = uniform_demand(roadnet, rate_per_origin=rate, horizon=horizon, seed=seed)
    return scenario_from_dicts(roadnet, flow, name=f"test_grid_{rows}x{cols}_s{seed}")


def uneven_grid_dicts(horizon: int = 300, seed: int = 0) -> tuple[dict, list, dict]:
    """A 2x2 grid whose first intersection lost its last signal phase: 3 actions, not 4
    (roadnet, flow, info: a preset's triple, so a test can register it as a preset)."""
    roadnet = grid_roadnet(2, 2, road_length=150.0)
    signalised = [x for x in roadnet["intersections"] if not x["virtual"]]
    phases = signalised[0]["trafficLight"]["lightphases"]
    # the lost phase's two left turns go permissive (yielding) in the same axis' through phase, so
    # every turn is still green in some phase: a turn in none is refused (its vehicles would wait for good)
    dropped, through = phases[-1], phases[1]
    lefts = [k for k in dropped["availableRoadLinks"] if signalised[0]["roadLinks"][k]["type"] == "turn_left"]
    through["availableRoadLinks"] = through["availableRoadLinks"] + lefts
    through["permissiveRoadLinks"] = lefts
    signalised[0]["trafficLight"]["lightphases"] = phases[:-1]
    flow = uniform_demand(roadnet, rate_per_origin=600.0, horizon=horizon, seed=seed)
    return roadnet, flow, {"seed": seed}


def uneven_grid(horizon: int = 300, device: str = "cpu") -> Scenario:
    """`uneven_grid_dicts` as a scenario."""
    roadnet, flow, _ = uneven_grid_dicts(horizon)
    return scenario_from_dicts(roadnet, flow, name="uneven_grid", device=device)
