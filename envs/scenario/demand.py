"""Trip tables: who departs when, along which movements, with which vehicle parameters.

`Trips` is one demand sample in numpy (built from a CityFlow flow file or a generator);
`Demand` stacks B samples into padded tensors ``[B, T, ...]`` so every copy of a batch can run
its own demand (different seeds or resamplings) in one engine step.

Per-copy padding trips never depart (``depart = NEVER``) and route nowhere.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch

from envs.errors import ConfigError, ScenarioError
from envs.scenario.network import Network, tensors_to
from envs.scenario.spec import FlowFileSpec, VehicleSpec

NEVER = 2**40  # departure step of padding trips
# vehicle parameter columns in Trips.vehicle / Demand.vehicle (names of VehicleSpec fields)
VEHICLE_FIELDS = (
    "length", "min_gap", "max_speed", "max_pos_acc", "usual_neg_acc", "max_neg_acc", "headway_time",
)
VEHICLE_COLUMN = {name: column for column, name in enumerate(VEHICLE_FIELDS)}


def vehicle_row(vehicle: VehicleSpec) -> list[float]:
    """A flow's vehicle parameters in `VEHICLE_FIELDS` order (one row of ``Trips.vehicle``)."""
    return [getattr(vehicle, name) for name in VEHICLE_FIELDS]


# CityFlow's default vehicle (`VehicleSpec`'s defaults), by field name: padding trips and free
# vehicle slots hold these harmless values
VEHICLE_DEFAULTS = dict(zip(VEHICLE_FIELDS, vehicle_row(VehicleSpec())))


@dataclass(frozen=True)
class Trips:
    """One demand sample. Trip ids are rows, ordered by (departure step, flow index)."""

    source: str
    depart: np.ndarray  # [T] int64 departure step
    routes: np.ndarray  # [T, Kr] int64 road ids along the route, -1 padding
    vehicle: np.ndarray  # [T, len(VEHICLE_FIELDS)] float32
    flow_index: np.ndarray  # [T] int64 the flow entry each trip came from

    @property
    def num_trips(self) -> int:
        return int(self.depart.shape[0])


def trips_from_flows(
    flows: FlowFileSpec, network: Network, horizon: int | None = None
) -> Trips:
    """Expand a flow file into trips, emulating CityFlow's generator step by step."""
    from envs.scenario.cityflow import departure_steps
    from envs.scenario.departures import check_departure_counts

    check_departure_counts(flows.flows, horizon, flows.source)  # billions of vehicles: refused before allocating
    road_index = {road_id: r for r, road_id in enumerate(network.road_ids)}
    departs, flow_ids = [], []
    for flow in flows.flows:
        steps = departure_steps(flow, horizon, source=flows.source)
        departs.append(steps)
        flow_ids.append(np.full(steps.shape[0], flow.index, dtype=np.int64))
    depart = np.concatenate(departs) if departs else np.zeros(0, np.int64)
    flow_index = np.concatenate(flow_ids) if flow_ids else np.zeros(0, np.int64)
    if depart.size == 0:
        raise ScenarioError(
            flows.source, "flows", len(flows.flows),
            "no vehicle departs" + (f" before the horizon {horizon}" if horizon else ""),
        )
    order = np.lexsort((flow_index, depart))
    depart, flow_index = depart[order], flow_index[order]

    max_route = max(len(flow.route) for flow in flows.flows)
    flow_routes = {}
    flow_vehicle = {}
    for flow in flows.flows:
        flow_routes[flow.index] = [road_index[r] for r in flow.route]
        flow_vehicle[flow.index] = vehicle_row(flow.vehicle)
    routes = np.full((depart.size, max_route), -1, dtype=np.int64)
    vehicle = np.zeros((depart.size, len(VEHICLE_FIELDS)), dtype=np.float32)
    for f in np.unique(flow_index):
        rows = flow_index == f
        route = flow_routes[int(f)]
        routes[rows, : len(route)] = route
        vehicle[rows] = flow_vehicle[int(f)]
    return Trips(flows.source, depart, routes, vehicle, flow_index)


