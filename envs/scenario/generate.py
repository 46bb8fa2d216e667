"""Synthetic grid scenarios, written in CityFlow's own JSON format.

Generated scenarios are plain CityFlow ``roadnet.json`` / ``flow.json`` dicts so that they go
through exactly the same loader (`envs.scenario.cityflow`) and checks as the public datasets; the
generator never builds engine objects itself.

Conventions copied from the CityFlow datasets (not their code):

* signalised intersections are ``intersection_{x}_{y}`` for ``x`` in ``1..cols`` (eastward) and
  ``y`` in ``1..rows`` (northward); a ring of *virtual* intersections sits one step outside the grid
  at ``x = 0``, ``x = cols + 1``, ``y = 0`` and ``y = rows + 1`` (no corner ones), where vehicles
  enter and leave the network;
* ``road_{x}_{y}_{d}`` starts at ``intersection_{x}_{y}`` and heads in direction ``d``
  (0 = east, 1 = north, 2 = west, 3 = south); lane 0 is the innermost (leftmost) lane;
* ``roadLinks`` carry a ``type`` (go_straight / turn_left / turn_right) and ``laneLinks`` from
  every lane serving that movement to every lane of the destination road.

Demand generators return one flow entry per vehicle (``interval`` 1, ``startTime == endTime``),
like the real datasets, so a flow file is just a sorted list of departures.

The generator is split by job: `grid_geometry` (ids, cells, polylines), `grid_roadnet` (roads,
roadLinks, signal plans, `grid_roadnet`), `road_graph` (routing), `demand_generators`
(`uniform_demand`, `peak_demand`, `od_demand`); this module re-exports them and writes scenarios
(`write_scenario`, ``python -m envs.scenario.generate``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from envs.errors import ConfigError, GridlightError
from envs.scenario.cityflow import write_cityflow
from envs.scenario.demand_generators import (
    DEFAULT_TURN_RATIOS,
    DEFAULT_VEHICLE,
    od_demand,
    peak_demand,
    peak_rate_profile,
    uniform_demand,
)
from envs.scenario.grid_geometry import EAST, NORTH, SOUTH, WEST, intersection_id, road_id
from envs.scenario.grid_roadnet import MOVEMENTS, grid_roadnet
from envs.scenario.presets import PRESETS
from envs.scenario.road_graph import DEMAND_SOURCE, RoadGraph, road_graph, shortest_route


def write_scenario(directory: str | Path, roadnet: dict, flow: list[dict]) -> None:
    """Write roadnet.json and flow.json into `directory` (the loader's `write_cityflow`)."""
    write_cityflow(directory, roadnet, flow)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a generated CityFlow scenario.")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="directory for roadnet.json and flow.json")
    args = parser.parse_args(argv)
    if not args.out.strip():  # an unset shell variable: Path("") is the current folder, written over silently
        print(f"error: {ConfigError('<command line>', '--out', args.out, 'empty: name the folder to write')}",
              file=sys.stderr)
        return 2

    started = time.perf_counter()
    try:
        roadnet, flow, info = PRESETS[args.preset](seed=args.seed)
    except GridlightError as error:  # a bad argument, or a generated scenario that is invalid
        print(f"error: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    try:
        write_scenario(args.out, roadnet, flow)
    except GridlightError as error:  # a folder it cannot write in: named as the option it came from
        print(f"error: {ConfigError('<command line>', '--out', args.out, error.reason)}", file=sys.stderr)
        return 2
    signals = sum(1 for i in roadnet["intersections"] if not i["virtual"])
    print(
        f"{args.preset} (seed {args.seed}): {signals} signalised intersections, "
        f"{len(roadnet['intersections']) - signals} virtual, {len(roadnet['roads'])} roads, "
        f"{len(flow)} vehicles; generated in {elapsed:.2f} s; wrote {args.out}"
    )
    print(json.dumps(info, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "DEFAULT_TURN_RATIOS", "DEFAULT_VEHICLE", "DEMAND_SOURCE", "EAST", "MOVEMENTS", "NORTH",
    "RoadGraph", "SOUTH", "WEST", "grid_roadnet", "intersection_id", "main", "od_demand",
    "peak_demand", "peak_rate_profile", "road_graph", "road_id", "shortest_route",
    "uniform_demand", "write_scenario",
]
