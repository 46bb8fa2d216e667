"""The one registry of observation features and reward terms (name -> function of the state).

Every function works on all copies and intersections at once and returns ``[B, I, ...]``.
Configs compose them by name: ``observations=[phase_onehot, time_in_phase, lane_count]`` and
``reward={queue: 1.0, waiting_time: 0.1}``. New ones are added with `register_observation` /
`register_reward`.

Normalisation (``normalise=True``, the default) divides each feature by a documented scale so a
typical value lies in [0, 1]; ``normalise=False`` gives raw units. The scales:

==================  ==========================================  ============================
feature             raw value (per intersection)                 normalised by
==================  ==========================================  ============================
``lane_count``      vehicles on each incoming lane               lane storage: length / 7.5 m
``lane_halting``    halting vehicles (< halting speed) per lane  lane storage: length / 7.5 m
``segment_counts``  vehicles in 3 segments of 50 m before the    segment storage: 50 m / 7.5 m
                    stop line, per incoming lane
``phase_onehot``    1 at the current action's phase              (none; 0/1)
``time_in_phase``   seconds since the last switch, saturating    ``TIME_IN_PHASE_MAX_S`` (120)
                    at ``TIME_IN_PHASE_MAX_S``
``pressure``        per action: incoming minus outgoing          ``PRESSURE_SCALE`` (20 veh)
                    vehicles over the phase's green movements
``intersection_id`` one-hot of the intersection's index          (none; 0/1)
==================  ==========================================  ============================

The approach, per-movement and signal-timing features (``approach_moving``, ``efficient_pressure``,
``effective_running``, ``green_time``, ``movement_red_time``, ...) and the ``neighbour_mean:<feature>``
wrapper (the mean over the adjacent intersections) live in `envs.rl.movement_features`, and the
probe-vehicle features (``probe_halted``, ...) in `envs.rl.probe_features`, each with its table;
this module imports both, so the registry always holds them.

Rewards are raw (no normalisation), per intersection, larger is better; the environment
multiplies each by its configured weight and sums:

- ``queue``: minus the halting vehicles on the incoming lanes at the decision time.
- ``pressure``: minus the absolute pressure of the intersection (incoming minus outgoing
  vehicles summed over its movements), as PressLight.
- ``waiting_time``: minus the vehicle-seconds spent halting on the incoming lanes during the
  decision interval.
- ``delay``: minus the vehicle-seconds of delay on the incoming lanes during the interval, one
  second of driving at speed v costing ``1 - v / v_max``, v_max the lower of the lane's limit and
  the vehicle's own top speed (a vehicle at its top speed on a faster lane loses nothing).

A light's "incoming lanes" in queue, waiting_time and delay also take in the lanes whose traffic
reaches it through junctions with one phase (a SUMO scenario's unsignalised junctions), where its
queue backs up (`envs.engine.intersections.reward_lanes`); elsewhere they are its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from envs.engine.state import EngineParams, SimState
from envs.errors import ConfigError
from envs.engine.intersections import IntersectionLayout, current_action, gather_lanes, reward_lanes
from envs.engine.readings import NUM_SEGMENTS, SEGMENT_M, lane_halting, segment_counts
from envs.scenario.demand import VEHICLE_COLUMN, Demand
from envs.scenario.network import Network

VEHICLE_SPACING_M = 7.5  # one vehicle's share of a standing queue (5 m car + 2.5 m gap)
TIME_IN_PHASE_MAX_S = 120.0
PRESSURE_SCALE = 20.0


@dataclass(frozen=True, eq=False)
class FeatureContext:
    """What feature and reward functions read: the static layout and the current state."""

    network: Network
    layout: IntersectionLayout
    params: EngineParams
    state: SimState | None
    lane_storage: torch.Tensor  # [L] vehicles a lane holds standing, at 7.5 m each (>= 1)
    lane_max_vehicles: torch.Tensor  # [L] most vehicles a lane (and its box) can ever count
    # [I, W] the lanes the lane-based rewards sum per intersection (envs.engine.intersections.reward_lanes)
    reward_lanes: torch.Tensor
    # detector faults (envs.incidents.perturbations.DetectorFaults): applied to the detector-based
    # *observations* only (envs.rl.fault_reach names them: the per-lane readings the deployment
    # runtime reads and the features built from them); rewards read the true state
    detectors: object | None = None
    probes: object | None = None  # envs.incidents.probes.ProbeSensor: the probe_* features read it

    def at(self, state: SimState) -> "FeatureContext":
        return replace(self, state=state)


def shortest_spacing(demand: Demand) -> float:
    """The smallest space a vehicle of `demand` takes in a standing queue (length + minimum gap,
    over real trips; `VEHICLE_SPACING_M` for a demand without trips): what bounds a lane's count."""
    if not demand.max_trips:
        return VEHICLE_SPACING_M
    per_trip = demand.vehicle[:, :-1, VEHICLE_COLUMN["length"]] + demand.vehicle[:, :-1, VEHICLE_COLUMN["min_gap"]]
    return float(per_trip.min())


