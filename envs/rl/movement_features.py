"""Approach, per-movement and signal-timing observation features, and the ``neighbour_mean:``
wrapper; registered into `envs.rl.features`' registry (which imports this module).

The readings are `envs.engine.movement_readings`' (Zhang et al. 2022's efficient pressure and
effective running vehicles, SOTL-style approach counts). Per-movement features list the
intersection's movement slots ``k`` in roadLink order (movement ``m = i * K + k``), padded with
zeros to the largest intersection; per-lane ones its incoming lanes road by road, as ``lane_count``.

============================  ==============================================  ===================
feature                       raw value (per intersection)                    normalised by
============================  ==============================================  ===================
``approach_moving``           vehicles within ``APPROACH_M`` (100 m) of the   approach storage:
                              stop line moving (>= 0.1 m/s), per lane         100 m / 7.5 m
``approach_halting``          the same, halting (< 0.1 m/s), per lane         approach storage
``movement_approach_moving``  ``approach_moving`` by next movement            approach storage
``movement_approach_halting`` ``approach_halting`` by next movement           approach storage
``movement_queue``            halting vehicles by next movement, whole lane   ``QUEUE_SCALE`` (20)
``efficient_pressure``        per movement: its queue minus the mean queue    ``QUEUE_SCALE`` (20)
                              of the lanes it leads into (Zhang et al.)
``effective_running``         per movement: moving vehicles within the        ``QUEUE_SCALE`` (20)
                              distance the speed limit covers in
                              ``EFFECTIVE_HORIZON_S`` (10 s) of the stop line
``green_time``                seconds the current phase has shown green (0    ``TIME_MAX_S`` (120)
                              during its intergreen), saturating at 120
``movement_red_time``         per movement: seconds not showing green (0      ``TIME_MAX_S`` (120)
                              while green), saturating at 120; a lower bound
                              for a movement red through two or more phases
``neighbour_mean:<feature>``  the mean of ``<feature>`` over the              as ``<feature>``
                              intersections joined to this one by a road
                              (0 where there are none)
============================  ==============================================  ===================

Under detector faults (``FeatureContext.detectors``) every count here reads through them: the
per-lane ones directly, the per-movement ones split from their lanes' readings
(`envs.incidents.movement_split`, as the classical rules split theirs).
"""

from __future__ import annotations

import weakref
from dataclasses import replace

import torch

from envs.engine.movement_readings import (
    approach_by_lane, approach_by_movement, approach_vehicles, effective_running, efficient_pressure, exit_mean,
    halting_vehicles, movement_queue, movement_red_elapsed, running_vehicles,
)
from envs.engine.signals import green_elapsed
from envs.engine.intersections import gather_lanes
from envs.incidents.movement_split import lane_totals, split_by_movement
from envs.rl.features import (
    OBSERVATION_WRAPPERS, TIME_IN_PHASE_MAX_S, VEHICLE_SPACING_M, FeatureContext, Observation, detected,
    register_observation,
)
from envs.scenario.network import Network

APPROACH_M = 100.0  # approach distance counted by the approach_* features
EFFECTIVE_HORIZON_S = 10.0  # effective_running: the next interval (the env's default decision interval)
QUEUE_SCALE = 20.0  # vehicles
TIME_MAX_S = TIME_IN_PHASE_MAX_S  # green/red times saturate as time_in_phase does (120 s)
APPROACH_SCALE = APPROACH_M / VEHICLE_SPACING_M


def _movements(ctx: FeatureContext, per_movement: torch.Tensor) -> torch.Tensor:
    """``[B, M]`` -> ``[B, I, K]``."""
    return per_movement.reshape(per_movement.shape[0], ctx.layout.num_intersections, -1)


def _lanes(ctx: FeatureContext, per_lane: torch.Tensor) -> torch.Tensor:
    return gather_lanes(per_lane, ctx.layout.in_lanes)


def _intersection_vehicles(ctx: FeatureContext) -> float:
    """The most vehicles an intersection's incoming lanes can hold: bounds any count of them."""
    per_lane = torch.cat([ctx.lane_max_vehicles, ctx.lane_max_vehicles.new_zeros(1)])
    lanes = ctx.layout.in_lanes
    return float(per_lane[torch.where(lanes >= 0, lanes, per_lane.shape[0] - 1)].sum(1).max())


