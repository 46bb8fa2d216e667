"""The metrics hub: every traffic metric of the project, named once, for all copies at once.

Each function takes the network, the batched demand and a state and returns ``[B]`` tensors.
The same names are used in evaluate.py's tables, benchmark JSON and (later) TensorBoard.
Definitions (also in docs/evaluation.md, "Metrics"), at simulated time t (steps done):

- departed trips: trips whose departure step is < t (they have been generated).
- ``travel_time/mean``: mean over departed trips of (finish - depart) for finished trips and
  (t - depart) for the others, whether in the network or still waiting to enter. This is how
  CityFlow's ``get_average_travel_time`` counts (its clock starts when a vehicle is generated).
- ``travel_time/finished_mean``: mean of (finish - depart) over finished trips only.
- ``travel_time/p50|p90|p95``: percentiles (linear interpolation) of the same per-trip values as
  ``travel_time/mean``.
- ``throughput``: trips finished.
- ``delay``: mean over departed trips of the time lost against driving the whole way at the
  speed limit: entry-queue wait plus, in the network, sum over steps of (1 s - distance moved /
  speed limit), clipped at 0 per step (so acceleration and queueing both count).
- ``queue/halting``: time-average number of vehicles in the network below the halting speed
  (0.1 m/s); ``queue/halting_now`` the same at t.
- ``stops``: mean over departed trips of the number of times a vehicle went from moving to
  halting (entering at rest is not a stop).
- ``entry_queue``: time-average number of departed vehicles waiting to enter at their origin;
  ``entry_queue_now`` the same at t.
- ``vehicles/in_network``, ``vehicles/departed``, ``vehicles/waiting``: counts at t.
- ``sim/pool_blocked``: seconds that trips ready to enter waited only because every vehicle slot
  was in use (one per trip and step, summed; should be 0).
"""

from __future__ import annotations

import torch

from envs.engine.state import EngineParams, SimState
from envs.scenario.demand import Demand

PERCENTILES = {"travel_time/p50": 0.50, "travel_time/p90": 0.90, "travel_time/p95": 0.95}
METRIC_NAMES = (
    "travel_time/mean",
    "travel_time/finished_mean",
    *PERCENTILES,
    "throughput",
    "delay",
    "queue/halting",
    "queue/halting_now",
    "stops",
    "entry_queue",
    "entry_queue_now",
    "vehicles/in_network",
    "vehicles/departed",
    "vehicles/waiting",
    "sim/pool_blocked",
)


def population(demand: Demand, state: SimState) -> dict[str, torch.Tensor]:
    """Per-trip arrays ``[B, T]`` the metrics are built from."""
    t = state.t.unsqueeze(1)
    trips = demand.max_trips
    depart = demand.per_copy(demand.depart)[:, :trips]
    departed = depart < t
    finish = state.trip_finish[:, :trips]
    enter = state.trip_enter[:, :trips]
    finished = finish >= 0
    travel = torch.where(finished, finish - depart, t - depart).to(torch.float32)

    # delay and stops so far of vehicles still in the network, scattered onto their trips
    slots = state.veh_lane.shape[1] - 1
    active = state.veh_lane[:, :slots] >= 0
    trip_of_slot = torch.where(active, state.veh_trip[:, :slots], trips)
    in_net_delay = state.trip_delay.scatter(1, trip_of_slot, state.veh_delay[:, :slots])
    in_net_stops = state.trip_stops.scatter(1, trip_of_slot, state.veh_stops[:, :slots])
    entered = enter >= 0
    entry_wait = torch.where(entered, enter - depart, t - depart).to(torch.float32)
    delay = entry_wait + torch.where(entered, in_net_delay[:, :trips], 0.0)
    return {
        "departed": departed,
        "finished": finished & departed,
        "travel": travel,
        "delay": delay,
        "stops": in_net_stops[:, :trips].to(torch.float32),
        "in_network": active.sum(1),
    }


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    count = mask.sum(1)
    total = torch.where(mask, values, 0.0).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def masked_quantile(values: torch.Tensor, mask: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row quantile over the masked entries, linear interpolation (numpy's default)."""
    count = mask.sum(1)
    ordered = torch.where(mask, values, torch.inf).sort(dim=1).values
    position = q * (count - 1).clamp(min=0).to(torch.float32)
    low = position.floor().to(torch.int64)
    high = position.ceil().to(torch.int64)
    frac = position - low
    lo = ordered.gather(1, low.unsqueeze(1)).squeeze(1)
    hi = ordered.gather(1, high.unsqueeze(1)).squeeze(1)
    return torch.where(count > 0, lo + (hi - lo) * frac, torch.nan)


def episode_metrics(
    demand: Demand, state: SimState, params: EngineParams | None = None
) -> dict[str, torch.Tensor]:
    """All metrics of the hub, each ``[B]`` float32, for the state's current time. `params` is
    read by nothing: the halting threshold is applied in the engine step, which counts halts."""
    del params  # thresholds live in the step; kept for a stable signature
    pop = population(demand, state)
    departed = pop["departed"]
    elapsed = state.t.clamp(min=1).to(torch.float32)
    departed_count = departed.sum(1)
    entered = (state.trip_enter[:, : demand.max_trips] >= 0).sum(1)
    out = {
        "travel_time/mean": masked_mean(pop["travel"], departed),
        "travel_time/finished_mean": masked_mean(pop["travel"], pop["finished"]),
        "throughput": pop["finished"].sum(1),
        "delay": masked_mean(pop["delay"], departed),
        "queue/halting": state.halting_sum / elapsed,
        "queue/halting_now": (state.veh_halted[:, :-1] & (state.veh_lane[:, :-1] >= 0)).sum(1),
        "stops": masked_mean(pop["stops"], departed),
        "entry_queue": state.waiting_sum / elapsed,
        "entry_queue_now": departed_count - entered,
        "vehicles/in_network": pop["in_network"],
        "vehicles/departed": departed_count,
        "vehicles/waiting": departed_count - entered,
        "sim/pool_blocked": state.pool_blocked,
    }
    for name, q in PERCENTILES.items():
        out[name] = masked_quantile(pop["travel"], departed, q)
    return {name: out[name].to(torch.float32) for name in METRIC_NAMES}
