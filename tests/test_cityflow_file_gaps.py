"""CityFlow files that passed the loader although CityFlow refuses them or reads them otherwise,
and files the writer left half-written: each is now one error naming the file, field and value."""

from __future__ import annotations

import pytest

from tests.minimal_scenario import (
    JUNCTION_B,
    ROADNET_SOURCE,
    assert_mutation_rejected,
    set_path,
)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("a_c", "names an unknown road"), (3, "expected a road id string, got number")],
)
def test_an_intersections_roads_must_name_known_roads(name, reason):
    # CityFlow reads an intersection's "roads" list and refuses a name that is no road
    # ("No such road"); gridlight did not read it, so a stale or misspelt id passed unnoticed
    assert_mutation_rejected(
        lambda r, f: set_path(r, ("intersections", JUNCTION_B, "roads"), ["a_b", name]),
        ROADNET_SOURCE, "intersections[2].roads[1]", name, reason,
    )
