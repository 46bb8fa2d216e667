"""How large a resampled demand sample would be, checked before it is drawn (`envs.scenario.splits`):
a scale such as ``eval.demand.scale=1e9`` asked numpy for trillions of trips and ended in a MemoryError
traceback after the scenario had loaded. The size is estimated from the scale, the mean trip count
(``scale`` x the trips a sample holds at scale 1), and refused past either bound:

- `MAX_TRIPS`: the engine numbers a copy's trips in int32 (`envs.engine.state.INDEX`: ``veh_trip``,
  the trip tables' ids), with one extra row, the scratch trip, after the real ones;
- this machine's physical memory: the trip tables of the K samples a call holds at once (``samples``:
  `envs.scenario.splits.demand_for`'s indices, evaluation's ``eval.seeds``, training's ``env.copies``
  or ``env.demand_pool``; one sample whose size fits, K of them side by side could still exhaust it),
  each as drawn (`Trips`: departure and flow index
  int64, the route's road ids int64, the vehicle parameters float32) and the per-trip tables the engine
  builds from it (`engine_table_bytes`) larger than all of it cannot be run at all (the draw holds the
  trip table about twice over for a moment; per-vehicle and per-lane tables come on top, but they grow
  with the network and the vehicle slots, not with the scale). Each sample is about as large: the
  bound is K x one sample's mean size.
"""

from __future__ import annotations

import os

from envs.errors import ConfigError
from envs.scenario.demand import VEHICLE_FIELDS

MAX_TRIPS = 2**31 - 2  # int32's largest id is the scratch trip's


def trip_table_bytes(route_width: int) -> int:
    """Bytes of one row of a drawn `Trips` table: depart and flow index (int64), `route_width` road ids
    (int64) and the vehicle parameters (float32)."""
    return 8 + 8 + 8 * route_width + 4 * len(VEHICLE_FIELDS)


def engine_table_bytes(route_width: int) -> int:
    """Bytes per trip of the tables the engine builds from a drawn sample, an upper bound (their integer
    ids are int32 at most; on a small network narrower): `envs.scenario.demand.stack_demand`'s, one row
    per sample, ``depart``, ``origin`` and ``entry_order`` (4 bytes each), ``route_movement`` (``route_width``
    + 1 legs of 4), ``vehicle`` (4 per vehicle field), ``free_flow_time`` and ``sigma`` (float32); and the
    simulation state's, one row per copy (counted for one: copies of one sample share its tables),
    ``trip_enter``, ``trip_finish``, ``trip_stops`` (int32) and ``trip_delay`` (float32).
    tests/test_demand_size.py checks it against the tables built for a sample."""
    demand = 4 * 3 + 4 * (route_width + 1) + 4 * len(VEHICLE_FIELDS) + 4 * 2
    state = 4 * 4
    return demand + state


def physical_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _shown_bytes(size: float) -> str:
    for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if size >= 2**power:
            return f"{size / 2**power:,.1f} {unit}"
    return f"{size / 2**10:,.1f} KiB"


def check_sample_size(source: str, mode: str, scale: float, trips_at_scale_1: float, route_width: int,
                      samples: int = 1) -> None:
    """ConfigError from `source` naming ``scale`` when a `mode` sample at `scale` would hold more trips
    than `MAX_TRIPS`, or `samples` such samples held at once trip tables and engine tables larger than
    `physical_memory` (mean counts: ``scale`` x `trips_at_scale_1` a sample)."""
    trips = scale * trips_at_scale_1
    samples = 1 if trips > MAX_TRIPS else max(int(samples), 1)  # past MAX_TRIPS one sample is too large
    size = samples * trips * (trip_table_bytes(route_width) + engine_table_bytes(route_width))
    memory = physical_memory()
    if trips > MAX_TRIPS:
        bound = f"more than the {MAX_TRIPS:,} trips a sample can hold (the engine numbers them in int32)"
    elif memory is not None and size > memory:
        bound = f"more than this machine's {_shown_bytes(memory)} of memory"
    else:
        return
    held = (f"a {mode} sample would hold about {trips:,.0f} trips ({_shown_bytes(size)} of trip and engine tables)"
            if samples == 1 else
            f"{samples} {mode} samples held at once would hold about {trips:,.0f} trips each "
            f"({_shown_bytes(size)} of trip and engine tables in all)")
    which, remedy = ("it", "") if samples == 1 else ("a sample", " or the samples held at once")
    raise ConfigError(source, "scale", scale, f"{held}, {bound}; at scale 1 {which} holds about "
                      f"{trips_at_scale_1:,.0f}: lower the scale{remedy}")


__all__ = ["MAX_TRIPS", "check_sample_size", "engine_table_bytes", "physical_memory", "trip_table_bytes"]
