"""Validated, plain-Python description of a scenario in CityFlow's vocabulary.

The loader (`envs.scenario.cityflow`) turns CityFlow ``roadnet.json`` / ``flow.json`` dicts into
these frozen dataclasses after checking them; the generator (`envs.scenario.generate`) produces the
same dicts, so generated and real scenarios share one validation path. `envs.scenario.network`
compiles a `RoadnetSpec` into the tensor `Network` the engine runs on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ROAD_LINK_TYPES = ("go_straight", "turn_left", "turn_right")


@dataclass(frozen=True)
class VehicleSpec:
    """Vehicle parameters of one flow (CityFlow's ``vehicle`` block; SI units)."""

    length: float = 5.0
    width: float = 2.0
    max_pos_acc: float = 2.0
    max_neg_acc: float = 4.5
    usual_pos_acc: float = 2.0
    usual_neg_acc: float = 4.5
    min_gap: float = 2.5
    max_speed: float = 11.111
    headway_time: float = 2.0
    # driver imperfection in [0, 1] (SUMO's Krauss ``sigma``; a gridlight extension of the flow
    # file, which CityFlow ignores): 0 = none, as CityFlow drives
    sigma: float = 0.0


@dataclass(frozen=True)
class LaneSpec:
    width: float
    max_speed: float


@dataclass(frozen=True)
class RoadSpec:
    id: str
    start_intersection: str
    end_intersection: str
    points: tuple[tuple[float, float], ...]
    lanes: tuple[LaneSpec, ...]

    @property
    def length(self) -> float:
        return polyline_length(self.points)


@dataclass(frozen=True)
class LaneLinkSpec:
    start_lane: int
    end_lane: int
    length: float  # length of the path through the intersection, metres


@dataclass(frozen=True)
class RoadLinkSpec:
    type: str  # one of ROAD_LINK_TYPES
    start_road: str
    end_road: str
    lane_links: tuple[LaneLinkSpec, ...]


@dataclass(frozen=True)
class PhaseSpec:
    duration: float  # seconds, as written in the roadnet's plan
    road_links: tuple[int, ...]  # indices into the intersection's road_links
    # the green road links that yield inside the box (SUMO's lowercase 'g', unsignalised
    # junctions): a subset of road_links that may cross other greens of the phase (the engine
    # has no in-box conflicts, so they flow like any green); CityFlow files have none
    permissive: tuple[int, ...] = ()


@dataclass(frozen=True)
class IntersectionSpec:
    id: str
    point: tuple[float, float]
    virtual: bool
    width: float
    road_links: tuple[RoadLinkSpec, ...]
    phases: tuple[PhaseSpec, ...]
    # (minor, major) road-link pairs: the minor link gives way to the major one while it shows
    # a permissive green (SUMO's right of way; CityFlow files have none)
    yields: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class RoadnetSpec:
    source: str  # file path, or "<generated:NAME>"
    roads: tuple[RoadSpec, ...]
    intersections: tuple[IntersectionSpec, ...]


@dataclass(frozen=True)
class FlowSpec:
    """One flow entry: vehicles on `route` every `interval` s from `start_time` to `end_time`."""

    index: int  # position in the flow file, for error messages
    vehicle: VehicleSpec
    route: tuple[str, ...]
    interval: float
    start_time: float
    end_time: float  # -1 in CityFlow means "no end"; the loader rejects it without a horizon


@dataclass(frozen=True)
class FlowFileSpec:
    source: str
    flows: tuple[FlowSpec, ...]


def polyline_length(points: tuple[tuple[float, float], ...]) -> float:
    return float(sum(math.dist(points[i], points[i + 1]) for i in range(len(points) - 1)))
