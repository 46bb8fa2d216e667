"""No loadable intersection is without a signal phase (an action; envs/engine/intersections.py's module
doc): so the controllers and envs need no branch for one (webster.py had one, never taken)."""

from __future__ import annotations

from itertools import product

from envs.errors import ScenarioError
from envs.scenario.cityflow import parse_roadnet
from envs.scenario.network import compile_network
from tests.minimal_scenario import JUNCTION_B, minimal_roadnet


def test_no_loadable_intersection_is_without_a_signal_phase():
    """Every way to type and phase B's two roadLinks (straight, left or right turn each; one to three
    phases, each greening any subset of them) is refused (no phase greens a roadLink) or gives B a signal
    phase. Without the rule that a phase greening a right turn no signal phase greens is one, B with a
    straight link and a right turn greened alone failed. (An intersection without roadLinks is refused
    too: test_roadnet_errors[non-virtual-without-links].)"""
    subsets = [[], [0], [1], [0, 1]]
    loaded = refused = 0
    for types in product(("go_straight", "turn_left", "turn_right"), repeat=2):
        for count in (1, 2, 3):
            for phases in product(subsets, repeat=count):
                roadnet = minimal_roadnet()
                b = roadnet["intersections"][JUNCTION_B]
                for link, kind in zip(b["roadLinks"], types):
                    link["type"] = kind
                b["trafficLight"]["lightphases"] = [{"time": 30, "availableRoadLinks": p} for p in phases]
                try:
                    network = compile_network(parse_roadnet(roadnet, "mini"))
                except ScenarioError as error:
                    assert "no phase gives any roadLink a green" in error.reason, (types, phases)
                    refused += 1
                    continue
                loaded += 1
                assert network.signal_phase.any(1).all(), (types, phases)
    assert (loaded, refused) == (9 * (4 + 16 + 64 - 3), 9 * 3)  # refused: every phase green for nothing
