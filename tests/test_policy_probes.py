"""PolicyController feeds a probe sensor: a policy trained with probe features evaluates, and
sees the same probe features as the training env for the same state and probe keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.ppo.config import engine_params
from agents.ppo.periodic_eval import PRIMARY, Evaluator
from agents.ppo.policy import PolicyController
from agents.ppo.sb3_trainer import train
from envs.engine import Simulator
from envs.errors import CheckpointError
from envs.rl.sb3_env import IntersectionVecEnv
from envs.scenario import load_scenario
from envs.scenario.splits import DemandSpec
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import uneven_grid
from tests.test_train import tiny_run, train_config

OBSERVATIONS = ["phase_onehot", "time_in_phase", "lane_count", "probe_halted", "probe_queue_gap"]


def _probe_columns(venv) -> np.ndarray:
    """Bool mask of the observation columns that hold probe features."""
    offsets = venv.core.describe()["observations"]
    mask = np.zeros(venv.core.obs_size, dtype=bool)
    for name in ("probe_halted", "probe_queue_gap"):
        mask[offsets[name]["start"]: offsets[name]["start"] + offsets[name]["size"]] = True
    return mask


@pytest.mark.parametrize("report_s", [5, 3])  # 3 s: reports fall between decisions, read as the env reads them
def test_controller_probe_features_equal_the_training_envs_for_the_same_state(report_s):
    scenario = uneven_grid()
    copies, interval = 2, 5
    venv = IntersectionVecEnv(copies=copies, scenario=scenario, episode_s=300, decision_interval_s=interval,
                              observations=OBSERVATIONS, demand={"mode": "original"},
                              probes={"p": 0.5, "interval_s": report_s})
    model = MaskablePPO("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"ortho_init": False})
    controller = PolicyController(model=model, meta={"env": venv.core.describe()})
    controller.probe_samples = [("train", b) for b in range(copies)]  # the env keys copy b as train sample b
    sim = Simulator(scenario.network, scenario.demand(copies=copies), venv.core.params)
    controller.reset(sim)
    probe = _probe_columns(venv)

    obs = venv.reset()
    seen_probe_values = 0.0
    for _ in range(40):  # 200 s
        actions, _ = model.predict(obs, deterministic=True, action_masks=venv.action_masks())
        mine = controller.observe(sim).reshape(len(obs), -1).numpy()
        assert np.allclose(mine, obs, atol=1e-6)
        seen_probe_values += float(np.abs(obs[:, probe]).sum())
        for _ in range(interval):
            sim.step(controller.act(sim))
        obs, *_ = venv.step(actions)
    assert seen_probe_values > 0  # the probes reported halted vehicles: the comparison had something to compare

    # keyed as eval samples instead, the same copies see other probe vehicles
    other = PolicyController(model=model, meta={"env": venv.core.describe()})
    sim = Simulator(scenario.network, scenario.demand(copies=copies), venv.core.params)
    other.reset(sim)
    assert not torch.equal(other.probes.key, controller.probes.key)


def test_a_policy_trained_with_probe_halted_evaluates(tmp_path):
    observations = "[phase_onehot,time_in_phase,lane_count,lane_halting,probe_halted]"
    cfg = train_config(*tiny_run(seed=0, env__copies=2, agent__batch_size=60, train__total_agent_steps=240,
                                 train__eval_every=0, eval__seeds=1, eval__steps=120),
                       "env.probes.p=0.2", f"env.observations={observations}")
    summary = train(cfg, tmp_path / "run")  # its start and end evaluations run the PolicyController
    checkpoint = tmp_path / "run" / "checkpoints" / "last.zip"
    controller = PolicyController(str(checkpoint))
    assert controller.meta["env"]["probes"]["p"] == 0.2
    grid = load_scenario("grid_1x1")
    evaluator = Evaluator(grid, DemandSpec(mode="poisson"), seeds=2, steps=300, params=engine_params(cfg))
    metrics = evaluator.evaluate(controller)
    assert controller.probe_samples == [("eval", 0), ("eval", 1)]  # each copy keyed by its eval seed
    assert np.all(metrics[PRIMARY] > 0) and summary is not None


def test_a_meta_without_probes_is_refused_for_a_probe_policy():
    scenario = uneven_grid()
    venv = IntersectionVecEnv(copies=1, scenario=scenario, episode_s=100, observations=OBSERVATIONS,
                              probes={"p": 0.5})
    model = MaskablePPO("MlpPolicy", venv, n_steps=4, batch_size=4, seed=0, device="cpu")
    meta = venv.core.describe()
    meta["probes"] = {"p": 0.0}
    controller = PolicyController(model=model, meta={"env": meta})
    with pytest.raises(CheckpointError, match="env.probes.p") as refused:
        controller.reset(Simulator(scenario.network, scenario.demand(copies=1), venv.core.params))
    assert_names_everything(refused.value, "<controller:ppo>", "env.probes.p", 0.0)
    assert 'the policy observes probe features' in refused.value.reason