def feature_context(
    network: Network, layout: IntersectionLayout, params: EngineParams,
    min_vehicle_spacing_m: float = VEHICLE_SPACING_M,
) -> FeatureContext:
    """The static part of the context; `FeatureContext.at(state)` adds the state.

    `min_vehicle_spacing_m` is the shortest length + min gap of any vehicle in the demand: it
    bounds how many vehicles a lane can count (the observation space's upper bounds)."""
    through = network.link_length.amax(dim=(1, 2))  # [M] longest path through the box
    lane_box = torch.zeros(network.num_lanes + 1, device=network.device)
    ends = torch.where(network.movement_out_lanes >= 0, network.movement_out_lanes, network.num_lanes)
    lane_box = lane_box.scatter_reduce(
        0, ends.reshape(-1), through.unsqueeze(1).expand_as(ends).reshape(-1), reduce="amax"
    )[:-1]
    spacing = max(float(min_vehicle_spacing_m), 0.5)
    return FeatureContext(
        network, layout, params, None,
        lane_storage=(network.lane_length / VEHICLE_SPACING_M).clamp(min=1.0),
        lane_max_vehicles=torch.floor((network.lane_length + lane_box) / spacing) + 2.0,
        reward_lanes=reward_lanes(network, layout),
    )


def _lane_bound(ctx: FeatureContext, normalise: bool) -> float:
    per_lane = ctx.lane_max_vehicles / ctx.lane_storage if normalise else ctx.lane_max_vehicles
    return float(per_lane.max())


def _pressure_bound(ctx: FeatureContext, normalise: bool) -> float:
    # pressure sums, over a phase's green movements, each movement's incoming (outgoing) lanes, so a lane
    # counts once per movement it feeds (a shared lane, or every movement of an unsignalised junction's
    # single phase): bound by the sum over all of an intersection's movements, not over its lanes
    net = ctx.network
    per_lane = torch.cat([ctx.lane_max_vehicles, ctx.lane_max_vehicles.new_zeros(1)])

    def over_movements(lane_ids: torch.Tensor) -> torch.Tensor:  # [M, E] -> [I]
        index = torch.where(lane_ids >= 0, lane_ids, per_lane.shape[0] - 1)
        per_movement = per_lane[index].sum(1) * net.movement_valid
        return per_movement.reshape(net.num_intersections, -1).sum(1)

    most = float(torch.maximum(over_movements(net.movement_in_lanes), over_movements(net.movement_out_lanes)).max())
    return most / PRESSURE_SCALE if normalise else most


