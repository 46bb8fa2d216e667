"""An intersection none of whose phases serves a movement other than a right turn (a SUMO junction whose
only movement turns right; a CityFlow intersection with right-turn roadLinks alone): its phases that green
a movement are its signal phases, so it is an agent with something to command (docs/environments.md).
Without this it had no action: the env's action spaces could not be built (MultiDiscrete of 0), its mask
row was all False (TorchRL's masked sampling failed), and its export had an empty fallback plan the runtime
refused. The fixture: tests/sumo_fixtures.py's NET with DETOUR, where junction N (unsignalised) has one
movement, CN -> NE, a right turn."""

from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest
import torch

import envs
from agents.classical import MaxPressure
from agents.deploy.export import export_policy
from agents.deploy.runtime import PolicyRuntime
from envs.engine import Simulator
from envs.engine.intersections import intersection_layout
from envs.scenario import load_scenario, scenario_from_dicts, scenario_from_sumo
from tests.deploy_fixtures import readings_message, untrained
from tests.minimal_scenario import minimal_flow, minimal_roadnet
from tests.sumo_fixtures import DETOUR, NET, write_tiny

RIGHT_TURN_NET = NET.replace("</net>\n", DETOUR.replace("SPEED", "10"))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return scenario_from_sumo(write_tiny(tmp_path_factory.mktemp("right_turn"), net=RIGHT_TURN_NET))


def test_a_sumo_junction_of_right_turns_alone_has_its_phase_as_its_one_action(scenario):
    layout = intersection_layout(scenario.network)
    assert layout.ids == ("C", "E", "N")
    assert scenario.network.num_phases.tolist() == [2, 1, 1]
    # C's two greens and E's one, as before; N's one phase (its right turn green) is its action
    assert layout.action_phase.tolist() == [[0, 1], [0, -1], [0, -1]]
    assert layout.num_actions.tolist() == [2, 1, 1]


def test_a_cityflow_intersection_of_right_turns_alone_chooses_its_phases_that_green_something():
    roadnet = minimal_roadnet()
    roadnet["intersections"][1]["roadLinks"][0]["type"] = "turn_right"  # A: one roadLink, a right turn
    flow = [entry for entry in minimal_flow() if entry["route"][-1] == "b_e"]
    layout = intersection_layout(scenario_from_dicts(roadnet, flow, name="mini").network)
    assert layout.ids == ("A", "B")
    # A's phases: 0 greens the right turn, 1 greens nothing (no action: it would only stop the traffic)
    assert layout.action_phase.tolist() == [[0, -1], [0, 1]]


def test_a_phase_greening_a_right_turn_no_other_action_greens_is_an_action():
    """B's second roadLink (a_b -> b_n) typed a right turn, green in phase 1 alone: phase 1 served right
    turns only, so it was no action, and once B left phase 0 (where every run starts) no controller that
    chooses among the actions gave the turn a green again: max pressure stranded the vehicle bound for b_n."""
    roadnet = minimal_roadnet()
    roadnet["intersections"][2]["roadLinks"][1]["type"] = "turn_right"
    scenario = scenario_from_dicts(roadnet, minimal_flow(), name="mini")
    assert intersection_layout(scenario.network).action_phase.tolist() == [[0, -1], [0, 1]]
    sim = Simulator(scenario.network, scenario.demand(1))
    finish = sim.run(400, MaxPressure()).trip_finish[0]
    assert (finish[:-1] >= 0).all(), finish.tolist()  # the b_n trip was -1: never left the network


def test_the_gymnasium_and_pettingzoo_action_spaces_give_it_one_action(scenario):
    vec = gymnasium.make_vec("gridlight/TrafficSignal-v0", num_envs=2, vectorization_mode="vector_entry_point",
                             scenario=scenario)
    single = gymnasium.make("gridlight/TrafficSignal-v0", scenario=scenario)
    assert single.action_space.nvec.tolist() == [2, 1, 1]
    assert vec.action_space.high.tolist() == [[1, 0, 0], [1, 0, 0]]
    vec.reset(seed=0)
    _, _, _, _, info = vec.step(vec.action_space.sample())
    assert info["action_mask"][:, 2].tolist() == [[True, False], [True, False]]
    par = envs.parallel_env(scenario=scenario)
    assert [par.action_space(a).n for a in par.possible_agents] == [2, 1, 1]
    par.reset(seed=0)
    par.step({a: par.action_space(a).sample() for a in par.agents})
    for env in (vec, single, par):
        env.close()


