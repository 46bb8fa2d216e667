"""SOTL's rules at their edges (agents/classical/sotl.py, docs/controllers.md#sotl): max green's
second and its need for a vehicle on red, rule 4 against rule 3, right turns counted neither green
nor red, and the approach distance counted up to and including ``distance_m``."""

from __future__ import annotations

import torch

from agents.classical import SOTL
from tests.test_webster_sotl import N_STRAIGHT, W_RIGHT, W_STRAIGHT, commands, crafted


def _green_for(sim, seconds: int):
    """`sim` still in its first phase, having shown it `seconds` s (no switch yet: no intergreen)."""
    sim.state = sim.state._replace(phase_timer=torch.full_like(sim.state.phase_timer, seconds))
    return sim


def test_sotl_max_green_switches_at_exactly_max_green_s_even_through_a_platoon():
    # 3 vehicles within omega on green (a platoon rule 3 protects), 2 waiting on red, theta out of reach
    sim, c = crafted({N_STRAIGHT: 2, W_STRAIGHT: 5}, {W_STRAIGHT: 3}, theta=1000.0, max_green_s=30.0)
    assert commands(_green_for(sim, 29), c, 1) == [-1]
    assert commands(_green_for(sim, 30), c, 1) == [1]  # "after that much green"


def test_sotl_max_green_does_not_switch_when_no_vehicle_approaches_red():
    sim, c = crafted({W_STRAIGHT: 5}, {W_STRAIGHT: 3}, theta=1000.0, max_green_s=30.0)
    assert commands(_green_for(sim, 100), c, 5) == [-1] * 5  # nobody waits: the green stays


def test_sotl_empty_green_switches_regardless_of_the_platoon_rule():
    """Rule 4 fires "regardless of kappa and of rule 3": with omega_m beyond distance_m a vehicle
    can count as a platoon on green (within 40 m) while none approaches green within 20 m."""
    sim, c = crafted({N_STRAIGHT: 1}, {W_STRAIGHT: 2}, theta=1000.0, distance_m=20.0, omega_m=40.0)
    assert commands(sim, c, 1) == [1]


def test_sotl_does_not_count_right_turns_as_vehicles_on_green():
    """Right turns are green in every phase: "neither" green nor red. A right-turner approaching
    must not keep a green that no other vehicle approaches while one waits on red (rule 4)."""
    sim, c = crafted({W_RIGHT: 3, N_STRAIGHT: 1}, theta=1000.0)
    assert commands(sim, c, 1) == [1]
    sim, c = crafted({W_RIGHT: 3}, theta=1.0)
    assert commands(sim, c, 10) == [-1] * 10  # and not as vehicles on red: nothing to switch for


def test_sotl_counts_a_vehicle_exactly_distance_m_from_the_stop_line():
    """Placed vehicles (tests/test_movement_readings.py) on the west straight lane stand 5, 12.5,
    60, 105 and 150 m from the stop line: within 60 m are three, the one at 60 m included."""
    from tests.test_movement_readings import W_STRAIGHT as W_STRAIGHT_MOVEMENT, placed

    sim = placed()
    controller = SOTL(distance_m=60.0, omega_m=12.5)
    controller.reset(sim)
    assert float(controller.approaching(sim, 60.0)[0, 0, W_STRAIGHT_MOVEMENT]) == 3
    assert float(controller.approaching(sim, 12.5)[0, 0, W_STRAIGHT_MOVEMENT]) == 2