def _count_bounds(scale: float, on_lane: bool):
    def bounds(ctx: FeatureContext, normalise: bool) -> tuple[float, float]:
        most = float(ctx.lane_max_vehicles.max()) if on_lane else _intersection_vehicles(ctx)
        return 0.0, most / scale if normalise else most
    return bounds


def _pressure_bounds(ctx: FeatureContext, normalise: bool) -> tuple[float, float]:
    low, high = -float(ctx.lane_max_vehicles.max()), _intersection_vehicles(ctx)
    return (low / QUEUE_SCALE, high / QUEUE_SCALE) if normalise else (low, high)


def _time_bounds(ctx: FeatureContext, normalise: bool) -> tuple[float, float]:
    return 0.0, 1.0 if normalise else TIME_MAX_S


def _scaled(value: torch.Tensor, scale: float, normalise: bool) -> torch.Tensor:
    return value / scale if normalise else value


def _detected_by_movement(ctx: FeatureContext, name: str, lane: torch.Tensor, counted: torch.Tensor):
    """The `counted` vehicles ``[B, S]`` on `lane` as the faulty lane detectors `name` report them,
    by next movement ``[B, M]`` (`envs.incidents.movement_split`, as the classical rules read
    them) and per lane ``[B, L]``."""
    true = lane_totals(lane, counted, ctx.network.num_lanes)
    seen = detected(ctx, name, true)
    return split_by_movement(ctx.network, seen, true, lane, counted, ctx.state.veh_move), seen


def _approach_feature(per_movement: bool, halting: bool):
    """One of the four approach features: moving or halting vehicles within `APPROACH_M`,
    per incoming lane or per next movement; faulty detectors reach both (as the runtime's readings)."""
    name = f"approach_{'halting' if halting else 'moving'}"

    def compute(ctx, normalise):
        if per_movement and ctx.detectors is not None:
            lane, *by_state = approach_vehicles(ctx.network, ctx.state, APPROACH_M, ctx.params.halting_speed)
            counts = _detected_by_movement(ctx, name, lane, by_state[int(halting)])[0]
        elif per_movement:
            counts = approach_by_movement(ctx.network, ctx.state, APPROACH_M, ctx.params.halting_speed)[int(halting)]
        else:
            counts = detected(ctx, name, approach_by_lane(ctx.network, ctx.state, APPROACH_M,
                                                          ctx.params.halting_speed)[int(halting)])
        return _scaled((_movements if per_movement else _lanes)(ctx, counts), APPROACH_SCALE, normalise)

    return compute


for _per_movement, _prefix, _unit in ((False, "", "incoming lane"), (True, "movement_", "next movement")):
    for _halting, _state in ((False, "moving"), (True, "halting")):
        register_observation(
            f"{_prefix}approach_{_state}",
            (lambda lay: lay.movements) if _per_movement else (lambda lay: lay.max_in_lanes),
            _count_bounds(APPROACH_SCALE, not _per_movement),
            doc=f"{_state} vehicles within {APPROACH_M:g} m of the stop line, per {_unit}",
        )(_approach_feature(_per_movement, _halting))


@register_observation(
    "movement_queue", lambda lay: lay.movements, _count_bounds(QUEUE_SCALE, False),
    doc="halting vehicles per next movement",
)
def _obs_movement_queue(ctx, normalise):
    if ctx.detectors is None:
        queue = movement_queue(ctx.network, ctx.state, ctx.params.halting_speed)
    else:
        queue = _detected_by_movement(ctx, "lane_halting", *halting_vehicles(
            ctx.network, ctx.state, ctx.params.halting_speed))[0]
    return _scaled(_movements(ctx, queue), QUEUE_SCALE, normalise)


