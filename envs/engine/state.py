"""Engine parameters and the batched simulation state.

`SimState` is a NamedTuple of tensors, batch first ``[B, ...]``: resets, snapshots and restores
are tensor copies, and `torch.compile` traces it as plain inputs. Per-vehicle arrays have
``S + 1`` columns, per-lane arrays ``L + 1`` and per-trip arrays ``T + 1``: the extra last
column is a scratch cell that masked scatters write into, so the step needs no data-dependent
branches. Never read the scratch cells.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from envs.errors import ConfigError, flag
from envs.scenario.demand import VEHICLE_DEFAULTS

TIMER_START = 10**6  # phase timer at reset: the initial phase counts as long established
# The integers held per vehicle slot, per lane and per trip (slot, lane, trip, leg and movement
# ids, counts, steps): int32 holds every one of them (a flow file has at most 10 M vehicles, a
# step count passes 2**31 after 68 years) at half int64's bytes, and these arrays are most of
# the state (grid_16x8: 4,472 slots and ~14,500 trips per copy). torch gathers and scatters take
# int32 indices; `put` casts what it writes to the target's dtype; the one product that can
# outgrow int32, a trip's offset into the route table (trip x legs), is taken in int64.
INDEX = torch.int32


@dataclass(frozen=True)
class EngineParams:
    """Signal timing rules and modelling constants (seconds, metres).

    Also the timing part of the Hydra ``engine`` group (agents/ppo/config.py `EngineConfig`
    adds where the step runs): these defaults are the configs' defaults."""

    yellow_s: int = 3  # old movements show yellow this long after a switch
    all_red_s: int = 2  # then red everywhere that changes, before the new green
    min_green_s: int = 5  # a phase keeps its green at least this long (safety rule)
    halting_speed: float = 0.1  # a vehicle slower than this is halting (CityFlow's threshold)
    max_vehicles: Optional[int] = None  # vehicle slots per copy; None = sized from the demand
    # right of way (envs/engine/right_of_way.py): a permissive green gives way to the movements
    # the network says it yields to (SUMO imports) while one of their vehicles is at most
    # yield_gap_s from its stop line; off, permissive greens and unsignalised junctions flow freely
    junction_yielding: bool = False
    yield_gap_s: float = 4.0

    def validate(self, source: str = "<engine>") -> None:
        for name in ("yellow_s", "all_red_s", "min_green_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:  # True is not 1 s
                raise ConfigError(source, name, value, "must be an integer >= 0 (seconds)")
        flag(self.junction_yielding, source, "junction_yielding")
        number = numbers.Real  # a string such as "0.1" is refused here, not by a TypeError in the step
        if isinstance(self.yield_gap_s, bool) or not isinstance(self.yield_gap_s, number) \
                or not 0 < self.yield_gap_s < float("inf"):
            raise ConfigError(source, "yield_gap_s", self.yield_gap_s, "must be a finite number > 0 (seconds)")
        if isinstance(self.halting_speed, bool) or not isinstance(self.halting_speed, number) \
                or not 0 <= self.halting_speed < float("inf"):  # NaN fails this too
            raise ConfigError(source, "halting_speed", self.halting_speed, "must be a finite number >= 0 (m/s)")
        if self.max_vehicles is not None and (isinstance(self.max_vehicles, bool) or not isinstance(
                self.max_vehicles, numbers.Integral) or self.max_vehicles < 1):
            raise ConfigError(source, "max_vehicles", self.max_vehicles, "must be a whole number >= 1 (or None)")


class SimState(NamedTuple):
    t: torch.Tensor  # [B] int64 steps simulated so far (1 step = 1 s)
    # signals, per signalised intersection
    phase: torch.Tensor  # [B, I] int64 the commanded phase (green, or in its intergreen)
    prev_phase: torch.Tensor  # [B, I] int64 the phase before the last switch
    phase_timer: torch.Tensor  # [B, I] int64 seconds since the last switch
    # vehicle slots [B, S+1]
    veh_lane: torch.Tensor  # int32 lane id, -1 = free slot
    veh_pos: torch.Tensor  # float32 front position from the lane start (m); < 0 in the box
    veh_speed: torch.Tensor  # float32 m/s
    veh_trip: torch.Tensor  # int32 trip id
    veh_leg: torch.Tensor  # int32 index of the current road in the trip's route
    # the trip's movements at legs veh_leg and veh_leg + 1 (-1 = none), cached per slot so the
    # step reads them from the small slot arrays instead of the [B, T*K] route table
    veh_move: torch.Tensor  # int32 movement at the end of the current lane, -1 = last road
    veh_next_move: torch.Tensor  # int32 the movement after that
    veh_leader: torch.Tensor  # int32 slot of the vehicle ahead in the same lane, -1 = none
    veh_follower: torch.Tensor  # int32 slot of the vehicle behind, -1 = none
    veh_halted: torch.Tensor  # bool halting at the last step (for counting stops)
    veh_stops: torch.Tensor  # int32 stops so far
    veh_delay: torch.Tensor  # float32 seconds lost vs. driving at the speed limit
    veh_length: torch.Tensor  # float32 (copied from the trip on entry)
    veh_min_gap: torch.Tensor
    veh_max_speed: torch.Tensor
    veh_accel: torch.Tensor
    veh_decel: torch.Tensor  # usual (comfortable) deceleration
    veh_headway: torch.Tensor  # desired time headway to the leader, s (the flow's headwayTime)
    # lanes [B, L+1]
    lane_head: torch.Tensor  # int32 slot nearest the stop line, -1 = empty
    lane_tail: torch.Tensor  # int32 slot furthest from the stop line, -1 = empty
    lane_count: torch.Tensor  # int32 vehicles on the lane (including those in the box ahead)
    # free-slot stack [B, S+1] and its height [B]
    free_stack: torch.Tensor  # int32 slot ids
    free_top: torch.Tensor
    # entry queues, one per origin road [B, R]: trips of that origin already entered
    entry_ptr: torch.Tensor
    # per trip [B, T+1]
    trip_enter: torch.Tensor  # int32 step the trip entered its first lane, -1 = not yet
    trip_finish: torch.Tensor  # int32 step the trip left the network, -1 = not yet
    trip_stops: torch.Tensor  # int32
    trip_delay: torch.Tensor  # float32 delay in the network (entry wait not included)
    # accumulators [B], summed over steps
    halting_sum: torch.Tensor  # float32 vehicle-seconds halting in the network
    active_sum: torch.Tensor  # float32 vehicle-seconds in the network
    waiting_sum: torch.Tensor  # float32 vehicle-seconds waiting to enter
    # int64 seconds that trips at the front of their origin's queue, due and fitting their lane,
    # waited only because every slot was taken (1 per such trip and step: not a count of trips)
    pool_blocked: torch.Tensor

    def clone(self) -> "SimState":
        return SimState(*(x.clone() for x in self))

    def select(self, copies: torch.Tensor | slice) -> "SimState":
        return SimState(*(x[copies] for x in self))

    @property
    def batch_size(self) -> int:
        return int(self.t.shape[0])

    @property
    def num_slots(self) -> int:
        return int(self.veh_lane.shape[1]) - 1



def with_fields(state: SimState, **changes: torch.Tensor) -> SimState:
    """`state` with some fields replaced, built as a whole new SimState. The step uses it instead
    of ``state._replace``: under torch 2.11's compiler (the H200 machine's) the compiled step
    built from ``_replace`` chains returned a state whose fields could not be read (IndexError on
    ``state.t``), while a whole SimState traces as it always did."""
    unknown = set(changes) - set(SimState._fields)
    if unknown:
        raise TypeError(f"SimState has no field(s) {sorted(unknown)}")
    return SimState(*[changes.get(name, value) for name, value in zip(SimState._fields, state)])

# The vehicle parameters a slot holds: SimState field -> the trip's column (VEHICLE_FIELDS)
# it is copied from when the trip enters.
SLOT_VEHICLE = {
    "veh_length": "length", "veh_min_gap": "min_gap", "veh_max_speed": "max_speed",
    "veh_accel": "max_pos_acc", "veh_decel": "usual_neg_acc", "veh_headway": "headway_time",
}

# Every per-vehicle field of SimState: its dtype and what a free slot holds (None: the scratch
# trip). Used to build and grow the slot pool.
SLOT_FIELDS: dict[str, tuple[torch.dtype, float | int | bool | None]] = {
    "veh_lane": (INDEX, -1), "veh_pos": (torch.float32, 0.0),
    "veh_speed": (torch.float32, 0.0), "veh_trip": (INDEX, None), "veh_leg": (INDEX, 0),
    "veh_move": (INDEX, -1), "veh_next_move": (INDEX, -1),
    "veh_leader": (INDEX, -1), "veh_follower": (INDEX, -1),
    "veh_halted": (torch.bool, False), "veh_stops": (torch.int32, 0),
    "veh_delay": (torch.float32, 0.0),
    **{field: (torch.float32, VEHICLE_DEFAULTS[name]) for field, name in SLOT_VEHICLE.items()},
}
