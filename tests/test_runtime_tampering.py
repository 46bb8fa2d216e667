"""What a signal controller's runtime does with a tampered metadata JSON (its checksum covers the
model file only) and with inputs no detector should send: every edit that would change what the
signal shows is refused at load, naming the file, the field and the value; a reading or clock that
makes no sense never lets a decision break the timing rules (docs/deployment.md, "The metadata
JSON", "The runtime")."""

from __future__ import annotations

import numpy as np
import pytest

from agents.deploy.runtime import PolicyRuntime
from tests.deploy_fixtures import assert_refused_at_load, edit_metadata


def _first(meta: dict) -> dict:
    return meta["intersections"][0]


def _no_clearance(meta: dict) -> None:
    for entry in meta["intersections"]:
        entry["intergreen_after_switch"] = [[False] * len(entry["phases"]) for _ in entry["phases"]]


@pytest.mark.parametrize("edit, field, value", [
    # every change served with no yellow and no all-red
    (_no_clearance, "intersections[0].intergreen_after_switch[0][1]", False),
    (lambda m: _first(m)["intergreen_after_switch"][1].__setitem__(0, False),
     "intersections[0].intergreen_after_switch[1][0]", False),
    # numpy read a string as true, 0 as false: only JSON booleans are a table's entries
    (lambda m: _first(m)["intergreen_after_switch"][0].__setitem__(1, "true"),
     "intersections[0].intergreen_after_switch[0][1]", "true"),
    (lambda m: _first(m)["intergreen_after_switch"][0].__setitem__(1, 1),
     "intersections[0].intergreen_after_switch[0][1]", 1),
    # a clearance the phases do not need is an edit too (keeping a phase ends no green)
    (lambda m: _first(m)["intergreen_after_switch"][0].__setitem__(0, True),
     "intersections[0].intergreen_after_switch[0][0]", True),
    (lambda m: _first(m)["phases"][0].update(green_movements="all"), "intersections[0].phases[0].green_movements",
     "all"),
])
def test_an_intergreen_table_other_than_the_phases_green_movements_give_is_refused(model_copy, edit, field, value):
    edit_metadata(model_copy, edit)
    assert_refused_at_load(model_copy, field, value)


@pytest.mark.parametrize("t", [float("nan"), float("inf"), -float("inf")])
def test_a_time_that_is_not_finite_is_refused_by_decide_arrays_and_changes_nothing(model_copy, t):
    runtime = PolicyRuntime(*model_copy)
    lay = runtime.layout
    lanes = {name: np.ones((len(lay.ids), runtime.max_lanes)) for name in runtime.lane_readings}
    lanes["lane_halting"] = np.zeros_like(lanes["lane_count"])

    def decide(at):
        return runtime.decide_arrays(at, phase=lay.actions[:, 0], time_in_phase=np.full(len(lay.ids), 100.0), **lanes)

    decide(0.0)
    with pytest.raises(ValueError, match="field 't' must be a finite number of seconds"):
        decide(t)
    assert runtime.last_t == 0.0 and np.isfinite(runtime.signals.switched_at).all()
    with pytest.raises(ValueError, match="went backwards"):  # the clock check still holds after it
        decide(-5.0)
