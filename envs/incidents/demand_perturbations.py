"""What a perturbation does to a copy's demand: the lane incidents it draws (`sample_incidents`,
placed uniformly or by `lane_traffic`), the incident tables it writes (`with_incidents`) and the
surge it applies to the trips (`surge_trips`). Semantics: `envs.incidents.perturbations`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from envs.errors import ConfigError
from envs.incidents.perturbation_specs import SOURCE, IncidentSpec, Perturbation, stream_rng, time_window
from envs.scenario.demand import Demand, Trips, route_movements
from envs.scenario.network import Network


@dataclass(frozen=True)
class Incident:
    lane: int  # global lane id
    start: int  # step
    end: int  # step (exclusive)
    factor: float
    position: float | None = None  # metres from the lane's start; None = at its stop line (whole lane)


def lane_traffic(network: Network, trips: Trips) -> np.ndarray:
    """``[L]`` vehicles each lane carries under `trips` (how trips are shared: module doc)."""
    pad = network.num_lanes  # a scratch column for the tables' -1 padding

    def share(lanes: np.ndarray, vehicles: np.ndarray) -> np.ndarray:
        """`vehicles` ``[K]`` shared evenly by the lanes of each row of `lanes` ``[K, E]``."""
        used = lanes >= 0
        each = vehicles / np.maximum(used.sum(1), 1)
        out = np.zeros(pad + 1)
        np.add.at(out, np.where(used, lanes, pad), np.where(used, each[:, None], 0.0))
        return out[:pad]

    moves = route_movements(trips, network)  # [T, legs - 1] each trip's movements, -1 past its end
    per_movement = np.bincount(moves[moves >= 0], minlength=network.num_movements)
    legs = (trips.routes >= 0).sum(1)
    last_road = trips.routes[np.arange(trips.num_trips), np.maximum(legs - 1, 0)][legs > 0]
    per_last_road = np.bincount(last_road, minlength=network.num_roads)
    return (share(network.movement_in_lanes.cpu().numpy(), per_movement)
            + share(network.road_lanes.cpu().numpy(), per_last_road))


def _draw_lanes(spec: IncidentSpec, network: Network, rng: np.random.Generator, trips: Trips | None,
                count: int) -> np.ndarray:
    pool = spec.lane_pool(network)
    if spec.placement == "uniform":
        return rng.choice(pool, size=count, replace=count > pool.size)
    if trips is None:
        raise ConfigError(SOURCE, "incidents.placement", spec.placement,
                            "traffic placement needs the copy's trips (pass trips= to sample_incidents)")
    weight = lane_traffic(network, trips)[pool]
    used = int((weight > 0).sum())
    if used == 0:
        raise ConfigError(SOURCE, "incidents.placement", spec.placement,
                            f"no trip of {trips.source} uses a lane of the incident pool: nothing to weight by")
    return rng.choice(pool, size=count, replace=count > used, p=weight / weight.sum())


def sample_incidents(perturbation: Perturbation, network: Network, split: str, index: int,
                     trips: Trips | None = None) -> list[Incident]:
    """The incidents of copy `index` of `split` (distinct lanes while the pool allows; with
    ``rate_per_hour``, a Poisson number of them, drawn first from the copy's stream). `trips`:
    the copy's demand, which ``placement: traffic`` weights the lanes by."""
    spec = perturbation.incidents
    if spec is None or spec.none:
        return []
    rng = stream_rng(perturbation, split, index, "incidents")
    count = spec.draw_count(rng)  # `count` itself draws nothing: count-mode draws are what they always were
    if count == 0:
        return []
    lanes = _draw_lanes(spec, network, rng, trips, count)
    low, high = time_window(spec.start_s, "incidents.start_s")
    starts = rng.integers(int(low), int(high) + 1, size=count)
    # drawn after the lanes and times, so that stop-line incidents keep the draws they always had
    positions = _draw_positions(spec, network, lanes, rng)
    return [Incident(int(lane), int(t), int(t + round(spec.duration_s)), float(spec.capacity), where)
            for lane, t, where in zip(lanes, starts, positions)]


def _draw_positions(spec: IncidentSpec, network: Network, lanes: np.ndarray,
                    rng: np.random.Generator) -> list[float | None]:
    """Metres from each incident's lane start (None: at the stop line), per ``spec.position``."""
    if spec.position == "stop_line":
        return [None] * len(lanes)
    length = network.lane_length.cpu().numpy().astype(np.float64)[lanes]
    fraction = rng.random(len(lanes)) if spec.position == "random" else np.full(len(lanes), float(spec.position))
    return [float(x) for x in fraction * length]


def with_incidents(demand: Demand, per_copy: list[list[Incident]]) -> Demand:
    """`demand` with the given incidents of each copy (its incident tables replaced)."""
    if len(per_copy) != demand.batch_size:
        raise ConfigError(SOURCE, "incidents", len(per_copy), f"need one list per copy ({demand.batch_size})")
    width = max((len(x) for x in per_copy), default=0)
    if width == 0:
        return replace(demand, incident_lane=None, incident_start=None, incident_end=None, incident_factor=None,
                       incident_pos=None)
    device = demand.depart.device
    lane = torch.full((demand.batch_size, width), -1, dtype=torch.int64)
    start = torch.zeros((demand.batch_size, width), dtype=torch.int64)
    end = torch.zeros((demand.batch_size, width), dtype=torch.int64)
    factor = torch.ones((demand.batch_size, width), dtype=torch.float32)
    position = torch.full((demand.batch_size, width), -1.0, dtype=torch.float32)  # < 0: at the stop line
    for b, incidents in enumerate(per_copy):
        for k, incident in enumerate(incidents):
            lane[b, k], start[b, k], end[b, k], factor[b, k] = (
                incident.lane, incident.start, incident.end, incident.factor)
            if incident.position is not None:
                position[b, k] = incident.position
    # without an incident at a place the step runs exactly as it always has (no placed rules)
    placed = any(i.position is not None for incidents in per_copy for i in incidents)
    return replace(demand, incident_lane=lane.to(device), incident_start=start.to(device),
                   incident_end=end.to(device), incident_factor=factor.to(device),
                   incident_pos=position.to(device) if placed else None)


def surge_trips(trips: Trips, perturbation: Perturbation, split: str, index: int) -> Trips:
    """`trips` with the surge applied (see the module doc); unchanged without a surge."""
    spec = perturbation.surge
    if spec is None:
        return trips
    rng = stream_rng(perturbation, split, index, "surge")
    factor = spec.factor(trips.depart)
    whole = np.floor(factor)
    copies = (whole + (rng.random(trips.num_trips) < factor - whole)).astype(np.int64)
    rows = np.repeat(np.arange(trips.num_trips), copies)
    order = np.lexsort((trips.flow_index[rows], trips.depart[rows]))  # (departure, flow) as sampled
    rows = rows[order]
    return Trips(f"{trips.source}+surge", trips.depart[rows], trips.routes[rows], trips.vehicle[rows],
                 trips.flow_index[rows])
