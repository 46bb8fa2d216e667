"""Do a network, a demand and a saved state belong together? Checked where they meet
(`Simulator.__init__`, `Simulator.restore`), so a mismatch is one named error there instead of a
raw torch error at the first step, or silently wrong metrics hundreds of steps later.

Each check returns ``None`` or ``(field, value, reason)``; the simulator raises it.
"""

from __future__ import annotations

import torch

from envs.engine.state import SimState
from envs.scenario.demand import VEHICLE_COLUMN, Demand
from envs.scenario.network import Network

Problem = tuple[str, object, str] | None
SLOT_DIM_FIELDS = ("veh_", "free_stack")  # [B, S+1]: the slot pool may have grown since


def demand_problem(network: Network, demand: Demand) -> Problem:
    """A demand built for another network (other roads or movements), or None."""
    roads = int(demand.origin_start.shape[1])
    if roads != network.num_roads:
        return "demand.origin_start", f"<{roads} roads>", (
            f"the demand was built for a network with {roads} roads; this network has {network.num_roads}")
    # one host read at construction: every movement a route uses must exist in this network
    highest = int(demand.route_movement.max())
    if highest >= network.num_movements:
        return "demand.route_movement", highest, (
            f"routes use movement {highest}; this network has {network.num_movements} movements "
            "(the demand was built for another network)")
    if (demand.incident_lane is not None and demand.incident_lane.numel()
            and int(demand.incident_lane.max()) >= network.num_lanes):
        return "demand.incident_lane", int(demand.incident_lane.max()), (
            f"this network has {network.num_lanes} lanes")
    return _incident_pos_problem(network, demand)


def _incident_pos_problem(network: Network, demand: Demand) -> Problem:
    """Incidents at a place must lie on their lane (metres from its start, at most its length)."""
    pos = demand.incident_pos
    if pos is None:
        return None
    if demand.incident_lane is None or pos.shape != demand.incident_lane.shape:
        return "demand.incident_pos", tuple(pos.shape), "needs one entry per incident (the shape of incident_lane)"
    lane = demand.incident_lane
    length = network.lane_length[lane.clamp(min=0)]
    beyond = (lane >= 0) & (pos > length + 1e-3)
    if bool(beyond.any()):
        b, k = (int(x) for x in torch.nonzero(beyond)[0])
        return "demand.incident_pos", float(pos[b, k]), (
            f"copy {b}, incident {k}: beyond the end of its lane ({float(length[b, k]):g} m long)")
    return None


def snapshot_problem(current: SimState, demand: Demand, snapshot) -> Problem:
    """What makes `snapshot` unfit to replace `current` (the simulator's state on `demand`):
    another type, shape, dtype or device; or vehicles, entered trips and entry queues that this
    demand cannot have produced (a snapshot taken with another demand). None when it fits."""
    if not isinstance(snapshot, SimState):
        return "snapshot", type(snapshot).__name__, "expected a SimState from Simulator.snapshot()"
    for name, now, saved in zip(SimState._fields, current, snapshot):
        if not isinstance(saved, torch.Tensor):
            return f"snapshot.{name}", type(saved).__name__, "expected a tensor"
        if saved.dtype != now.dtype or saved.device != now.device:
            return f"snapshot.{name}", f"{saved.dtype} on {saved.device}", f"expected {now.dtype} on {now.device}"
        same = saved.shape == now.shape or (
            name.startswith(SLOT_DIM_FIELDS) and saved.shape[0] == now.shape[0] and saved.dim() == now.dim()
            and saved.shape[2:] == now.shape[2:])
        if not same:
            return f"snapshot.{name}", tuple(saved.shape), (
                f"expected {tuple(now.shape)} (copies, intersections, lanes, roads and trips must match)")
    if snapshot.veh_lane.shape[1] != snapshot.free_stack.shape[1]:
        return "snapshot.free_stack", tuple(snapshot.free_stack.shape), "vehicle slot arrays differ in size"
    return _content_problem(demand, snapshot)


def _per_copy(demand: Demand, table: torch.Tensor) -> torch.Tensor:
    """Copy b's row of a per-sample table, integers widened to int64 (restore is rare: the
    gathered copy costs nothing that matters)."""
    rows = demand.per_copy(table)
    return rows.long() if not rows.is_floating_point() else rows


def _content_problem(demand: Demand, snap: SimState) -> Problem:
    trips = demand.max_trips
    live = snap.veh_lane[:, :-1] >= 0
    trip = snap.veh_trip[:, :-1].clamp(0, trips).to(torch.int64)  # route-table offsets below: int64
    if bool((live & ((snap.veh_trip[:, :-1] < 0) | (trip >= demand.num_trips.unsqueeze(1)))).any()):
        return "snapshot.veh_trip", None, "a vehicle runs a trip this demand does not have"
    legs = demand.route_legs
    expected_move = torch.gather(_per_copy(demand, demand.route_movement), 1,
                                 trip * legs + snap.veh_leg[:, :-1].clamp(0, legs - 1))
    length = _per_copy(demand, demand.vehicle)[..., VEHICLE_COLUMN["length"]].gather(1, trip)
    wrong = live & ((expected_move != snap.veh_move[:, :-1]) | (length != snap.veh_length[:, :-1]))
    if bool(wrong.any()):
        b, s = (int(x) for x in torch.nonzero(wrong)[0])
        return "snapshot.veh_trip", int(snap.veh_trip[b, s]), (
            f"copy {b}: this vehicle's route or length differs from that trip's in this demand "
            "(the snapshot was taken with another demand)")
    entered = snap.trip_enter[:, :-1] >= 0
    if bool((entered & (_per_copy(demand, demand.depart)[:, :-1] > snap.t.unsqueeze(1))).any()):
        return "snapshot.trip_enter", None, (
            "trips entered before they depart in this demand (the snapshot was taken with another demand)")
    return _entry_queue_problem(demand, snap, entered)


def _entry_queue_problem(demand: Demand, snap: SimState, entered: torch.Tensor) -> Problem:
    """Each origin's entry pointer counts exactly the trips of its queue that entered."""
    start, end = _per_copy(demand, demand.origin_start), _per_copy(demand, demand.origin_end)
    if bool(((snap.entry_ptr < 0) | (snap.entry_ptr > end - start)).any()):
        return "snapshot.entry_ptr", None, "an entry queue pointer lies outside its queue in this demand"
    trips = demand.max_trips
    order = _per_copy(demand, demand.entry_order)
    position = torch.arange(trips + 1, device=order.device).expand_as(order)
    road = _per_copy(demand, demand.origin).gather(1, order)
    expected = (position - start.gather(1, road)) < snap.entry_ptr.gather(1, road)
    expected &= order < trips
    by_trip = torch.zeros_like(order, dtype=torch.bool).scatter(1, order, expected)
    if not torch.equal(by_trip[:, :-1], entered):
        return "snapshot.entry_ptr", None, (
            "the entry queues disagree with the trips that entered (the snapshot was taken with another demand)")
    return None