@dataclass(frozen=True, eq=False)
class Demand:
    """B trip tables as padded tensors; row T of each per-trip table is a scratch trip."""

    num_trips: torch.Tensor  # [B] real trips per copy
    depart: torch.Tensor  # [B, T+1] int64 (NEVER for padding and the scratch row)
    origin: torch.Tensor  # [B, T+1] int64 first road (0 for padding)
    route_movement: torch.Tensor  # [B, (T+1)*(Kr+1)] flat [trip, leg] -> movement, -1 = none
    route_legs: int  # Kr + 1, the row stride of route_movement
    vehicle: torch.Tensor  # [B, T+1, F] float32 vehicle parameters (VEHICLE_FIELDS)
    entry_order: torch.Tensor  # [B, T+1] trip ids sorted by (origin, depart, id); pad -> T
    origin_start: torch.Tensor  # [B, R] first position of each origin road in entry_order
    origin_end: torch.Tensor  # [B, R] one past the last
    departed_by: torch.Tensor  # [B, H+1] trips with depart <= h (h clipped to H)
    free_flow_time: torch.Tensor  # [B, T+1] float32 route length / speed limit, seconds
    horizon: int  # H: every real trip departs before H
    # incidents, per copy (envs/incidents/perturbations.py builds them; None = none anywhere): lane k of
    # copy b has capacity factor incident_factor[b, k] for incident_start <= t < incident_end
    # (0 = closed: nothing leaves the lane; in (0, 1) = its speed limit scaled); lane -1 = padding
    incident_lane: torch.Tensor | None = None  # [B, K] int64
    incident_start: torch.Tensor | None = None  # [B, K] int64 step
    incident_end: torch.Tensor | None = None  # [B, K] int64 step
    incident_factor: torch.Tensor | None = None  # [B, K] float32

    @property
    def batch_size(self) -> int:
        return int(self.depart.shape[0])

    @property
    def max_trips(self) -> int:
        return int(self.depart.shape[1]) - 1

    @property
    def shape(self) -> "DemandShape":
        return DemandShape(self.max_trips, self.route_legs - 1, self.horizon)

    def to(self, device: str | torch.device) -> "Demand":
        return tensors_to(self, device)



@dataclass(frozen=True)
class DemandShape:
    """The padded sizes of a `Demand`: trips per copy, route legs, horizon (steps)."""

    trips: int
    legs: int
    horizon: int


def demand_shape(samples: list[Trips]) -> DemandShape:
    """The smallest padded sizes that hold every sample."""
    return DemandShape(
        trips=max(s.num_trips for s in samples),
        legs=max(s.routes.shape[1] for s in samples),
        horizon=int(max(s.depart.max() for s in samples)) + 1,
    )