@register_observation(
    "efficient_pressure", lambda lay: lay.movements, _pressure_bounds,
    doc="per movement: its queue minus the mean queue of the lanes it leads into",
)
def _obs_efficient_pressure(ctx, normalise):
    if ctx.detectors is None:
        pressure = efficient_pressure(ctx.network, ctx.state, ctx.params.halting_speed)
    else:  # both queues from the halting detectors (the exit lanes' too), as efficient_mp reads them
        queue, per_lane = _detected_by_movement(ctx, "lane_halting", *halting_vehicles(
            ctx.network, ctx.state, ctx.params.halting_speed))
        pressure = queue * ctx.network.movement_valid - exit_mean(ctx.network, per_lane)
    return _scaled(_movements(ctx, pressure), QUEUE_SCALE, normalise)


@register_observation(
    "effective_running", lambda lay: lay.movements, _count_bounds(QUEUE_SCALE, False),
    doc=f"per movement: moving vehicles that reach the stop line within {EFFECTIVE_HORIZON_S:g} s "
        "at the speed limit",
)
def _obs_effective_running(ctx, normalise):
    horizon, halting_speed = EFFECTIVE_HORIZON_S, ctx.params.halting_speed
    if ctx.detectors is None:
        running = effective_running(ctx.network, ctx.state, horizon, halting_speed)
    else:  # the moving vehicles over each lane's reach, as advanced_mp's running detectors count them
        running = _detected_by_movement(ctx, "lane_running", *running_vehicles(
            ctx.network, ctx.state, horizon, halting_speed))[0]
    return _scaled(_movements(ctx, running), QUEUE_SCALE, normalise)


@register_observation(
    "green_time", lambda lay: 1, _time_bounds,
    doc=f"seconds the current phase has shown green (0 in its intergreen), saturating at {TIME_MAX_S:g}",
)
def _obs_green_time(ctx, normalise):
    seconds = green_elapsed(ctx.network, ctx.params, ctx.state).to(torch.float32).clamp(0.0, TIME_MAX_S)
    return _scaled(seconds, TIME_MAX_S, normalise).unsqueeze(-1)


@register_observation(
    "movement_red_time", lambda lay: lay.movements, _time_bounds,
    doc=f"per movement: seconds not showing green, saturating at {TIME_MAX_S:g}",
)
def _obs_movement_red_time(ctx, normalise):
    seconds = movement_red_elapsed(ctx.network, ctx.params, ctx.state).clamp(max=TIME_MAX_S)
    return _scaled(_movements(ctx, seconds), TIME_MAX_S, normalise)


_NEIGHBOUR_WEIGHTS: "weakref.WeakKeyDictionary[Network, torch.Tensor]" = weakref.WeakKeyDictionary()


def neighbour_weights(network: Network) -> torch.Tensor:
    """``[I, I]`` row ``i``: 1 / (number of neighbours) at each intersection joined to ``i`` by a
    road (either direction), 0 elsewhere; an all-zero row where ``i`` has none. Built once per
    network (the features read it at every decision)."""
    weights = _NEIGHBOUR_WEIGHTS.get(network)
    if weights is None:
        weights = _NEIGHBOUR_WEIGHTS[network] = _neighbour_weights(network)
    return weights


def _neighbour_weights(network: Network) -> torch.Tensor:
    num = network.num_intersections
    start, end = network.road_start, network.road_end
    joined = (start >= 0) & (end >= 0) & (start != end)
    adjacent = torch.zeros(num, num, device=start.device)
    adjacent[start[joined], end[joined]] = 1.0
    adjacent[end[joined], start[joined]] = 1.0
    return adjacent / adjacent.sum(1, keepdim=True).clamp(min=1.0)


def neighbour_mean(feature: Observation) -> Observation:
    """``feature`` averaged over each intersection's neighbours (`neighbour_weights`): the same
    size and bounds (a mean stays inside them; every feature's range holds 0)."""

    def compute(ctx: FeatureContext, normalise: bool) -> torch.Tensor:
        own = feature.compute(ctx, normalise)  # [B, I, F]
        return torch.einsum("ij,bjf->bif", neighbour_weights(ctx.network), own)

    return replace(feature, name=f"neighbour_mean:{feature.name}", compute=compute,
                   doc=f"mean over the adjacent intersections of: {feature.doc}")


OBSERVATION_WRAPPERS["neighbour_mean"] = neighbour_mean
