"""train.py (both trainers), evaluate.py and export.py with ``engine.device`` set, once per device of
`tests.conftest.DEVICES`; and a device this machine lacks is an error naming ``engine.device``.
Tiny runs on grid_1x1 (a few hundred agent-steps); no timing assertions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import evaluate
from agents.ppo.policy import controller_for_checkpoint
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_trainer import train_torchrl
from envs.engine import Simulator
from envs.errors import ConfigError
from envs.scenario import load_scenario
from tests.conftest import REPO_ROOT
from tests.test_train import train_config, tiny_run

TINY_TRAIN = dict(env__copies=2, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                  eval__steps=100, env__episode_s=100, train__total_agent_steps=200, train__eval_every=100,
                  train__checkpoint_every=100)


def _config(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def _train(trainer: str, device: str, run_dir, agent: str = "ppo_shared"):
    """A tiny run of `trainer` with the engine and the policy on `device`; its last checkpoint."""
    overrides = tiny_run(**TINY_TRAIN, engine__device=device, train__device=device, agent=agent)
    if trainer == "torchrl":
        overrides.append("trainer=torchrl")
        result = train_torchrl(train_config(*overrides), run_dir)
        return result, run_dir / "checkpoints" / "last.pt"
    return train(train_config(*overrides), run_dir), run_dir / "checkpoints" / "last.zip"


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_each_trainer_trains_on_the_device_and_its_checkpoint_runs_anywhere(device, trainer, tmp_path):
    result, checkpoint = _train(trainer, device, tmp_path / "run")
    assert checkpoint.is_file()
    scenario = load_scenario("grid_1x1", horizon=100, device=device)
    decided = []
    for where in ("cpu", device):  # a device-trained checkpoint loads on the CPU and on its device
        controller = controller_for_checkpoint(checkpoint, device=where)
        sim = Simulator(scenario.network, scenario.demand(2))
        controller.reset(sim)
        sim.run(100, controller)
        assert controller.last_actions.device.type == device  # actions come back to the engine's device
        decided.append(sim.state.phase.cpu())
    assert torch.equal(*decided)


def test_evaluate_runs_a_device_trained_checkpoint_beside_the_baselines_on_the_device(device, tmp_path):
    _, checkpoint = _train("torchrl", device, tmp_path / "run")
    out = tmp_path / "eval"
    out.mkdir()
    cfg = _config("evaluate", "scenario=grid_1x1", "eval.steps=120", "eval.seeds=2", "eval.progress=false",
                  "eval.plots=false", "controllers=[fixed_time,max_pressure,sotl,fixed_time_webster]",
                  f"checkpoint={checkpoint}", f"engine.device={device}")
    result = evaluate.evaluate(cfg, out)
    assert result["controllers"][-1] == "ppo_shared"
    # every controller's row, the policy's included (the key was misspelt once, which checked nothing)
    assert set(result["summary"]) == {"fixed_time", "max_pressure", "sotl", "fixed_time_webster", "ppo_shared"}
    assert all(np.isfinite(entry["travel_time/mean"]["mean"]) for entry in result["summary"].values())


def test_export_checks_onnx_against_torch_on_device_recorded_decisions(device, tmp_path):
    from agents.deploy.export import export_policy
    from export import check_against_torch

    _, checkpoint = _train("sb3", device, tmp_path / "run", agent="ppo_independent")
    onnx_path, _ = export_policy(checkpoint, tmp_path / "export")
    result = check_against_torch(onnx_path, str(checkpoint), 300, 2, None, device=device)
    assert result["decisions"] > 0 and result["identical"] == result["decisions"]


def test_the_export_cli_config_takes_engine_device(tmp_path, capsys):
    import export

    _, checkpoint = _train("sb3", "cpu", tmp_path / "run")
    cfg = _config("export", f"checkpoint={checkpoint}", f"out={tmp_path / 'out'}", "check.seconds=100",
                  "engine.device=cpu")
    export.export(cfg)
    assert "check: " in capsys.readouterr().out and (tmp_path / "out" / "last.onnx").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_an_error_naming_engine_device_in_every_entry_point(device, tmp_path):
    import export
    from agents.ppo.config import check_config, check_evaluate_config

    says = f"<config>: field 'engine.device' = {device!r}: CUDA is not available"
    with pytest.raises(ConfigError, match=says):
        check_config(train_config(*tiny_run(engine__device=device)))
    with pytest.raises(ConfigError, match=says):
        check_config(train_config(*tiny_run(engine__device=device), "trainer=torchrl"))
    with pytest.raises(ConfigError, match=says):
        export.export(_config("export", f"checkpoint={tmp_path / 'none.zip'}", f"engine.device={device}"))
    cfg = _config("evaluate", "scenario=grid_1x1", f"engine.device={device}")
    with pytest.raises(ConfigError, match=says):  # evaluate.py's main checks this before any work
        check_evaluate_config(cfg)
    with pytest.raises(ConfigError, match=f"field 'device' = {device!r}: CUDA is not available"):
        evaluate.evaluate(cfg, tmp_path)  # called as a library, past that check: the engine refuses


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_each_trainer_resumes_on_the_device(device, trainer, tmp_path):
    """A checkpoint read onto a GPU brings its saved random states there; the resume restores them
    (CPU byte tensors) all the same and trains on."""
    _, checkpoint = _train(trainer, device, tmp_path / "first")
    overrides = tiny_run(**{**TINY_TRAIN, "train__total_agent_steps": 400}, engine__device=device,
                         train__device=device, resume=str(checkpoint))
    if trainer == "torchrl":
        result = train_torchrl(train_config(*overrides, "trainer=torchrl"), tmp_path / "second")
    else:
        result = train(train_config(*overrides), tmp_path / "second")
    assert result["num_timesteps"] >= 400
