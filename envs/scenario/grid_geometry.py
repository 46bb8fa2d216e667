"""Where a generated grid's intersections, roads and lanes lie (the CityFlow conventions of
`envs.scenario.generate`): ids, the grid cells, road and lane-link polylines."""

from __future__ import annotations

from dataclasses import dataclass

# Headings, counter-clockwise so that a left turn is +1 and a right turn is -1 (mod 4).
EAST, NORTH, WEST, SOUTH = 0, 1, 2, 3
_UNIT_VECTOR = {EAST: (1.0, 0.0), NORTH: (0.0, 1.0), WEST: (-1.0, 0.0), SOUTH: (0.0, -1.0)}
_GRID_STEP = {EAST: (1, 0), NORTH: (0, 1), WEST: (-1, 0), SOUTH: (0, -1)}
_BEZIER_SAMPLES = 5  # points per lane-link polyline: enough to give turns a sensible length


def intersection_id(x: int, y: int) -> str:
    return f"intersection_{x}_{y}"


def road_id(x: int, y: int, heading: int) -> str:
    return f"road_{x}_{y}_{heading}"


@dataclass(frozen=True)
class GridGeometry:
    """Which grid cells hold intersections, and where they are."""

    rows: int
    cols: int
    road_length: float
    boundary_length: float

    def is_signalised(self, x: int, y: int) -> bool:
        return 1 <= x <= self.cols and 1 <= y <= self.rows

    def is_virtual(self, x: int, y: int) -> bool:
        # The boundary ring sits next to a grid row or column; corners have no road to them.
        on_side_columns = x in (0, self.cols + 1) and 1 <= y <= self.rows
        on_side_rows = y in (0, self.rows + 1) and 1 <= x <= self.cols
        return on_side_columns or on_side_rows

    def exists(self, x: int, y: int) -> bool:
        return self.is_signalised(x, y) or self.is_virtual(x, y)

    def cells(self) -> list[tuple[int, int]]:
        """Every intersection cell, x-major like the datasets' files."""
        return [
            (x, y)
            for x in range(self.cols + 2)
            for y in range(self.rows + 2)
            if self.exists(x, y)
        ]

    def _axis_coordinate(self, index: int, count: int) -> float:
        if index == 0:
            return -self.boundary_length
        if index == count + 1:
            return (count - 1) * self.road_length + self.boundary_length
        return (index - 1) * self.road_length

    def position(self, x: int, y: int) -> tuple[float, float]:
        return self._axis_coordinate(x, self.cols), self._axis_coordinate(y, self.rows)

    def neighbour(self, x: int, y: int, heading: int) -> tuple[int, int]:
        dx, dy = _GRID_STEP[heading]
        return x + dx, y + dy

    def has_road(self, x: int, y: int, heading: int) -> bool:
        """Whether a road leaves (x, y) in `heading`: boundary cells only connect to the grid."""
        to_x, to_y = self.neighbour(x, y, heading)
        both_exist = self.exists(x, y) and self.exists(to_x, to_y)
        return both_exist and (self.is_signalised(x, y) or self.is_signalised(to_x, to_y))

    def outgoing_headings(self, x: int, y: int) -> list[int]:
        return [h for h in (EAST, NORTH, WEST, SOUTH) if self.has_road(x, y, h)]

    def incoming_headings(self, x: int, y: int) -> list[int]:
        """Headings of the roads arriving at (x, y), i.e. travelling towards it."""
        return [
            h
            for h in (EAST, NORTH, WEST, SOUTH)
            if self.has_road(*self.neighbour(x, y, (h + 2) % 4), h)
        ]


def grid_point(xy: tuple[float, float]) -> dict[str, float]:
    return {"x": round(xy[0], 3), "y": round(xy[1], 3)}


def _right_normal(heading: int) -> tuple[float, float]:
    ux, uy = _UNIT_VECTOR[heading]
    return uy, -ux  # right-hand traffic: lanes lie to the right of the centre line


def _lane_endpoint(
    centre: tuple[float, float],
    heading: int,
    lane: int,
    lane_width: float,
    distance_along: float,
) -> tuple[float, float]:
    """Centre of `lane` of a road heading `heading`, `distance_along` from the box centre."""
    ux, uy = _UNIT_VECTOR[heading]
    nx, ny = _right_normal(heading)
    offset = (lane + 0.5) * lane_width
    return (
        centre[0] + ux * distance_along + nx * offset,
        centre[1] + uy * distance_along + ny * offset,
    )


def lane_link_points(
    centre: tuple[float, float],
    in_heading: int,
    start_lane: int,
    out_heading: int,
    end_lane: int,
    lane_width: float,
    half_box: float,
) -> list[dict[str, float]]:
    """A polyline from the stop line of the incoming lane to the start of the outgoing lane.

    Turns follow a quadratic Bezier whose control point is where the two lane centre lines
    cross, so the path length (which the engine derives from these points) grows sensibly
    from right turns to left turns.
    """
    start = _lane_endpoint(centre, in_heading, start_lane, lane_width, -half_box)
    end = _lane_endpoint(centre, out_heading, end_lane, lane_width, half_box)
    if in_heading == out_heading:
        return [grid_point(start), grid_point(end)]
    # Perpendicular headings: the incoming line keeps one coordinate, the outgoing the other.
    if _UNIT_VECTOR[in_heading][1] == 0.0:
        control = (end[0], start[1])
    else:
        control = (start[0], end[1])
    points = []
    for i in range(_BEZIER_SAMPLES):
        t = i / (_BEZIER_SAMPLES - 1)
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t**2
        points.append(
            grid_point(
                (
                    a * start[0] + b * control[0] + c * end[0],
                    a * start[1] + b * control[1] + c * end[1],
                )
            )
        )
    return points


def grid_road(geometry: GridGeometry, x: int, y: int, heading: int, lane_dicts: list) -> dict:
    end_x, end_y = geometry.neighbour(x, y, heading)
    return {
        "id": road_id(x, y, heading),
        "points": [grid_point(geometry.position(x, y)), grid_point(geometry.position(end_x, end_y))],
        "lanes": [dict(lane) for lane in lane_dicts],
        "startIntersection": intersection_id(x, y),
        "endIntersection": intersection_id(end_x, end_y),
    }


def incoming_road_id(geometry: GridGeometry, x: int, y: int, heading: int) -> str:
    """Id of the road arriving at (x, y) while travelling in `heading`."""
    from_x, from_y = geometry.neighbour(x, y, (heading + 2) % 4)
    return road_id(from_x, from_y, heading)
