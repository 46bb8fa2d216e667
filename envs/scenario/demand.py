"""Trip tables: who departs when, along which movements, with which vehicle parameters.

`Trips` is one demand sample in numpy (built from a CityFlow flow file or a generator);
`Demand` stacks the K distinct samples that B copies run into padded tensors ``[K, T, ...]``
plus a ``[B]`` index from copy to sample, so every copy of a batch can run its own demand
(different seeds or resamplings) in one engine step while copies of one sample share its tables.

Padding trips never depart (``depart = NEVER``) and route nowhere.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch

from envs.errors import ConfigError, ScenarioError
from envs.scenario.network import Network, tensors_to
from envs.scenario.spec import FlowFileSpec, VehicleSpec

NEVER = 2**31 - 1  # departure step of padding trips (int32's largest: `Demand.depart` is int32)
# vehicle parameter columns in Trips.vehicle / Demand.vehicle (names of VehicleSpec fields)
VEHICLE_FIELDS = (
    "length", "min_gap", "max_speed", "max_pos_acc", "usual_neg_acc", "max_neg_acc", "headway_time",
    "sigma",
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

    # each flow's route and vehicle row once, gathered per trip (a mask per flow was quadratic
    # in a SUMO import's one-vehicle flows: 80,000 of them took 29 s)
    max_route = max(len(flow.route) for flow in flows.flows)
    route_table = np.full((len(flows.flows), max_route), -1, dtype=np.int64)
    vehicle_table = np.zeros((len(flows.flows), len(VEHICLE_FIELDS)), dtype=np.float32)
    for row, flow in enumerate(flows.flows):
        route_table[row, : len(flow.route)] = [road_index[r] for r in flow.route]
        vehicle_table[row] = vehicle_row(flow.vehicle)
    table_index = np.array([flow.index for flow in flows.flows], dtype=np.int64)
    by_index = np.argsort(table_index, kind="stable")
    row_of_trip = by_index[np.searchsorted(table_index[by_index], flow_index)]
    routes, vehicle = route_table[row_of_trip], vehicle_table[row_of_trip]
    return Trips(flows.source, depart, routes, vehicle, flow_index)


@dataclass(frozen=True, eq=False)
class Demand:
    """The trip tables of K distinct demand samples, shared by the B copies that run them.

    Copy b runs sample ``sample_of_copy[b]``. Every per-trip table has one row per *sample*
    ``[K, ...]``, not per copy: B copies of one sample cost one table, so memory grows with the
    number of distinct samples, not with the batch (`stack_demand` finds the copies that share
    a sample). The step reads a copy's row through `envs.engine.ops.take_sample`; host-side code
    that wants the ``[B, ...]`` view calls `per_copy` (a gathered copy: use it sparingly).
    Integer tables use the narrowest dtype that holds their values (`index_dtype`); readers
    widen what they use as an index. Row T of each per-trip table is a scratch trip."""

    sample_of_copy: torch.Tensor  # [B] int64 the sample (row of the tables below) copy b runs
    num_trips: torch.Tensor  # [B] int64 real trips per copy
    depart: torch.Tensor  # [K, T+1] int32 (NEVER for padding and the scratch row)
    origin: torch.Tensor  # [K, T+1] first road (0 for padding), index_dtype
    route_movement: torch.Tensor  # [K, (T+1)*(Kr+1)] flat [trip, leg] -> movement, -1 = none
    route_legs: int  # Kr + 1, the row stride of route_movement
    vehicle: torch.Tensor  # [K, T+1, F] float32 vehicle parameters (VEHICLE_FIELDS)
    entry_order: torch.Tensor  # [K, T+1] trip ids sorted by (origin, depart, id); pad -> T
    origin_start: torch.Tensor  # [K, R] first position of each origin road in entry_order
    origin_end: torch.Tensor  # [K, R] one past the last
    departed_by: torch.Tensor  # [K, H+1] trips with depart <= h (h clipped to H)
    # [K, T+1] float32 seconds: the route's road lengths / speed limits, junction boxes not counted
    # (~3-4 s each on the generated grids); only sizes the slot pool (`default_slots`), no metric
    free_flow_time: torch.Tensor
    horizon: int  # H: every real trip departs before H
    # each trip's driver imperfection (`VehicleSpec.sigma`, the car following's dawdling), or None
    # when no trip of any sample has one: the step then runs without drawing a number
    sigma: torch.Tensor | None = None  # [K, T+1] float32
    # incidents, per copy (envs/incidents/perturbations.py builds them; None = none anywhere): lane k of
    # copy b has capacity factor incident_factor[b, k] for incident_start <= t < incident_end
    # (0 = closed: nothing leaves the lane; in (0, 1) = its speed limit scaled); lane -1 = padding
    incident_lane: torch.Tensor | None = None  # [B, K] int64
    incident_start: torch.Tensor | None = None  # [B, K] int64 step
    incident_end: torch.Tensor | None = None  # [B, K] int64 step
    incident_factor: torch.Tensor | None = None  # [B, K] float32
    # where along the lane (envs/engine/incident_rules.py): metres from the lane's start, or < 0 =
    # at its stop line (the whole lane); None = every incident at its stop line
    incident_pos: torch.Tensor | None = None  # [B, K] float32

    @property
    def batch_size(self) -> int:
        return int(self.sample_of_copy.shape[0])

    @property
    def num_samples(self) -> int:
        """K: the distinct samples the copies run (rows of the trip tables)."""
        return int(self.depart.shape[0])

    @property
    def max_trips(self) -> int:
        return int(self.depart.shape[1]) - 1

    @property
    def shape(self) -> "DemandShape":
        return DemandShape(self.max_trips, self.route_legs - 1, self.horizon)

    def per_copy(self, table: torch.Tensor) -> torch.Tensor:
        """``[B, ...]``: each copy's row of a per-sample table (a new tensor, same dtype)."""
        return table.index_select(0, self.sample_of_copy)

    def table_bytes(self) -> int:
        """Bytes held by the demand's tensors (tables, per-copy index and incidents)."""
        return sum(v.numel() * v.element_size() for v in vars(self).values() if isinstance(v, torch.Tensor))

    def to(self, device: str | torch.device) -> "Demand":
        return tensors_to(self, device)


