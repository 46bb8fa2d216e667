"""Action decoding (envs/rl/actions.py) at the edges tests/test_action_modes.py leaves: duration
settings that are not whole seconds, an intersection with one signal phase, a roadnet whose
episodes start on the transition phase (keep never keeps it; -1 does), a phase_duration hold whose
switch waits on min green past the next decision, and copies that are not at a decision."""

from __future__ import annotations

import pytest
import torch

from envs.engine.state import EngineParams
from envs.errors import ConfigError
from envs.rl.signal_env import BatchedSignalEnv
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import grid_roadnet, uniform_demand
from tests.scenarios import small_grid
from tests.test_action_modes import allowed, duration_env, hold_timeline


def edited_pair(edit):
    """A 1x2 grid whose first intersection's roadnet entry went through `edit` (the second is left as is)."""
    roadnet = grid_roadnet(1, 2, road_length=150.0)
    edited = [x for x in roadnet["intersections"] if not x["virtual"]][0]
    edit(edited)
    # the loader refuses a route over a roadLink no phase greens (its vehicles could never cross): keep
    # the flows whose turns at the edited intersection some phase still greens
    greened = {k for phase in edited["trafficLight"]["lightphases"] for k in phase["availableRoadLinks"]}
    turns = {(link["startRoad"], link["endRoad"]) for k, link in enumerate(edited["roadLinks"]) if k in greened}
    every = {(link["startRoad"], link["endRoad"]) for link in edited["roadLinks"]}
    flow = [f for f in uniform_demand(roadnet, rate_per_origin=600.0, horizon=300, seed=0)
            if all(pair in turns for pair in zip(f["route"], f["route"][1:]) if pair in every)]
    return scenario_from_dicts(roadnet, flow, name="edited_pair")


def one_signal_phase(intersection: dict) -> None:
    lights = intersection["trafficLight"]
    lights["lightphases"] = lights["lightphases"][:1]


def transition_phase_first(intersection: dict) -> None:
    """Put a CityFlow transition phase (right turns only) before the signal phases: episodes start on it."""
    rights = [k for k, link in enumerate(intersection["roadLinks"]) if link["type"] == "turn_right"]
    intersection["trafficLight"]["lightphases"].insert(0, {"time": 5, "availableRoadLinks": rights})


@pytest.mark.parametrize("durations, field", [((10, True), r"green_durations_s\[1\]"),
                                              ((2.5, 10), r"green_durations_s\[0\]"),
                                              ((10.0, 20), r"green_durations_s\[0\]")])
def test_green_durations_must_be_whole_seconds_not_bools_or_floats(durations, field):
    with pytest.raises(ConfigError, match=field):
        BatchedSignalEnv(small_grid(1, 1), 1, episode_s=60, action_mode="phase_duration", green_durations_s=durations)


def test_an_intersection_with_one_signal_phase_still_keeps_or_switches():
    """Keep and switch both exist at a one-phase intersection (switching cycles back to the same
    phase): 2 actions, both accepted, the phase never changes. Phase mode gives it 1 action."""
    scenario = edited_pair(one_signal_phase)
    env = BatchedSignalEnv(scenario, 1, episode_s=60, decision_interval_s=5, action_mode="keep_or_switch")
    env.reset(0)
    assert env.num_actions.tolist() == [2, 2] and allowed(env, 0, 0) == [0, 1]
    for action in (1, 0, 1, 1):
        env.step(torch.tensor([[action, 1]]))
        assert int(env.sim.state.phase[0, 0]) == 0
    assert int(env.sim.state.phase[0, 1]) != 0  # the other intersection did switch
    phase = BatchedSignalEnv(scenario, 1, episode_s=60, action_mode="phase")
    assert phase.num_actions.tolist() == [1, 4]


def test_keep_never_keeps_the_transition_phase_but_minus_one_does():
    """The edited intersection's signal phases are 1..4 (phase 0 the transition phase every episode
    starts on): -1 stays on phase 0, KEEP and SWITCH both start the first signal phase (1); once
    there, -1 and KEEP keep it where SWITCH (intersection 1, past min green) moves on."""
    env = BatchedSignalEnv(edited_pair(transition_phase_first), 1, episode_s=120, decision_interval_s=5,
                           action_mode="keep_or_switch")
    env.reset(0)
    assert env.actions.layout.action_phase[0].tolist() == [1, 2, 3, 4]
    assert env.sim.state.phase.tolist() == [[0, 0]]
    phases = []
    for actions in ([-1, 0], [-1, 0], [0, 0], [0, 0], [0, 0], [-1, 1], [-1, 0], [1, 0]):
        env.step(torch.tensor([actions]))
        phases.append(env.sim.state.phase[0].tolist())
    assert phases == [[0, 0], [0, 0], [1, 0], [1, 0], [1, 0], [1, 1], [1, 1], [2, 1]]

    other = BatchedSignalEnv(edited_pair(transition_phase_first), 1, episode_s=60, action_mode="keep_or_switch")
    other.reset(0)
    other.step(torch.tensor([[1, 0]]))  # SWITCH from the transition phase: the first signal phase too
    assert int(other.sim.state.phase[0, 0]) == 1


def test_a_hold_counts_only_the_green_of_its_phase_when_the_switch_waits_on_min_green():
    """Yellow 3 s, all-red 2 s, min green 24 s, decisions every 5 s, action a = phase a // 2 for
    (10, 20)[a % 2] s. t=0: phase 1 for 10 s (phase 0 is established at reset: switch at once),
    green from 5, held at 5 and 10, free at 15. t=15: phase 2 for 10 s, but phase 1's green is
    10 s old: the switch waits for t=29 (re-issued at the decisions 20 and 25, held there while
    phase 1 still shows), green from 34, held at 30, 35, 40, free at 45 (10 s of phase 2's green)."""
    env = duration_env(engine=EngineParams(yellow_s=3, all_red_s=2, min_green_s=24), episode_s=100)
    seen = hold_timeline(env, {0: 2, 15: 4})
    every = list(range(8))
    assert seen == [(0, 0, every), (5, 1, [2]), (10, 1, [2]), (15, 1, every), (20, 1, [4]), (25, 1, [4]),
                    (30, 2, [4]), (35, 2, [4]), (40, 2, [4]), (45, 2, every)]


def test_a_copy_that_is_not_at_a_decision_starts_no_hold():
    """`commands(..., deciding=)`: the copies outside the mask keep their (no) hold and get -1."""
    env = duration_env(copies=2)
    env.reset(0)
    command = env.actions.commands(torch.tensor([[2], [2]]), env.sim.state, deciding=torch.tensor([True, False]))
    assert command.tolist() == [[1], [-1]]
    assert env.actions.holding(env.sim.state)[:, 0].tolist() == [True, False]
    assert env.actions.mask(env.sim.state)[:, 0].tolist() == [[a == 2 for a in range(8)], [True] * 8]
