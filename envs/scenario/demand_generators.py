"""Demand generators: CityFlow flow lists (one entry per vehicle, sorted by departure) with
uniform, rush-hour (peak) or origin-destination Poisson arrivals on a roadnet dict."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from envs.errors import ScenarioError
from envs.scenario.arg_checks import (
    is_number,
    is_sequence,
    require_non_negative,
    require_positive,
    require_positive_int,
)
from envs.scenario.road_graph import (
    DEMAND_SOURCE,
    RoadGraph,
    exit_distances,
    Successor,
    road_graph,
    shortest_route,
)

# The generated scenarios' vehicle: CityFlow's default block (the one every public flow file
# uses) except headwayTime. The engine honours headwayTime as CityFlow does, and it sets the
# queue discharge rate: CityFlow's 2.0 s gives about 1500 veh/h per lane here (1464 in
# CityFlow), below the 1800-1900 veh/h of field measurements (HCM's base saturation flow is
# 1900); 1.45 s gives about 1895 veh/h (tests/test_engine.py measures it).
DEFAULT_VEHICLE: dict[str, float] = {
    "length": 5.0,
    "width": 2.0,
    "maxPosAcc": 2.0,
    "maxNegAcc": 4.5,
    "usualPosAcc": 2.0,
    "usualNegAcc": 4.5,
    "minGap": 2.5,
    "maxSpeed": 11.111,
    "headwayTime": 1.45,
}

DEFAULT_TURN_RATIOS = (0.2, 0.6, 0.2)  # left, straight, right


def _demand_error(field: str, value: Any, reason: str) -> ScenarioError:
    return ScenarioError(DEMAND_SOURCE, field, value, reason)


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise _demand_error("seed", seed, "must be an integer >= 0")
    return np.random.default_rng(int(seed))


def _validate_horizon(horizon: Any) -> int:
    whole = is_number(horizon) and float(horizon).is_integer()
    if not whole or horizon <= 0:
        raise _demand_error("horizon", horizon, "must be a whole number of seconds > 0")
    return int(horizon)


def _validate_turn_ratios(turn_ratios: Any) -> tuple[float, float, float]:
    if not is_sequence(turn_ratios) or len(turn_ratios) != 3:
        raise _demand_error("turn_ratios", turn_ratios, "must be 3 numbers (left, straight, right)")
    if not all(is_number(r) and math.isfinite(r) and r >= 0 for r in turn_ratios):
        raise _demand_error("turn_ratios", turn_ratios, "must all be finite and >= 0")
    if abs(sum(turn_ratios) - 1.0) > 1e-6:
        total = sum(turn_ratios)
        raise _demand_error("turn_ratios", turn_ratios, f"must sum to 1 (sum is {total})")
    left, straight, right = (float(r) for r in turn_ratios)
    return left, straight, right


def _validate_road(graph: RoadGraph, field: str, value: Any) -> str:
    if value not in graph.length:
        raise _demand_error(field, value, "is not a road id of the roadnet")
    return value


def _flow_entry(route: Sequence[str], departure_step: int) -> dict:
    return {
        "vehicle": dict(DEFAULT_VEHICLE),
        "route": list(route),
        "interval": 1.0,
        "startTime": departure_step,
        "endTime": departure_step,
    }


def _flows_by_departure(departures: list[tuple[int, Sequence[str]]]) -> list[dict]:
    # Stable sort: vehicles departing in the same second keep their generation order.
    departures.sort(key=lambda item: item[0])
    return [_flow_entry(route, step) for step, route in departures]


def _poisson_departure_steps(rng: np.random.Generator, rate_per_second: np.ndarray) -> np.ndarray:
    """Integer departure steps of a Poisson process with piecewise-constant per-second rates.

    Counting the arrivals of a Poisson process in each one-second bin gives independent
    Poisson counts, so this is exact for rates that are constant within a second.
    """
    counts = rng.poisson(rate_per_second)
    return np.repeat(np.arange(len(rate_per_second)), counts)


def _turn_table(
    graph: RoadGraph, turn_ratios: tuple[float, float, float]
) -> dict[str, tuple[list[float], tuple[Successor, ...]]]:
    """Per road: cumulative choice probabilities over its successors, computed once.

    Ratios are renormalised over the movements that exist at the road's end; where only
    zero-ratio movements exist (not in a full grid) they are chosen with equal probability.
    """
    ratio_of = dict(zip(("turn_left", "go_straight", "turn_right"), turn_ratios))
    table = {}
    for rid, options in graph.successors.items():
        if not options:
            continue
        weights = [ratio_of.get(s.link_type, 0.0) for s in options]
        if sum(weights) <= 0:
            weights = [1.0] * len(options)
        total = sum(weights)
        cumulative = list(np.cumsum(weights) / total)
        cumulative[-1] = 1.0  # guard against rounding leaving a gap below 1
        table[rid] = (cumulative, options)
    return table


def _random_walk_route(
    graph: RoadGraph,
    origin: str,
    turn_table: dict[str, tuple[list[float], tuple[Successor, ...]]],
    max_roads: int,
    hops_to_exit: dict[str, int],
    rng: np.random.Generator,
) -> list[str]:
    """Drive from `origin`, picking turns from `turn_table`, until a road ends at the boundary.

    Past `max_roads` roads the walk goes straight (or, where there is no straight link, takes the
    link closest to an exit) so that every route terminates.
    """
    route = [origin]
    # A walk that is forced towards the exit needs at most one road per road in the network.
    hard_limit = max_roads + len(graph.road_ids)
    while route[-1] not in graph.exit_roads:
        if route[-1] not in turn_table or len(route) > hard_limit:
            raise ScenarioError(
                DEMAND_SOURCE, "roadnet", origin,
                f"route {route[:8]}... cannot reach a boundary exit road",
            )
        cumulative, options = turn_table[route[-1]]
        if len(route) >= max_roads:
            route.append(_forced_successor(options, hops_to_exit).road)
        else:
            route.append(options[bisect.bisect_right(cumulative, rng.random())].road)
    return route


def _forced_successor(options: Sequence[Successor], hops_to_exit: dict[str, int]) -> Successor:
    straight = [s for s in options if s.link_type == "go_straight" and s.road in hops_to_exit]
    if straight:
        return straight[0]
    return min(options, key=lambda s: hops_to_exit.get(s.road, math.inf))


def _routed_demand(
    graph: RoadGraph,
    rate_per_second: np.ndarray,  # the same profile at every origin
    turn_ratios: tuple[float, float, float],
    max_route_roads: int | None,
    rng: np.random.Generator,
) -> list[dict]:
    max_roads = graph.default_route_cap if max_route_roads is None else max_route_roads
    max_roads = require_positive_int(DEMAND_SOURCE, "max_route_roads", max_roads)
    hops = exit_distances(graph)
    table = _turn_table(graph, turn_ratios)
    departures: list[tuple[int, Sequence[str]]] = []
    for origin in graph.entry_roads:
        for step in _poisson_departure_steps(rng, rate_per_second):
            route = _random_walk_route(graph, origin, table, max_roads, hops, rng)
            departures.append((int(step), route))
    return _flows_by_departure(departures)


def uniform_demand(
    roadnet: Mapping,
    *,
    rate_per_origin: float,
    horizon: int,
    turn_ratios: Sequence[float] = DEFAULT_TURN_RATIOS,
    seed: int = 0,
    max_route_roads: int | None = None,
) -> list[dict]:
    """Poisson arrivals at `rate_per_origin` veh/h on every boundary entry road over `horizon` s.

    Each vehicle's route is a random walk choosing (left, straight, right) by `turn_ratios`
    among the movements that exist, until it reaches a road ending at a virtual intersection.
    Routes are capped at `max_route_roads` roads (default rows + cols + 4), after which the walk
    goes straight.
    """
    rate = require_non_negative(DEMAND_SOURCE, "rate_per_origin", rate_per_origin)
    horizon = _validate_horizon(horizon)
    ratios = _validate_turn_ratios(turn_ratios)
    rng = _rng(seed)
    graph = road_graph(roadnet)
    per_second = np.full(horizon, rate / 3600.0)
    return _routed_demand(graph, per_second, ratios, max_route_roads, rng)


def peak_rate_profile(
    horizon: int,
    base_rate: float,
    peak_rate: float,
    peak_times: Sequence[float],
    peak_width_s: float,
) -> np.ndarray:
    """Arrival rate (veh/h) for each second: base plus Gaussian rush-hour peaks.

    `peak_width_s` is the Gaussian's standard deviation. Overlapping peaks combine by maximum,
    not sum, so `peak_rate` is the true highest rate. Rates are taken at each second's midpoint.
    """
    t = np.arange(horizon) + 0.5
    bump = np.zeros(horizon)
    for centre in peak_times:
        bump = np.maximum(bump, np.exp(-0.5 * ((t - centre) / peak_width_s) ** 2))
    return base_rate + (peak_rate - base_rate) * bump


def peak_demand(
    roadnet: Mapping,
    *,
    base_rate: float,
    peak_rate: float,
    horizon: int,
    peak_times: Sequence[float] | None = None,
    peak_width_s: float = 600.0,
    turn_ratios: Sequence[float] = DEFAULT_TURN_RATIOS,
    seed: int = 0,
    max_route_roads: int | None = None,
) -> list[dict]:
    """Like `uniform_demand`, with a time-varying rate per origin (see `peak_rate_profile`).

    `peak_times` (s) defaults to one peak at ``horizon / 2``.
    """
    base = require_non_negative(DEMAND_SOURCE, "base_rate", base_rate)
    peak = require_non_negative(DEMAND_SOURCE, "peak_rate", peak_rate)
    horizon = _validate_horizon(horizon)
    peak_times = (horizon / 2,) if peak_times is None else peak_times
    finite_times = is_sequence(peak_times) and all(
        is_number(t) and math.isfinite(t) for t in peak_times
    )
    if not finite_times:
        raise _demand_error("peak_times", peak_times, "must be a sequence of finite times (s)")
    width = require_positive(DEMAND_SOURCE, "peak_width_s", peak_width_s)
    ratios = _validate_turn_ratios(turn_ratios)
    rng = _rng(seed)
    graph = road_graph(roadnet)
    per_second = peak_rate_profile(horizon, base, peak, peak_times, width) / 3600.0
    return _routed_demand(graph, per_second, ratios, max_route_roads, rng)

def od_demand(
    roadnet: Mapping,
    *,
    od_rates: Mapping[tuple[str, str], float],
    horizon: int,
    seed: int = 0,
) -> list[dict]:
    """Poisson arrivals for each (origin road, destination road) pair at its rate (veh/h).

    Every vehicle of a pair takes the pair's shortest route by length (`shortest_route`).
    """
    horizon = _validate_horizon(horizon)
    rng = _rng(seed)
    graph = road_graph(roadnet)
    if not isinstance(od_rates, Mapping):
        raise _demand_error("od_rates", od_rates, "must be a dict {(origin, destination): veh/h}")
    routes: list[tuple[list[str], float]] = []
    for pair, rate in od_rates.items():
        field = f"od_rates[{pair!r}]"
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise _demand_error(field, pair, "key must be an (origin, destination) road id pair")
        origin = _validate_road(graph, f"{field} origin", pair[0])
        destination = _validate_road(graph, f"{field} destination", pair[1])
        rate = require_non_negative(DEMAND_SOURCE, field, rate)
        route = shortest_route(graph, origin, destination)
        if route is None:
            raise _demand_error(field, pair, "destination is unreachable from origin")
        routes.append((route, rate))
    departures: list[tuple[int, Sequence[str]]] = []
    for route, rate in routes:
        for step in _poisson_departure_steps(rng, np.full(horizon, rate / 3600.0)):
            departures.append((int(step), route))
    return _flows_by_departure(departures)
