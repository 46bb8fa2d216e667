"""Compile a validated `RoadnetSpec` into the frozen tensor `Network` the engine runs on.

Indexing conventions (all fixed at compile time, shapes in brackets):

- roads ``r in [0, R)`` in file order; lanes ``l in [0, L)`` numbered road by road, lane 0 of a
  road being its leftmost (CityFlow's convention); ``E`` = most lanes on any road.
- signalised intersections ``i in [0, I)`` = the non-virtual intersections in file order.
- movements (CityFlow's roadLinks) are numbered ``m = i * K + k`` where ``k`` is the roadLink's
  index inside intersection ``i`` and ``K`` the most roadLinks at any intersection; padding
  movements (``k`` beyond an intersection's count) have ``movement_valid == False``.
- phases ``p in [0, P)`` per intersection, padded to the most phases at any intersection.

A *transition phase* is one that serves no movement except right turns the other phases serve too
(CityFlow's phase 0); the engine inserts yellow and all-red itself, so controllers that choose
phases use ``signal_phase`` (phases serving at least one non-right-turn movement, and those serving
a right turn no such phase serves: e.g. the one phase of a junction whose only movement turns right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from envs.errors import ConfigError, ScenarioError
from envs.scenario.spec import RoadnetSpec

MOVEMENT_TYPES = {"go_straight": 0, "turn_left": 1, "turn_right": 2}
STRAIGHT, LEFT, RIGHT = 0, 1, 2


@dataclass(frozen=True, eq=False)
class Network:
    """Frozen arrays describing a road network; built once, never mutated."""

    source: str
    road_ids: tuple[str, ...]
    intersection_ids: tuple[str, ...]  # signalised (non-virtual) intersections, index i
    # Python-side lookup for compiling routes: (road a, road b) -> movement id
    movement_of_pair: dict[tuple[int, int], int] = field(repr=False)

    # lanes [L]
    lane_road: torch.Tensor
    lane_index: torch.Tensor  # index of the lane inside its road (0 = leftmost)
    lane_length: torch.Tensor  # metres, float32
    lane_max_speed: torch.Tensor  # m/s, float32
    # roads [R]
    road_lanes: torch.Tensor  # [R, E] global lane ids, -1 padding
    road_length: torch.Tensor  # [R] float32
    road_start: torch.Tensor  # [R] signalised intersection index the road leaves, -1 if virtual
    road_end: torch.Tensor  # [R] signalised intersection index the road enters, -1 if virtual
    # movements [M = I * K]
    movement_valid: torch.Tensor  # [M] bool
    movement_type: torch.Tensor  # [M] 0 straight, 1 left, 2 right (-1 padding)
    movement_start_road: torch.Tensor  # [M] (0 for padding)
    movement_end_road: torch.Tensor  # [M] (0 for padding)
    # [M] bool: a U-turn, the end road leading back to the junction the start road came from
    movement_turnaround: torch.Tensor
    movement_from_lane: torch.Tensor  # [M, E] bool: lane e of the start road has a lane link in m
    movement_to_lane: torch.Tensor  # [M, E] bool: lane e of the end road receives a lane link
    movement_target: torch.Tensor  # [M, E, E] bool: lane link from start lane e to end lane e'
    link_length: torch.Tensor  # [M, E, E] float32: path length through the intersection
    movement_in_lanes: torch.Tensor  # [M, E] global ids of start lanes used by m, -1 padding
    movement_out_lanes: torch.Tensor  # [M, E] global ids of end lanes used by m, -1 padding
    # phases [I, P]
    num_phases: torch.Tensor  # [I] int64
    phase_green: torch.Tensor  # [I, P, K] bool: movement k green in phase p
    phase_duration: torch.Tensor  # [I, P] float32 seconds, the roadnet's own plan (0 padding)
    phase_valid: torch.Tensor  # [I, P] bool
    signal_phase: torch.Tensor  # [I, P] bool: serves a non-right-turn movement (see module doc)
    phase_removes_green: torch.Tensor  # [I, P, P] bool: switching p -> q ends some green
    conflict: torch.Tensor  # [I, K, K] bool: movements whose paths cross
    phase_permissive: torch.Tensor  # [I, P, K] bool: a green of phase p that yields (SUMO's 'g')
    # right of way [Q]: movement yield_minor[q] gives way to yield_major[q] (same intersection)
    # while the minor one is a permissive green; empty for CityFlow networks
    yield_minor: torch.Tensor
    yield_major: torch.Tensor

    @property
    def num_lanes(self) -> int:
        return int(self.lane_road.shape[0])

    @property
    def num_roads(self) -> int:
        return len(self.road_ids)

    @property
    def num_intersections(self) -> int:
        return len(self.intersection_ids)

    @property
    def movements_per_intersection(self) -> int:
        return int(self.phase_green.shape[2])

    @property
    def num_movements(self) -> int:
        return int(self.movement_valid.shape[0])

    @property
    def max_lanes_per_road(self) -> int:
        return int(self.road_lanes.shape[1])

    @property
    def device(self) -> torch.device:
        return self.lane_length.device

    def to(self, device: str | torch.device) -> "Network":
        return tensors_to(self, device)

    def storage_capacity(self, vehicle_length: float = 5.0, min_gap: float = 2.5) -> int:
        """Vehicles the lanes hold bumper to bumper (a bound on vehicles in the network)."""
        per_lane = torch.floor(self.lane_length / (vehicle_length + min_gap)) + 1
        return int(per_lane.sum().item())


def lane_ids(network: Network) -> list[str]:
    """CityFlow's lane ids, ``<road id>_<lane index>``, by global lane id."""
    names = [""] * network.num_lanes
    for road, lanes in enumerate(network.road_lanes.tolist()):
        for index, lane in enumerate(lanes):
            if lane >= 0:
                names[lane] = f"{network.road_ids[road]}_{index}"
    return names


