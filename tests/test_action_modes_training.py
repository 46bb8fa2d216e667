"""Both trainers train under every action mode, their checkpoints drive a simulator exactly as the
env applied the policy (holds included), and export refuses the modes the runtime cannot run."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from sb3_contrib import MaskablePPO

from agents.deploy.export import export_policy
from agents.ppo.config import demand_spec, engine_params
from agents.ppo.periodic_eval import Evaluator
from agents.ppo.policy import PolicyController, controller_for_checkpoint
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_trainer import train_torchrl
from envs.engine import Simulator
from envs.errors import CheckpointError, ConfigError
from envs.rl.actions import DEFAULT_GREEN_DURATIONS_S
from envs.rl.sb3_env import IntersectionVecEnv
from envs.scenario import load_scenario
from tests.conftest import REPO_ROOT
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import uneven_grid

NEW_MODES = ("keep_or_switch", "phase_duration")
SMALL = {"scenario": "grid_4x4", "env.copies": 2, "env.episode_s": 100, "env.decision_interval_s": 5,
         "agent.n_steps": 5, "agent.batch_size": 80, "agent.n_epochs": 2, "agent.net_arch": "[16,16]",
         "eval.seeds": 1, "eval.steps": 100, "train.total_agent_steps": 320, "train.eval_every": 160,
         "train.checkpoint_every": 160, "train.progress": "false", "train.threads": 1, "train.device": "cpu"}


def small_config(mode: str, trainer: str):
    overrides = {**SMALL, "env.action_mode": mode, "trainer": trainer}
    if mode == "phase_duration":  # the other modes refuse durations they would not read
        overrides["env.green_durations_s"] = "[10,20,30]"
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=[f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
@pytest.mark.parametrize("mode", NEW_MODES)
def test_both_trainers_train_in_every_new_mode_and_the_checkpoint_replays_it(tmp_path, mode, trainer):
    cfg = small_config(mode, trainer)
    result = (train if trainer == "sb3" else train_torchrl)(cfg, tmp_path)
    assert result["num_timesteps"] == 320
    last = tmp_path / "checkpoints" / ("last.zip" if trainer == "sb3" else "last.pt")
    controller = controller_for_checkpoint(last)
    assert controller.meta["env"]["action_mode"] == mode
    assert controller.meta["env"]["green_durations_s"] == ([10, 20, 30] if mode == "phase_duration"
                                                           else list(DEFAULT_GREEN_DURATIONS_S))
    scenario = load_scenario("grid_4x4")
    evaluator = Evaluator(scenario, demand_spec(cfg.eval.demand, "eval.demand"), 1, 100, engine_params(cfg))
    travel = evaluator.evaluate(controller)["travel_time/mean"].mean()
    assert travel == pytest.approx(result["eval_history"][-1]["travel_time/mean"], rel=1e-6)
    if trainer == "sb3":
        with pytest.raises(CheckpointError, match=f"env.action_mode.*{mode}"):
            export_policy(last, tmp_path / "export")


@pytest.mark.parametrize("mode", NEW_MODES)
def test_the_policy_controller_replays_the_envs_decisions_second_for_second(mode):
    scenario = uneven_grid()  # 4 intersections, the first with 3 phases: padding is masked
    copies, interval = 2, 5
    venv = IntersectionVecEnv(copies=copies, scenario=scenario, episode_s=300, decision_interval_s=interval,
                              observations=["phase_onehot", "time_in_phase", "lane_count", "intersection_id"],
                              demand={"mode": "original"}, action_mode=mode,
                              **({"green_durations_s": (10, 20)} if mode == "phase_duration" else {}))
    model = MaskablePPO("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"ortho_init": False})
    with torch.no_grad():  # large state-dependent logits: the greedy actions vary (keep and switch)
        model.policy.action_net.weight.copy_(torch.randn(model.policy.action_net.weight.shape,
                                                         generator=torch.Generator().manual_seed(0)) * 5)
    controller = PolicyController(model=model, meta={"env": venv.core.describe()})
    sim = Simulator(scenario.network, scenario.demand(copies=copies), venv.core.params)
    controller.reset(sim)
    obs = venv.reset()
    switches = 0
    for _ in range(40):  # 200 s
        masks = venv.action_masks()
        assert (controller.decoder.mask(sim.state).reshape(len(obs), -1).numpy() == masks).all()
        actions, _ = model.predict(obs, deterministic=True, action_masks=masks)
        before = sim.state.phase.clone()
        for _ in range(interval):
            sim.step(controller.act(sim))
        obs, *_ = venv.step(actions)
        assert torch.equal(sim.state.phase, venv.core.sim.state.phase)
        assert torch.equal(sim.state.phase_timer, venv.core.sim.state.phase_timer)
        switches += int((sim.state.phase != before).sum())
    assert switches > 0  # the policy did change phases


def test_a_checkpoint_from_before_the_action_modes_still_chooses_phases():
    venv = IntersectionVecEnv(copies=1, scenario=uneven_grid(), episode_s=60)
    model = MaskablePPO("MlpPolicy", venv, seed=0, device="cpu", n_steps=8, batch_size=8)
    meta = {"env": {k: v for k, v in venv.core.describe().items() if k not in ("action_mode", "green_durations_s")}}
    controller = PolicyController(model=model, meta=meta)
    sim = Simulator(venv.core.scenario.network, venv.core.scenario.demand(copies=1), venv.core.params)
    controller.reset(sim)
    assert controller.decoder.mode == "phase" and controller.decoder.max_actions == 4


def test_a_max_green_is_refused_for_a_policy_that_times_its_own_greens():
    venv = IntersectionVecEnv(copies=1, scenario=uneven_grid(), episode_s=60, action_mode="phase_duration")
    model = MaskablePPO("MlpPolicy", venv, seed=0, device="cpu", n_steps=8, batch_size=8)
    with pytest.raises(ConfigError, match="max_green_s") as refused:
        PolicyController(model=model, meta={"env": venv.core.describe()}, max_green_s=90)
    assert_names_everything(refused.value, "<controller:ppo>", "max_green_s", 90)
    assert 'leave it unset' in refused.value.reason
