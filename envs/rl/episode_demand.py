"""The demand tables an environment's copies run: built once per distinct sample, shared by the
copies that run it, and re-indexed (not rebuilt) when copies start episodes on samples whose
tables are already there.

`BatchedSignalEnv` keeps the `Trips` each copy runs; `EpisodeTables.install` turns that list
into the engine's `Demand`. Copies that hold the same `Trips` object share one row of the
tables (`envs.scenario.demand.stack_demand`). When every copy's sample already has a row in the
installed tables (the scenario's own trips in ``original`` mode, or a sample pool), only the
``[B]`` copy -> sample index and the copies' trip counts change: no table is rebuilt, nothing
per copy is copied from the host but those two ``[B]`` vectors.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from envs.scenario.demand import Demand, DemandShape, Trips, demand_shape, stack_demand
from envs.scenario.network import Network

# A resampled demand may hold more trips than the current tables; they grow with this headroom
# so that a run recompiles (and reallocates) only a few times.
TRIP_HEADROOM = 1.1


class EpisodeTables:
    def __init__(self, network: Network) -> None:
        self.network = network
        # the samples whose rows are installed, in row order; holding them keeps their ids unique
        self._installed: list[Trips] = []
        self._row_of: dict[int, int] = {}  # id(Trips) -> row of the installed tables

    def install(self, trips: list[Trips], current: Demand | None, shape: DemandShape | None = None) -> Demand:
        """The demand for copies running `trips` (one per copy). With `current` (the installed
        demand) its tables are reused when they hold every sample, else rebuilt with sizes
        that only grow (the trip count with headroom); `shape`: sizes to pad to at least."""
        if current is not None and all(id(t) in self._row_of for t in trips):
            device = current.sample_of_copy.device
            return replace(
                current,
                sample_of_copy=torch.tensor([self._row_of[id(t)] for t in trips], dtype=torch.int64, device=device),
                num_trips=torch.tensor([t.num_trips for t in trips], dtype=torch.int64, device=device),
            )
        if current is not None:
            need, have = demand_shape(trips), current.shape
            count = have.trips if need.trips <= have.trips else int(need.trips * TRIP_HEADROOM)
            shape = DemandShape(count, max(need.legs, have.legs), max(need.horizon, have.horizon))
        demand = stack_demand(trips, self.network, shape)
        distinct = list({id(t): t for t in trips}.values())  # stack_demand's row order
        self._installed = distinct
        self._row_of = {id(t): k for k, t in enumerate(distinct)}
        return demand