def stack_demand(
    samples: list[Trips], network: Network, shape: DemandShape | None = None
) -> Demand:
    """Pad and stack B trip tables; check every route against the network's movements.

    `shape` pads to at least the given sizes (so that demands drawn later keep the tensors'
    shapes, and a compiled step its compiled code)."""
    if len(samples) < 1:
        raise ConfigError("<engine>", "copies", len(samples), "need at least one copy (B >= 1)")
    batch = len(samples)
    need = demand_shape(samples)
    if shape is not None:
        need = DemandShape(*(max(a, b) for a, b in zip(
            (need.trips, need.legs, need.horizon), (shape.trips, shape.legs, shape.horizon)
        )))
    num_trips, legs, horizon = need.trips, need.legs, need.horizon
    width = num_trips + 1  # + scratch trip
    num_roads = network.num_roads

    depart = np.full((batch, width), NEVER, dtype=np.int64)
    origin = np.zeros((batch, width), dtype=np.int64)
    route_mov = np.full((batch, width, legs + 1), -1, dtype=np.int64)
    vehicle = np.zeros((batch, width, len(VEHICLE_FIELDS)), dtype=np.float32)
    vehicle[:, :, :] = list(VEHICLE_DEFAULTS.values())  # harmless values for padding rows
    entry_order = np.full((batch, width), num_trips, dtype=np.int64)
    origin_start = np.zeros((batch, num_roads), dtype=np.int64)
    origin_end = np.zeros((batch, num_roads), dtype=np.int64)
    departed_by = np.zeros((batch, horizon + 1), dtype=np.int64)
    free_flow = np.zeros((batch, width), dtype=np.float32)
    road_time = (network.road_length / _road_speed(network)).cpu().numpy()

    movements_of: dict[int, np.ndarray] = {}  # identical copies share one route compile
    for b, sample in enumerate(samples):
        n = sample.num_trips
        depart[b, :n] = sample.depart
        origin[b, :n] = sample.routes[:, 0]
        if id(sample) not in movements_of:
            movements_of[id(sample)] = route_movements(sample, network)
        route_mov[b, :n, : sample.routes.shape[1] - 1] = movements_of[id(sample)]
        vehicle[b, :n] = sample.vehicle
        valid = sample.routes >= 0
        free_flow[b, :n] = np.where(valid, road_time[np.maximum(sample.routes, 0)], 0).sum(1)
        order = np.lexsort((np.arange(n), sample.depart, sample.routes[:, 0]))
        entry_order[b, :n] = order
        counts = np.bincount(sample.routes[:, 0], minlength=num_roads)
        origin_end[b] = np.cumsum(counts)
        origin_start[b] = origin_end[b] - counts
        per_step = np.bincount(np.minimum(sample.depart, horizon), minlength=horizon + 1)
        departed_by[b] = np.cumsum(per_step)[: horizon + 1]

    def t(x):
        return torch.as_tensor(np.ascontiguousarray(x), device=network.device)

    return Demand(
        num_trips=t(np.array([s.num_trips for s in samples], dtype=np.int64)),
        depart=t(depart),
        origin=t(origin),
        route_movement=t(route_mov.reshape(batch, -1)),
        route_legs=legs + 1,
        vehicle=t(vehicle),
        entry_order=t(entry_order),
        origin_start=t(origin_start),
        origin_end=t(origin_end),
        departed_by=t(departed_by),
        free_flow_time=t(free_flow),
        horizon=horizon,
    )


def _road_speed(network: Network) -> torch.Tensor:
    """Fastest lane speed of each road [R]."""
    lanes = network.road_lanes
    speeds = torch.where(lanes >= 0, network.lane_max_speed[lanes.clamp(min=0)], 0.0)
    return speeds.max(dim=1).values


_MOVEMENT_TABLES: "weakref.WeakKeyDictionary[Network, np.ndarray]" = weakref.WeakKeyDictionary()


def _movement_table(network: Network) -> np.ndarray:
    """``[R, R]`` movement id from road a to road b (-1: none), built once per network."""
    table = _MOVEMENT_TABLES.get(network)
    if table is None:
        table = np.full((network.num_roads, network.num_roads), -1, dtype=np.int64)
        for (a, b), m in network.movement_of_pair.items():
            table[a, b] = m
        _MOVEMENT_TABLES[network] = table
    return table


def route_movements(sample: Trips, network: Network) -> np.ndarray:
    """[T, Kr-1] movement ids between consecutive roads of each route (-1 past the end)."""
    routes = sample.routes
    table = _movement_table(network)
    start, end = routes[:, :-1], routes[:, 1:]
    live = end >= 0
    out = np.where(live, table[np.maximum(start, 0), np.maximum(end, 0)], -1)
    broken = live & (out < 0)
    if broken.any():
        row, k = (int(x) for x in np.argwhere(broken)[0])
        a, b = int(start[row, k]), int(end[row, k])
        raise ScenarioError(
            sample.source, f"[{int(sample.flow_index[row])}].route[{k + 1}]", network.road_ids[b],
            f"no road link from {network.road_ids[a]} to {network.road_ids[b]}",
        )
    return out
