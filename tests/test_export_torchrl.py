"""Export of the TorchRL trainer's ``.pt`` checkpoints (agents/deploy/export.py with
agents/deploy/torchrl_graph.py, export.py): the same model inputs/outputs and metadata as for SB3,
and ONNX actions identical to the TorchRL controller's on decisions recorded from the simulator.
Tiny runs: grid_4x4 (16 intersections, a few hundred agent-steps) and untrained actors on the
uneven grid (an intersection with 3 actions of 4: masking in the graph)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from agents.deploy.export import INPUTS, OUTPUTS, export_policy
from agents.ppo.torchrl_policy import (
    TorchRLPolicyController,
    build_networks,
    network_spec,
    read_torchrl_meta,
    save_torchrl_checkpoint,
)
from agents.ppo.torchrl_trainer import train_torchrl
from envs.rl.sb3_env import IntersectionVecEnv
from envs.scenario import load_scenario
from export import check_against_torch
from tests.deploy_fixtures import OBSERVATIONS, run_export_cli, session_actions, simulator
from tests.scenarios import uneven_grid
from tests.test_torchrl_trainer import SMALL, torchrl_config

AGENTS = ["ppo_shared", "ppo_independent"]
_TRAINED: dict[str, tuple] = {}


def _trained(tmp_path_factory, agent: str):
    """A tiny TorchRL run on grid_4x4 (non-orthogonal init, so actions vary with the state),
    exported from its last checkpoint: ``(checkpoint, onnx, json)``."""
    if agent not in _TRAINED:
        run = tmp_path_factory.mktemp(f"torchrl_{agent}")
        train_torchrl(torchrl_config(SMALL, agent, agent__ortho_init="false", train__eval_every=0), run)
        checkpoint = run / "checkpoints" / "last.pt"
        _TRAINED[agent] = (checkpoint, *export_policy(checkpoint, run / "export"))
    return _TRAINED[agent]


def _untrained(scenario, share_params: bool, path):
    """A freshly initialised TorchRL actor on `scenario`, saved as a trainer checkpoint."""
    venv = IntersectionVecEnv(copies=1, scenario=scenario, episode_s=3600, observations=OBSERVATIONS)
    core = venv.core
    agent = SimpleNamespace(policy="shared" if share_params else "independent", net_arch=[16, 16],
                            activation="tanh", ortho_init=False)
    spec = network_spec(agent, core.layout.num_intersections, core.obs_size, core.max_actions, False)
    torch.manual_seed(1)  # unseeded, an occasional draw chose one action per intersection whatever the state
    actor, critic = build_networks(spec)
    name = "ppo_shared" if share_params else "ppo_independent"
    meta = {"env": core.describe(), "networks": spec, "config": {"agent": {"name": name}}, "num_timesteps": 0}
    return save_torchrl_checkpoint(path, actor=actor, critic=critic, optimizer=None, num_timesteps=0, meta=meta)


def _recorded(checkpoint, scenario, copies: int, seconds: int) -> dict:
    controller = TorchRLPolicyController(checkpoint)
    sim = simulator(scenario, copies, seconds)
    controller.reset(sim)
    from agents.deploy.simulated import record_decisions

    return record_decisions(controller, sim, seconds)


@pytest.mark.parametrize("agent", AGENTS)
def test_a_torchrl_checkpoint_exports_with_the_sb3_inputs_outputs_and_metadata(tmp_path_factory, agent):
    checkpoint, onnx_path, meta_path = _trained(tmp_path_factory, agent)
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    # the default observation reads the approach counts: the model takes them after the base inputs
    assert [i.name for i in model.graph.input] == list(INPUTS) + ["approach_moving", "approach_halting"]
    assert [o.name for o in model.graph.output] == list(OUTPUTS)
    meta = json.loads(meta_path.read_text())
    assert set(meta) >= {"format", "model", "observation", "timing", "intersections", "training"}
    assert len(meta["intersections"]) == 16 and meta["training"]["agent"] == agent
    names = [f["name"] for f in meta["observation"]["features"]]
    trained_on = read_torchrl_meta(checkpoint)["env"]["observations"]
    assert names == list(trained_on) and names[-1] == "intersection_id"  # the actor reads the one-hot too
    assert meta["training"]["num_timesteps"] == 320 and meta["training"]["scenario"] == "grid_4x4"


@pytest.mark.parametrize("agent", AGENTS)
def test_trained_torchrl_policies_agree_with_onnx_on_recorded_decisions(tmp_path_factory, agent):
    checkpoint, onnx_path, _ = _trained(tmp_path_factory, agent)
    rows = _recorded(checkpoint, load_scenario("grid_4x4"), 16, 450)
    assert rows["action"].size >= 10_000
    assert np.array_equal(session_actions(onnx_path, rows), rows["action"])
    result = check_against_torch(onnx_path, str(checkpoint), 300, 2, None)  # export.py's check
    assert result["decisions"] > 0 and result["identical"] == result["decisions"]


@pytest.mark.parametrize("share_params", [True, False])
def test_masked_actions_and_per_intersection_weights_agree_on_the_uneven_grid(tmp_path, share_params):
    scenario = uneven_grid(horizon=3600)
    checkpoint = _untrained(scenario, share_params, tmp_path / "actor.pt")
    onnx_path, _ = export_policy(checkpoint, tmp_path / "out", scenario=scenario)
    rows = _recorded(checkpoint, scenario, 32, 900)
    assert rows["action"].size >= 10_000
    varied = [len(np.unique(rows["action"][rows["intersection"] == i])) for i in range(4)]
    assert max(varied) >= 2, varied  # actions vary with the state, not only with the intersection
    got = session_actions(onnx_path, rows)
    assert np.array_equal(got, rows["action"])
    assert not (got[rows["intersection"] == 0] == 3).any()  # intersection 0 has 3 actions


def test_export_cli_takes_a_pt_checkpoint_and_checks_it_against_torch(tmp_path_factory, tmp_path):
    checkpoint, *_ = _trained(tmp_path_factory, "ppo_independent")
    done, counts = run_export_cli(checkpoint, tmp_path, "g4")
    assert counts[0] == counts[1] > 0