def index_dtype(low: int, high: int) -> torch.dtype:
    """The narrowest integer dtype (int16, int32, int64) that holds every value in [low, high]."""
    for dtype in (torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    return torch.int64


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
    """Pad and stack the trip tables of B copies; check every route against the network's
    movements. Copies given the same `Trips` object share one row of the tables.

    `shape` pads to at least the given sizes (so that demands drawn later keep the tensors'
    shapes, and a compiled step its compiled code)."""
    if len(samples) < 1:
        raise ConfigError("<engine>", "copies", len(samples), "need at least one copy (B >= 1)")
    row_of: dict[int, int] = {}  # id(Trips) -> its row: identical copies share one table row
    distinct: list[Trips] = []
    for sample in samples:
        if id(sample) not in row_of:
            row_of[id(sample)] = len(distinct)
            distinct.append(sample)
    sample_of_copy = np.array([row_of[id(s)] for s in samples], dtype=np.int64)
    need = demand_shape(distinct)
    if shape is not None:
        need = DemandShape(*(max(a, b) for a, b in zip(
            (need.trips, need.legs, need.horizon), (shape.trips, shape.legs, shape.horizon)
        )))
    num_trips, legs, horizon = need.trips, need.legs, need.horizon
    if horizon >= NEVER:
        raise ScenarioError(distinct[0].source, "depart", horizon - 1, f"departure steps must be below {NEVER}")
    width = num_trips + 1  # + scratch trip
    num_roads = network.num_roads
    count = len(distinct)

    def narrow(low: int, high: int) -> np.dtype:
        return torch.empty(0, dtype=index_dtype(low, high)).numpy().dtype

    position = narrow(0, num_trips)  # trip ids (T: the scratch trip), queue positions, counts
    depart = np.full((count, width), NEVER, dtype=np.int32)
    origin = np.zeros((count, width), dtype=narrow(0, num_roads - 1))
    route_mov = np.full((count, width, legs + 1), -1, dtype=narrow(-1, network.num_movements - 1))
    vehicle = np.zeros((count, width, len(VEHICLE_FIELDS)), dtype=np.float32)
    vehicle[:, :, :] = list(VEHICLE_DEFAULTS.values())  # harmless values for padding rows
    entry_order = np.full((count, width), num_trips, dtype=position)
    origin_start = np.zeros((count, num_roads), dtype=position)
    origin_end = np.zeros((count, num_roads), dtype=position)
    departed_by = np.zeros((count, horizon + 1), dtype=position)
    free_flow = np.zeros((count, width), dtype=np.float32)
    road_time = (network.road_length / _road_speed(network)).cpu().numpy()

    for k, sample in enumerate(distinct):
        n = sample.num_trips
        depart[k, :n] = sample.depart
        origin[k, :n] = sample.routes[:, 0]
        route_mov[k, :n, : sample.routes.shape[1] - 1] = route_movements(sample, network)
        vehicle[k, :n] = sample.vehicle
        valid = sample.routes >= 0
        free_flow[k, :n] = np.where(valid, road_time[np.maximum(sample.routes, 0)], 0).sum(1)
        order = np.lexsort((np.arange(n), sample.depart, sample.routes[:, 0]))
        entry_order[k, :n] = order
        counts = np.bincount(sample.routes[:, 0], minlength=num_roads)
        origin_end[k] = np.cumsum(counts)
        origin_start[k] = origin_end[k] - counts
        per_step = np.bincount(np.minimum(sample.depart, horizon), minlength=horizon + 1)
        departed_by[k] = np.cumsum(per_step)[: horizon + 1]

    def t(x):
        return torch.as_tensor(np.ascontiguousarray(x), device=network.device)

    sigma = vehicle[:, :, VEHICLE_COLUMN["sigma"]]

    return Demand(
        sample_of_copy=t(sample_of_copy),
        num_trips=t(np.array([s.num_trips for s in samples], dtype=np.int64)),
        depart=t(depart),
        origin=t(origin),
        route_movement=t(route_mov.reshape(count, -1)),
        route_legs=legs + 1,
        vehicle=t(vehicle),
        sigma=t(sigma) if sigma.any() else None,
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