@dataclass(frozen=True)
class Observation:
    name: str
    size: Callable[[IntersectionLayout], int]  # features per intersection
    compute: Callable[[FeatureContext, bool], torch.Tensor]  # (ctx, normalise) -> [B, I, size]
    # (static ctx, normalise) -> (low, high): every value the feature can take lies inside
    bounds: Callable[[FeatureContext, bool], tuple[float, float]]
    doc: str = ""


@dataclass(frozen=True)
class RewardTerm:
    name: str
    compute: Callable[[FeatureContext], torch.Tensor]  # -> [B, I] float32
    # True: evaluated after every engine step and summed over the decision interval;
    # False: evaluated once, at the end of the interval
    per_step: bool = False
    doc: str = ""


OBSERVATIONS: dict[str, Observation] = {}
REWARDS: dict[str, RewardTerm] = {}
# "prefix:feature" names: prefix -> builds the derived Observation from the named one
OBSERVATION_WRAPPERS: dict[str, Callable[[Observation], Observation]] = {}


def register_observation(name, size, bounds, doc=""):
    def wrap(fn):
        OBSERVATIONS[name] = Observation(name, size, fn, bounds, doc)
        return fn

    return wrap


def register_reward(name, per_step=False, doc=""):
    def wrap(fn):
        REWARDS[name] = RewardTerm(name, fn, per_step, doc)
        return fn

    return wrap


def _lanes_value(ctx: FeatureContext, per_lane: torch.Tensor, normalise: bool) -> torch.Tensor:
    per_lane = per_lane.to(torch.float32)
    if normalise:
        per_lane = per_lane / ctx.lane_storage
    return gather_lanes(per_lane, ctx.layout.in_lanes)


def _in_lane_counts(ctx: FeatureContext) -> torch.Tensor:
    return ctx.state.lane_count[:, : ctx.network.num_lanes]


def _in_lane_halting(ctx: FeatureContext) -> torch.Tensor:
    return lane_halting(ctx.state, ctx.network.num_lanes, ctx.params.halting_speed)


def detected(ctx: FeatureContext, name: str, per_lane: torch.Tensor) -> torch.Tensor:
    """What the lane detectors report for a true per-lane reading (faults, if any)."""
    if ctx.detectors is None:
        return per_lane
    return ctx.detectors.apply(name, per_lane, ctx.state.t, upper=ctx.lane_max_vehicles)


@register_observation(
    "lane_count", lambda lay: lay.max_in_lanes, lambda ctx, norm: (0.0, _lane_bound(ctx, norm)),
    doc="vehicles per incoming lane",
)
def _obs_lane_count(ctx, normalise):
    return _lanes_value(ctx, detected(ctx, "lane_count", _in_lane_counts(ctx)), normalise)


@register_observation(
    "lane_halting", lambda lay: lay.max_in_lanes, lambda ctx, norm: (0.0, _lane_bound(ctx, norm)),
    doc="halting vehicles per incoming lane",
)
def _obs_lane_halting(ctx, normalise):
    return _lanes_value(ctx, detected(ctx, "lane_halting", _in_lane_halting(ctx)), normalise)


@register_observation(
    "segment_counts", lambda lay: lay.max_in_lanes * NUM_SEGMENTS,
    lambda ctx, norm: (0.0, _lane_bound(ctx, norm)),
    doc=f"vehicles in {NUM_SEGMENTS} segments of {SEGMENT_M:g} m before the stop line, per lane",
)
def _obs_segment_counts(ctx, normalise):
    per_cell = segment_counts(ctx.network, ctx.state)
    if normalise:
        per_cell = per_cell / (SEGMENT_M / VEHICLE_SPACING_M)
    lanes = ctx.network.num_lanes
    table = torch.cat([per_cell, torch.zeros_like(per_cell[:, :1])], 1)
    index = torch.where(ctx.layout.in_lanes >= 0, ctx.layout.in_lanes, lanes)
    return table[:, index].reshape(per_cell.shape[0], ctx.layout.num_intersections, -1)