def tensors_to(frozen, device: str | torch.device):
    """A copy of a frozen dataclass with every tensor field moved to `device`."""
    moved = {
        name: (value.to(device) if isinstance(value, torch.Tensor) else value)
        for name, value in frozen.__dict__.items()
    }
    return type(frozen)(**moved)


def check_device(device, source: str = "<engine>", field: str = "device") -> torch.device:
    """`device` as a `torch.device` this machine has, else a `ConfigError` naming `field`: a
    request for CUDA where there is none fails here instead of running on the CPU."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(source, field, device, f"not a torch device ({error})") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(source, field, device, "CUDA is not available on this machine; "
                          "use device='cpu'")
    count = torch.cuda.device_count() if parsed.type == "cuda" else 0
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= count:
        raise ConfigError(source, field, device,
                          f"this machine has {count} CUDA device(s)")
    try:
        torch.empty(0, device=parsed)
    except (RuntimeError, AssertionError) as error:
        raise ConfigError(source, field, device, f"not usable here ({error})") from None
    return parsed


def compile_network(spec: RoadnetSpec, device: str | torch.device = "cpu") -> Network:
    """Turn a validated roadnet into tensors; checks that no phase shows crossing movements."""
    device = check_device(device)
    roads = spec.roads
    road_index = {road.id: r for r, road in enumerate(roads)}
    signalised = [x for x in spec.intersections if not x.virtual]
    inter_index = {x.id: i for i, x in enumerate(signalised)}
    file_index = {x.id: k for k, x in enumerate(spec.intersections)}  # its place in the roadnet file

    num_roads = len(roads)
    max_lanes = max(len(road.lanes) for road in roads)
    road_lanes = np.full((num_roads, max_lanes), -1, dtype=np.int64)
    lane_road, lane_idx, lane_len, lane_speed = [], [], [], []
    for r, road in enumerate(roads):
        for e, lane in enumerate(road.lanes):
            road_lanes[r, e] = len(lane_road)
            lane_road.append(r)
            lane_idx.append(e)
            lane_len.append(road.length)
            lane_speed.append(lane.max_speed)

    num_inter = len(signalised)
    max_links = max((len(x.road_links) for x in signalised), default=1) or 1
    max_phases = max((len(x.phases) for x in signalised), default=1) or 1
    num_mov = num_inter * max_links

    mov_valid = np.zeros(num_mov, dtype=bool)
    mov_type = np.full(num_mov, -1, dtype=np.int64)
    mov_start = np.zeros(num_mov, dtype=np.int64)
    mov_end = np.zeros(num_mov, dtype=np.int64)
    mov_turnaround = np.zeros(num_mov, dtype=bool)
    mov_from = np.zeros((num_mov, max_lanes), dtype=bool)
    mov_to = np.zeros((num_mov, max_lanes), dtype=bool)
    mov_target = np.zeros((num_mov, max_lanes, max_lanes), dtype=bool)
    link_len = np.zeros((num_mov, max_lanes, max_lanes), dtype=np.float32)
    movement_of_pair: dict[tuple[int, int], int] = {}

    num_phases = np.zeros(num_inter, dtype=np.int64)
    phase_green = np.zeros((num_inter, max_phases, max_links), dtype=bool)
    phase_permissive = np.zeros((num_inter, max_phases, max_links), dtype=bool)
    yield_pairs: list[tuple[int, int]] = []
    phase_duration = np.zeros((num_inter, max_phases), dtype=np.float32)
    conflict = np.zeros((num_inter, max_links, max_links), dtype=bool)

    for i, inter in enumerate(signalised):
        for k, link in enumerate(inter.road_links):
            m = i * max_links + k
            a, b = road_index[link.start_road], road_index[link.end_road]
            mov_valid[m] = True
            mov_type[m] = MOVEMENT_TYPES[link.type]
            mov_start[m], mov_end[m] = a, b
            mov_turnaround[m] = roads[b].end_intersection == roads[a].start_intersection
            movement_of_pair.setdefault((a, b), m)
            for lane_link in link.lane_links:
                mov_from[m, lane_link.start_lane] = True
                mov_to[m, lane_link.end_lane] = True
                mov_target[m, lane_link.start_lane, lane_link.end_lane] = True
                link_len[m, lane_link.start_lane, lane_link.end_lane] = lane_link.length
        num_phases[i] = len(inter.phases)
        for p, phase in enumerate(inter.phases):
            phase_duration[i, p] = phase.duration
            phase_green[i, p, list(phase.road_links)] = True
            phase_permissive[i, p, list(phase.permissive)] = True
        yield_pairs += [(i * max_links + minor, i * max_links + major)
                        for minor, major in inter.yields]
        conflict[i, : len(inter.road_links), : len(inter.road_links)] = _crossing_conflicts(
            inter, roads, road_index
        )
        # the error names the intersection by its place in the file (a JSON path), as the parsers do
        _check_phases_conflict_free(spec.source, file_index[inter.id], inter, conflict[i])

    in_lanes = np.where(mov_from, road_lanes[mov_start], -1)
    out_lanes = np.where(mov_to, road_lanes[mov_end], -1)
    phase_valid = np.arange(max_phases)[None, :] < num_phases[:, None]
    non_right = mov_valid & (mov_type != RIGHT)
    non_right = non_right.reshape(num_inter, max_links)
    signal_phase = (phase_green & non_right[:, None, :]).any(-1) & phase_valid
    # a phase of right turns alone is a transition only where the signal phases green its turns too: one
    # that greens a movement no signal phase does is the only way to that movement's green (never commanded,
    # it was stranded after the first switch), and at an intersection of right turns alone it is all there is
    covered = (phase_green & signal_phase[:, :, None]).any(1)  # [I, K] green in some signal phase
    stranded = mov_valid.reshape(num_inter, max_links) & ~covered
    signal_phase |= (phase_green & stranded[:, None, :]).any(-1) & phase_valid
    # p -> q ends a green when some movement green in p is not green in q
    removes = (phase_green[:, :, None, :] & ~phase_green[:, None, :, :]).any(-1)

    road_start = np.array([inter_index.get(road.start_intersection, -1) for road in roads])
    road_end = np.array([inter_index.get(road.end_intersection, -1) for road in roads])

    def t(x, dtype=None):
        return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)

    return Network(
        source=spec.source,
        road_ids=tuple(road.id for road in roads),
        intersection_ids=tuple(x.id for x in signalised),
        movement_of_pair=movement_of_pair,
        lane_road=t(lane_road, torch.int64),
        lane_index=t(lane_idx, torch.int64),
        lane_length=t(lane_len, torch.float32),
        lane_max_speed=t(lane_speed, torch.float32),
        road_lanes=t(road_lanes),
        road_length=t([road.length for road in roads], torch.float32),
        road_start=t(road_start, torch.int64),
        road_end=t(road_end, torch.int64),
        movement_valid=t(mov_valid),
        movement_type=t(mov_type),
        movement_start_road=t(mov_start),
        movement_end_road=t(mov_end),
        movement_turnaround=t(mov_turnaround),
        movement_from_lane=t(mov_from),
        movement_to_lane=t(mov_to),
        movement_target=t(mov_target),
        link_length=t(link_len),
        movement_in_lanes=t(in_lanes),
        movement_out_lanes=t(out_lanes),
        num_phases=t(num_phases),
        phase_green=t(phase_green),
        phase_duration=t(phase_duration),
        phase_valid=t(phase_valid),
        signal_phase=t(signal_phase),
        phase_removes_green=t(removes),
        conflict=t(conflict),
        phase_permissive=t(phase_permissive),
        yield_minor=t([m for m, _ in yield_pairs], torch.int64),
        yield_major=t([f for _, f in yield_pairs], torch.int64),
    )


def _leg_angle(inter_point, far_point) -> float:
    return math.atan2(far_point[1] - inter_point[1], far_point[0] - inter_point[0])


def _crossing_conflicts(inter, roads, road_index) -> np.ndarray:
    """Movements whose paths cross inside the intersection box.

    Each movement is a chord of a circle around the intersection, from the point where its
    incoming road meets the circle to where its outgoing road leaves it. With right-hand
    traffic the incoming half of a leg lies just counter-clockwise of the leg's axis and the
    outgoing half just clockwise, so two chords cross exactly when their endpoints interleave.
    Chords sharing an endpoint (same approach, or merging into one exit road) do not cross:
    merges are resolved lane by lane by the engine's entry rule.
    """
    eps = 1e-3
    centre = inter.point
    chords = []
    for link in inter.road_links:
        inbound = roads[road_index[link.start_road]]
        outbound = roads[road_index[link.end_road]]
        a = _leg_angle(centre, inbound.points[-2]) + eps
        b = _leg_angle(centre, outbound.points[1]) - eps
        chords.append((a % (2 * math.pi), b % (2 * math.pi)))

    def inside(x, start, end):  # strictly inside the counter-clockwise arc start -> end
        span = (end - start) % (2 * math.pi)
        offset = (x - start) % (2 * math.pi)
        return 0 < offset < span

    n = len(chords)
    out = np.zeros((n, n), dtype=bool)
    for u in range(n):
        for v in range(u + 1, n):
            (a1, b1), (a2, b2) = chords[u], chords[v]
            if min(abs(a1 - a2), abs(b1 - b2), abs(a1 - b2), abs(b1 - a2)) < 1e-9:
                continue
            if inside(a2, a1, b1) != inside(b2, a1, b1):
                out[u, v] = out[v, u] = True
    return out


def _check_phases_conflict_free(source, at, inter, conflict) -> None:
    for p, phase in enumerate(inter.phases):
        links = list(phase.road_links)
        yielding = set(phase.permissive)  # a permissive green may cross: it yields in the box
        for u in links:
            for v in links:
                if u < v and conflict[u, v] and not {u, v} & yielding:
                    raise ScenarioError(
                        source,
                        f"intersections[{at}].trafficLight.lightphases[{p}].availableRoadLinks",
                        links,
                        f"road links {u} ({inter.road_links[u].start_road}->"
                        f"{inter.road_links[u].end_road}) and {v} "
                        f"({inter.road_links[v].start_road}->{inter.road_links[v].end_road}) "
                        f"cross inside the intersection {inter.id!r} and cannot be green together, unless the "
                        "phase lists one of them in permissiveRoadLinks too (it yields to the other)",
                    )