def test_the_sb3_and_torchrl_masks_allow_its_one_action_and_sampling_draws_it(scenario):
    vec = envs.sb3_vec_env(scenario=scenario, copies=2)
    vec.reset()
    masks = np.stack(vec.env_method("action_masks"))
    assert masks.tolist() == [[True, True], [True, False], [True, False]] * 2
    vec.close()
    env = envs.torchrl_env(scenario=scenario, copies=2, device="cpu")
    torch.manual_seed(0)
    state = env.rand_step(env.reset())  # draws from the masked Categorical: no all-False row
    assert state["intersections", "action"][:, 1:].tolist() == [[0, 0], [0, 0]]
    logits = torch.where(state["intersections", "action_mask"], 0.0, -torch.inf)
    assert not torch.softmax(logits, -1).isnan().any()
    env.close()


def test_its_export_loads_and_a_message_may_leave_it_out(scenario, tmp_path):
    """N has no SUMO light, one phase and one action: the runtime needs no readings for it (as for any
    unsignalised junction, docs/deployment.md); given, it is answered with its one phase."""
    onnx_path, meta_path = export_policy(untrained(scenario, "shared", tmp_path / "p.zip"), tmp_path / "out",
                                         scenario=scenario)
    entry = json.loads(meta_path.read_text())["intersections"][2]
    assert (entry["id"], entry["actions"], entry["sumo"]["tls_id"]) == ("N", [0], None)
    assert [step["phase"] for step in entry["fallback_plan"]] == [0]
    runtime = PolicyRuntime(onnx_path)  # was refused: 'intersections[2].fallback_plan' = [] (empty fallback plan)
    full = readings_message(runtime, 0.0)
    reply = runtime.decide(full)
    assert reply["commands"]["N"]["phase"] == 0 and reply["commands"]["N"]["source"] == "policy"
    lights = {"t": 0.0, "intersections": {k: v for k, v in full["intersections"].items() if k != "N"}}
    reply = PolicyRuntime(onnx_path).decide(lights)
    assert list(reply["commands"]) == ["C", "E"] and reply["faults"] == []
    assert all(c["faults"] == [] for c in reply["commands"].values())


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_both_trainers_run_on_a_scenario_with_it(tmp_path, trainer):
    """A tiny train.py run given the fixture's .sumocfg as scenario.name: TorchRL's stopped at the first
    rollout ('intersections.action[0, 2] (N)' = 0: outside the action mask: must be in [0, 0)); SB3's ran,
    N's all-False mask row drawing actions the env then ignored."""
    from agents.ppo.sb3_trainer import train
    from agents.ppo.torchrl_trainer import train_torchrl
    from tests.test_torchrl_trainer import torchrl_config

    folder = write_tiny(tmp_path / "net", net=RIGHT_TURN_NET)
    settings = {"scenario.name": str(folder / "tiny.sumocfg"), "env.copies": 2, "agent.n_steps": 8,
                "agent.batch_size": 8, "agent.n_epochs": 1, "agent.net_arch": "[8,8]", "train.total_agent_steps": 48,
                "eval.seeds": 1, "eval.steps": 60, "train.progress": "false", "train.threads": 1,
                "train.device": "cpu", "trainer": trainer}
    result = (train if trainer == "sb3" else train_torchrl)(torchrl_config(settings), tmp_path / "run")
    assert result["num_timesteps"] == 48
    assert all(np.isfinite(e["travel_time/mean"]) for e in result["eval_history"])
    # E and N have one signal phase each: the 48 agent-steps are C's decisions (tests/test_deciding_agents.py)


def test_a_network_of_lights_alone_gets_no_single_phase_notice(capsys):
    from agents.ppo.run_messages import say_single_action_agents

    say_single_action_agents(intersection_layout(load_scenario("grid_4x4", horizon=60).network).action_phase, 1024)
    assert "single signal phase" not in capsys.readouterr().out