@register_observation(
    "phase_onehot", lambda lay: lay.max_actions, lambda ctx, norm: (0.0, 1.0),
    doc="one-hot of the current phase's action index (all 0 in a non-action phase)",
)
def _obs_phase_onehot(ctx, normalise):
    action = current_action(ctx.layout, ctx.state)
    width = ctx.layout.max_actions
    onehot = torch.nn.functional.one_hot(action.clamp(min=0), width).to(torch.float32)
    return onehot * (action >= 0).unsqueeze(-1)


@register_observation(
    "time_in_phase", lambda lay: 1,
    lambda ctx, norm: (0.0, 1.0 if norm else TIME_IN_PHASE_MAX_S),
    doc=f"seconds since the last switch, saturating at {TIME_IN_PHASE_MAX_S:g}",
)
def _obs_time_in_phase(ctx, normalise):
    seconds = ctx.state.phase_timer.to(torch.float32).clamp(max=TIME_IN_PHASE_MAX_S)
    if normalise:
        seconds = seconds / TIME_IN_PHASE_MAX_S
    return seconds.unsqueeze(-1)


def movement_counts(network: Network, state: SimState, upstream_halting: bool = False,
                    halting_speed: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Vehicles upstream and downstream of every movement ``[B, M]`` (each lane once)."""
    lanes = network.num_lanes
    counts = state.lane_count[:, :lanes].to(torch.float32)
    upstream = (
        lane_halting(state, lanes, halting_speed).to(torch.float32) if upstream_halting else counts
    )
    return movement_lane_sums(network, upstream, counts)


def movement_lane_sums(network: Network, upstream: torch.Tensor, downstream: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-lane readings ``[B, L]`` summed over every movement's incoming lanes (`upstream`) and
    outgoing lanes (`downstream`): ``[B, M]`` each, each lane once."""
    lanes = network.num_lanes
    pad = torch.zeros(upstream.shape[0], 1, device=upstream.device)

    def on(lane_ids: torch.Tensor, per_lane: torch.Tensor) -> torch.Tensor:
        ids = torch.where(lane_ids >= 0, lane_ids, lanes)  # [M, E]; padding -> zero column
        values = torch.cat([per_lane, pad], 1)[:, ids.reshape(-1)]
        return values.reshape(per_lane.shape[0], *ids.shape).sum(-1) * network.movement_valid

    return on(network.movement_in_lanes, upstream), on(network.movement_out_lanes, downstream)


def per_phase(network: Network, movement: torch.Tensor) -> torch.Tensor:
    """Sum a per-movement quantity ``[B, M]`` over each phase's green movements ``[B, I, P]``."""
    movement = movement.reshape(movement.shape[0], network.num_intersections, -1)  # [B, I, K]
    return torch.einsum("bik,ipk->bip", movement, network.phase_green.to(torch.float32))


@register_observation(
    "pressure", lambda lay: lay.max_actions,
    lambda ctx, norm: (-_pressure_bound(ctx, norm), _pressure_bound(ctx, norm)),
    doc="per action: incoming minus outgoing vehicles over its green movements",
)
def _obs_pressure(ctx, normalise):  # lane counts on both sides: faulty detectors reach them
    counts = detected(ctx, "lane_count", _in_lane_counts(ctx)).to(torch.float32)
    upstream, downstream = movement_lane_sums(ctx.network, counts, counts)
    phase = per_phase(ctx.network, upstream - downstream)  # [B, I, P]
    action_phase = ctx.layout.action_phase
    index = action_phase.clamp(min=0).unsqueeze(0).expand(phase.shape[0], -1, -1)
    out = torch.gather(phase, 2, index) * ctx.layout.action_mask
    return out / PRESSURE_SCALE if normalise else out


@register_observation(
    "intersection_id", lambda lay: lay.num_intersections, lambda ctx, norm: (0.0, 1.0),
    doc="one-hot of the intersection's index (for shared policies)",
)
def _obs_intersection_id(ctx, normalise):
    inter = ctx.layout.num_intersections
    eye = torch.eye(inter, device=ctx.state.t.device)
    return eye.unsqueeze(0).expand(ctx.state.t.shape[0], -1, -1)


def _per_intersection(ctx: FeatureContext, per_lane: torch.Tensor) -> torch.Tensor:
    """Sum ``[B, L]`` per-lane values over each intersection's reward lanes ``[B, I]``: its incoming
    lanes, and a light's also those that reach it through unsignalised junctions (`reward_lanes`)."""
    return gather_lanes(per_lane.to(torch.float32), ctx.reward_lanes).sum(-1)


@register_reward("queue", doc="minus halting vehicles on the incoming lanes")
def _reward_queue(ctx):
    return -_per_intersection(ctx, _in_lane_halting(ctx))


@register_reward("pressure", doc="minus |incoming - outgoing vehicles| over the movements")
def _reward_pressure(ctx):
    upstream, downstream = movement_counts(ctx.network, ctx.state)
    net = (upstream - downstream).reshape(upstream.shape[0], ctx.layout.num_intersections, -1).sum(-1)
    return -net.abs()


@register_reward("waiting_time", per_step=True, doc="minus vehicle-seconds halting on incoming lanes")
def _reward_waiting_time(ctx):
    return -_per_intersection(ctx, _in_lane_halting(ctx))


@register_reward("delay", per_step=True, doc="minus vehicle-seconds of delay on incoming lanes")
def _reward_delay(ctx):
    state, net = ctx.state, ctx.network
    slots = state.veh_lane.shape[1] - 1
    lane = state.veh_lane[:, :slots]
    active = lane >= 0
    lane_c = torch.where(active, lane, net.num_lanes)
    limit = torch.minimum(
        state.veh_max_speed[:, :slots], torch.cat([net.lane_max_speed, net.lane_max_speed[:1]])[lane_c]
    )
    lost = torch.where(active, (1.0 - state.veh_speed[:, :slots] / limit).clamp(min=0.0), 0.0)
    per_lane = torch.zeros(lane.shape[0], net.num_lanes + 1, device=lane.device)
    per_lane.scatter_add_(1, lane_c, lost)
    return -_per_intersection(ctx, per_lane[:, :-1])


def observe(features: list[Observation], ctx: FeatureContext, normalise: bool) -> torch.Tensor:
    """The features, concatenated: observations ``[B, I, F]`` float32."""
    return torch.cat([f.compute(ctx, normalise) for f in features], -1).to(torch.float32)


def check_observation_names(names, source: str = "<env>") -> list[Observation]:
    if isinstance(names, str) or not names:
        raise ConfigError(source, "observations", names, "need a non-empty list of feature names")
    out = []
    for name in names:
        feature = observation_named(name)
        if feature is None:
            known = sorted(OBSERVATIONS) + [f"{prefix}:<feature>" for prefix in sorted(OBSERVATION_WRAPPERS)]
            raise ConfigError(source, "observations", name, "unknown feature; known: " + ", ".join(known))
        if name in names[: len(out)]:  # the layout would name it twice; a trained policy's input width disagreed
            raise ConfigError(source, "observations", name, "listed twice")
        out.append(feature)
    return out


def observation_named(name) -> Observation | None:
    """The registered feature `name`, or a wrapped one (``neighbour_mean:lane_count``); None if unknown."""
    if not isinstance(name, str):
        return None
    if name in OBSERVATIONS:
        return OBSERVATIONS[name]
    prefix, colon, inner = name.partition(":")
    wrapped = observation_named(inner) if colon and prefix in OBSERVATION_WRAPPERS else None
    return OBSERVATION_WRAPPERS[prefix](wrapped) if wrapped is not None else None


# registers the approach, per-movement and timing features and the neighbour_mean: wrapper
from envs.rl import movement_features, probe_features  # noqa: E402,F401  (they import this module's registry)
