"""Each way a snapshot or a demand can fail to belong to a simulator, refused by its own check
(envs/engine/fit_checks.py) with the field that differs: a snapshot edited one field at a time,
a demand edited one table at a time. Every edit here got past the other checks (the mutation
audit of fit_checks.py removed each check in turn), so each case is the only thing that can
refuse it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from envs.engine import Simulator
from envs.errors import CommandError, ConfigError
from envs.incidents.demand_perturbations import Incident, with_incidents
from envs.scenario import load_scenario
from tests.engine_checks import unequal_fields


@pytest.fixture(scope="module")
def taken():
    """grid_1x1 after 120 s: vehicles on their first and last roads, trips entered and waiting."""
    grid = load_scenario("grid_1x1")
    sim = Simulator(grid.network, grid.demand(2))
    sim.run(120)
    return grid, sim.snapshot()


def _slot(snap, where) -> tuple[int, int]:
    """The first (copy, slot) of a live vehicle where `where` ([B, S] bool) holds."""
    live = (snap.veh_lane[:, :-1] >= 0) & where
    return tuple(int(x) for x in torch.nonzero(live)[0])


def _edit(snap, name, change):
    """`snap` with field `name` replaced by ``change(copy of it)``."""
    return snap._replace(**{name: change(getattr(snap, name).clone())})


def _set(index, value):
    def change(x):
        x[index] = value
        return x
    return change


def _grown(snap, extra: int, with_free_stack: bool):
    """Every per-slot array `extra` free slots longer (free_stack too if `with_free_stack`)."""
    def pad(x):
        return torch.cat([x, x[:, -1:].expand(-1, extra)], 1)
    fields = {n: pad(v) for n, v in zip(snap._fields, snap) if n.startswith("veh_")}
    if with_free_stack:
        fields["free_stack"] = pad(snap.free_stack)
    return snap._replace(**fields)


def _unfit(snap, case):
    s = snap
    moving = s.veh_move[:, :-1] >= 0
    if case == "dtype":
        return _edit(s, "veh_pos", lambda x: x.double())
    if case == "not_a_tensor":
        return s._replace(t=s.t.tolist())
    if case == "slot_rows":
        return _edit(s, "veh_pos", lambda x: torch.cat([x, x[:1]]))
    if case == "slot_sizes":
        return _grown(s, 4, with_free_stack=False)
    if case in ("trip_past_end", "trip_negative"):  # one past the last trip (the scratch trip), or -1
        past_end = s.trip_enter.shape[1] - 1
        return _edit(s, "veh_trip", _set(_slot(s, moving), past_end if case == "trip_past_end" else -1))
    if case == "movement":
        return _edit(s, "veh_move", _set(_slot(s, moving), -1))
    if case == "length":
        return _edit(s, "veh_length", lambda x: x + 1.0)
    if case == "entered_early":
        return _edit(s, "trip_enter", lambda x: x.fill_(0))  # also the trips departing after 120 s
    if case == "ptr_negative":
        return _edit(s, "entry_ptr", _set((0, 0), -1))
    if case == "unentered":
        b, k = (int(x) for x in torch.nonzero(s.trip_enter[:, :-1] >= 0)[0])
        return _edit(s, "trip_enter", _set((b, k), -1))
    raise AssertionError(case)


@pytest.mark.parametrize("case, field, says", [
    ("dtype", "snapshot.veh_pos", "expected torch.float32"),
    ("not_a_tensor", "snapshot.t", "expected a tensor"),
    ("slot_rows", "snapshot.veh_pos", "copies, intersections"),
    ("slot_sizes", "snapshot.free_stack", "vehicle slot arrays differ in size"),
    ("trip_past_end", "snapshot.veh_trip", "a trip this demand does not have"),
    ("trip_negative", "snapshot.veh_trip", "a trip this demand does not have"),
    ("movement", "snapshot.veh_trip", "route or length differs"),
    ("length", "snapshot.veh_trip", "route or length differs"),
    ("entered_early", "snapshot.trip_enter", "entered before they depart"),
    ("ptr_negative", "snapshot.entry_ptr", "outside its queue"),
    ("unentered", "snapshot.entry_ptr", "disagree with the trips that entered"),
])
def test_restore_refuses_a_snapshot_edited_in_one_field_by_that_fields_own_check(taken, case, field, says):
    grid, snap = taken
    sim = Simulator(grid.network, grid.demand(2))
    with pytest.raises(CommandError, match=says) as refused:
        sim.restore(_unfit(snap, case))
    assert refused.value.field == field
    assert unequal_fields(sim.state, Simulator(grid.network, grid.demand(2)).state) == []  # nothing restored


def test_restore_takes_a_snapshot_whose_slot_pool_grew_with_its_free_stack(taken):
    grid, snap = taken
    sim = Simulator(grid.network, grid.demand(2))
    sim.restore(_grown(snap, 4, with_free_stack=True))
    assert sim.state.num_slots == snap.num_slots + 4 and torch.equal(sim.state.trip_enter, snap.trip_enter)


def _demand_edit(grid, case):
    length = float(grid.network.lane_length[0])
    if case == "route_movement":  # one past this network's last movement
        moves = grid.demand(1).route_movement.clone()
        moves[0, 0] = grid.network.num_movements
        return replace(grid.demand(1), route_movement=moves)
    if case == "past_the_end":  # a centimetre beyond the lane's end
        return with_incidents(grid.demand(1), [[Incident(0, 0, 10, 0.0, length + 0.01)]])
    placed = with_incidents(grid.demand(2), [[Incident(0, 0, 10, 0.0, length), Incident(1, 0, 10, 0.5)],
                                             [Incident(0, 0, 10, 0.0, 1.0)]])  # copy 1's second: padding
    if case == "incident_lane":  # one past this network's last lane
        return replace(placed, incident_lane=torch.full_like(placed.incident_lane, grid.network.num_lanes))
    if case == "pos_shape":
        return replace(placed, incident_pos=placed.incident_pos[:, :1])
    if case == "fits":  # at the lane's very end; the padding's position is not a place on any lane
        return replace(placed, incident_pos=placed.incident_pos.index_put((torch.tensor(1), torch.tensor(1)),
                                                                          torch.tensor(1e6)))
    raise AssertionError(case)


@pytest.mark.parametrize("case, field, says", [
    ("route_movement", "demand.route_movement", "movements"),
    ("incident_lane", "demand.incident_lane", "lanes"),
    ("pos_shape", "demand.incident_pos", "one entry per incident"),
    ("past_the_end", "demand.incident_pos", "beyond the end of its lane"),
])
def test_a_demand_reaching_past_this_networks_movements_lanes_or_lane_ends_is_refused(case, field, says):
    grid = load_scenario("grid_1x1")
    with pytest.raises(ConfigError, match=says) as refused:
        Simulator(grid.network, _demand_edit(grid, case))
    assert refused.value.field == field


def test_an_incident_at_its_lanes_very_end_and_a_padding_entry_anywhere_are_accepted():
    grid = load_scenario("grid_1x1")
    Simulator(grid.network, _demand_edit(grid, "fits")).run(12)
