"""train.py and the PPO agents: configs, a tiny training run, resume, the policy controller,
and the independent per-intersection policy. Small scenarios only; no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from sb3_contrib import MaskablePPO

import agents.ppo.config  # noqa: F401  (registers the structured config)
from agents.ppo.indexed_policy import IndexedActorCriticPolicy, RowGroups
from agents.ppo.policy import META_NAME, PolicyController, load_policy, read_meta
from agents.ppo.config import AgentConfig, check_config, demand_spec, engine_params
from agents.ppo.periodic_eval import Evaluator
from agents.ppo.sb3_logging import silent_logger
from agents.ppo.sb3_trainer import train
from envs.engine import Simulator
from envs.errors import CheckpointError, ConfigError
from envs.engine.intersections import action_commands, intersection_layout
from envs.scenario import load_scenario
from envs.rl.sb3_env import IntersectionVecEnv
from tests.conftest import REPO_ROOT
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import uneven_grid

CONFIGS = REPO_ROOT / "configs"
GROUPS = ("scenario", "engine", "env", "agent", "train", "eval")
OBSERVATIONS = ["phase_onehot", "time_in_phase", "lane_count", "lane_halting", "intersection_id"]


def train_config(*overrides: str, config_dir=CONFIGS):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


# tiny runs on a 1x1 grid: small rollouts, 600 s episodes
TINY = {
    "scenario": "grid_1x1", "env.episode_s": 600, "eval.steps": 600, "eval.seeds": 3, "train.progress": "false",
    "train.threads": 1, "train.device": "cpu", "agent.n_steps": 30, "agent.batch_size": 240,
}


def tiny_run(**changes) -> list[str]:
    """TINY's overrides with some changed (``env__copies=4`` for ``env.copies=4``)."""
    merged = {**TINY, **{key.replace("__", "."): value for key, value in changes.items()}}
    return [f"{key}={value}" for key, value in merged.items()]


class RandomController:
    """Uniformly random signal phase at every decision (the 'random policy' baseline)."""

    def __init__(self, decision_interval_s: int = 10, seed: int = 0) -> None:
        self.interval = decision_interval_s
        self.generator = torch.Generator().manual_seed(seed)

    def reset(self, sim):
        self.layout = intersection_layout(sim.network)
        self.command = sim.keep_command()

    def act(self, sim):
        if int(sim.state.t[0]) % self.interval == 0:
            batch = self.command.shape[0]
            draws = torch.rand(batch, self.layout.num_intersections, generator=self.generator)
            actions = (draws * self.layout.num_actions).long()
            self.command = action_commands(self.layout, actions)
        return self.command


# ---- configs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes_and_passes_the_checks(group):
    options = sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))
    assert options, group
    for option in options:
        # mappo's centralised critic exists in the TorchRL trainer only (check_config says so)
        cfg = train_config(f"{group}={option}", *(["trainer=torchrl"] if option == "mappo" else []))
        check_config(cfg)
        assert OmegaConf.get_type(cfg.agent) is AgentConfig
    for agent in ("ppo_shared", "ppo_independent"):
        assert train_config(f"agent={agent}").agent.name == agent


def test_the_composed_config_shows_every_hyperparameter():
    cfg = train_config("agent=ppo_independent")
    assert cfg.agent.policy == "independent"
    for key in ("n_steps", "batch_size", "n_epochs", "learning_rate", "gamma", "gae_lambda", "clip_range",
                "ent_coef", "net_arch", "reward_scale"):
        assert key in cfg.agent, key
    for key in ("copies", "decision_interval_s", "episode_s", "observations", "reward", "normalise", "demand"):
        assert key in cfg.env, key
    for key in ("total_agent_steps", "eval_every", "checkpoint_every", "device", "compile", "progress"):
        assert key in cfg.train, key
    assert {"seeds", "demand", "steps", "baselines"} <= set(cfg.eval)
    assert set(cfg.baseline_params) == {"fixed_time", "max_pressure"}
    # reward terms are {name: weight}: an override can add one (its weight still typed)
    cfg = train_config("env.reward={queue:1.0,delay:0.1}")
    check_config(cfg)
    assert dict(cfg.env.reward) == {"queue": 1.0, "delay": 0.1}


@pytest.mark.parametrize("override, named", [
    ("agent.n_step=3", "agent.n_step"),  # a key the schema does not have
    ("agent.n_steps=many", "agent.n_steps"),  # a value of the wrong type
    ("env.copies=1.5", "env.copies"),
    ("train.progress=maybe", "train.progress"),
])
def test_a_wrong_key_or_type_fails_at_composition_naming_it(override, named):
    with pytest.raises(ConfigCompositionException) as error:
        train_config(override)
    text = str(error.value) + str(error.value.__cause__ or "")
    assert named in text


def test_a_misspelt_key_in_a_config_file_fails_naming_the_file_and_key(tmp_path):
    import shutil

    shutil.copytree(CONFIGS, tmp_path / "configs")
    path = tmp_path / "configs" / "agent" / "ppo_shared.yaml"
    path.write_text(path.read_text() + "n_epoch: 4\n")
    with pytest.raises(ConfigCompositionException, match=r"(?s)agent/ppo_shared.*agent\.n_epoch"):
        train_config(config_dir=tmp_path / "configs")


@pytest.mark.parametrize("override, field", [
    ("+agent.n_step=3", "agent.n_step"),  # added on purpose with '+': still unknown
    ("agent.gamma=1.5", "agent.gamma"),
    ("agent.policy=tabular", "agent.policy"),
    ("env.observations=[lane_count,queue_length]", "env.observations"),
    ("env.observations=[lane_count,intersection_id]", "env.observations"),
    ("env.reward={queue:1.0,speed:2.0}", "env.reward"),  # reward terms are open keys, from a registry
    ("env.episode_s=3607", "env.episode_s"),  # not a multiple of the 5 s decision interval
    ("eval.demand.mode=replay", "eval.demand.mode"),
    ("eval.baselines=[fixed_time,oracle]", "eval.baselines[1]"),
    ("eval.baselines=[max_pressure,fixed_time,max_pressure]", "eval.baselines[2]"),  # was run twice
    ("train.device=tpu", "train.device"),
    ("torchrl.centralised_critic=true", "torchrl.centralised_critic"),  # trainer=sb3 would ignore it
    ("torchrl.loss=clip_ppo", "torchrl.loss"),
])
def test_a_bad_value_fails_before_any_work_naming_the_field(tmp_path, override, field):
    # the scenario does not exist either: the config check comes first, so it is never loaded
    cfg = train_config("scenario.name=no_such_scenario", override)
    with pytest.raises(ConfigError) as error:
        train(cfg, tmp_path)
    assert error.value.field == field
    assert field in str(error.value)
    assert not any(tmp_path.iterdir())


# ---- training ------------------------------------------------------------------------------------------


def test_a_tiny_training_run_beats_a_random_policy_on_held_out_demand(tmp_path):
    cfg = train_config(*tiny_run(seed=0, env__copies=32, train__total_agent_steps=12000, train__eval_every=0,
                         agent__learning_rate=0.001, agent__n_epochs=20))
    result = train(cfg, tmp_path)
    assert result["num_timesteps"] >= 12000
    # the same held-out demands (eval split, 3 seeds) for the random policy and the trained one
    scenario = load_scenario("grid_1x1")
    evaluator = Evaluator(scenario, demand_spec(cfg.eval.demand, "eval.demand"), 3, 600, engine_params(cfg))
    # the random policy decides as often as the trained one (the default decision interval)
    random_tt = evaluator.evaluate(RandomController(cfg.env.decision_interval_s, seed=0))["travel_time/mean"].mean()
    trained_tt = evaluator.evaluate(PolicyController(str(tmp_path / "checkpoints" / "last.zip")))[
        "travel_time/mean"].mean()
    # measured with the default 5 s decisions: random 137.7 s; trained 89.2 s (seeds 1, 2: 87.7, 89.8),
    # a 35-36% reduction (6k agent-steps gave only 13-21%)
    assert trained_tt < 0.9 * random_tt, (trained_tt, random_tt)
    history = result["eval_history"]
    assert history[-1]["agent_steps"] == result["num_timesteps"]
    assert history[-1]["travel_time/mean"] == pytest.approx(trained_tt, rel=1e-6)  # final eval = last.zip


def test_cli_run_writes_config_tensorboard_checkpoints_and_resume_continues_the_step_count(tmp_path, capsys):
    run = tmp_path / "first"
    tiny = tiny_run(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                 eval__steps=100, env__episode_s=100)
    done = subprocess.run(
        [sys.executable, "train.py", *tiny, "train.total_agent_steps=80", "train.eval_every=40",
         "train.checkpoint_every=40", f"hydra.run.dir={run}"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert saved.agent.n_steps == 10 and saved.agent.gamma == 0.95 and saved.env.copies == 4
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "curves.png").stat().st_size > 0
    header = (run / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("eval/travel_time/mean", "eval/reduction_vs_max_pressure",
                "baseline/fixed_time/travel_time/p95", "rollout/throughput", "rollout/queue/halting",
                "train/entropy_loss", "train/explained_variance",
                "time/agent_steps_per_s"):
        assert key in header, key
    last = run / "checkpoints" / "last.zip"
    assert (run / "checkpoints" / "best.zip").is_file()
    meta = read_meta(last)
    assert meta["num_timesteps"] == 80 and meta["config"]["agent"]["n_steps"] == 10
    assert meta["env"]["observations"]["intersection_id"]["size"] == 1
    assert meta["env"]["normalise"] is True

    assert "eval @ 80 agent-steps: travel time" in (run / "train.log").read_text()  # not only on the console
    # a new run into that folder would replace its checkpoints and share its TensorBoard curves
    again = subprocess.run([sys.executable, "train.py", *tiny, f"hydra.run.dir={run}"], cwd=REPO_ROOT,
                           capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.startswith(
        f"error: <config>: field 'hydra.run.dir' = '{run}': holds an earlier run (checkpoints, tb)"), again.stderr
    assert read_meta(last)["num_timesteps"] == 80

    cfg = train_config(*tiny, "train.total_agent_steps=160", "train.eval_every=0", f"resume={last}")
    result = train(cfg, tmp_path / "second")
    assert result["start_timesteps"] == 80
    assert f"resumed from {last} at 80 agent-steps" in capsys.readouterr().out
    assert result["eval_history"][-1]["wall_s"] >= round(meta["wall_s"], 1)  # carries on, not from 0
    assert result["num_timesteps"] == 160
    resumed = read_meta(tmp_path / "second" / "checkpoints" / "last.zip")
    assert resumed["num_timesteps"] == 160
    assert resumed["train_next_sample"] > meta["train_next_sample"]  # fresh training demands

    with pytest.raises(ConfigError, match="already at 80 agent-steps") as refused:  # nothing left to do
        train(train_config(*tiny, "train.total_agent_steps=80", f"resume={last}"), tmp_path / "fourth")
    assert_names_everything(refused.value, "<config>", "train.total_agent_steps", 80)
    with pytest.raises(CheckpointError, match="trained with 'shared'; resume needs the same") as refused:
        train(train_config(*tiny, "agent=ppo_independent", "train.total_agent_steps=200", f"resume={last}"),
              tmp_path / "third")
    assert_names_everything(refused.value, str(last), "agent.policy", "independent")


def test_load_policy_reads_the_model_and_its_meta(tmp_path):
    venv = IntersectionVecEnv(copies=1, scenario=uneven_grid(), episode_s=100, observations=OBSERVATIONS)
    model = MaskablePPO("MlpPolicy", venv, n_steps=4, batch_size=4, seed=0, device="cpu")
    from agents.ppo.policy import save_checkpoint

    path = save_checkpoint(model, tmp_path / "m.zip", {"env": venv.core.describe()})
    loaded, meta = load_policy(path)
    assert meta["env"]["intersections"] == list(venv.core.layout.ids)
    obs = torch.as_tensor(venv.reset())
    with torch.no_grad():
        assert torch.equal(loaded.policy.get_distribution(obs).distribution.logits,
                           model.policy.get_distribution(obs).distribution.logits)
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read(META_NAME))["format"] == 1
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_policy(tmp_path / "missing.zip")


# ---- the controller ------------------------------------------------------------------------------------


def test_policy_controller_drives_a_simulator_exactly_as_the_env_applies_the_policy():
    scenario = uneven_grid()  # 4 intersections, the first with 3 actions: padding is masked
    copies, interval = 2, 5
    venv = IntersectionVecEnv(copies=copies, scenario=scenario, episode_s=300, decision_interval_s=interval,
                              observations=OBSERVATIONS, demand={"mode": "original"})
    # default (non-orthogonal) init: logits large enough that actions vary with the state
    model = MaskablePPO("MlpPolicy", venv, seed=0, device="cpu", policy_kwargs={"ortho_init": False})
    controller = PolicyController(model=model, meta={"env": venv.core.describe()})
    sim = Simulator(scenario.network, scenario.demand(copies=copies), venv.core.params)
    controller.reset(sim)

    obs = venv.reset()
    seen = set()
    for _ in range(30):  # 150 s
        actions, _ = model.predict(obs, deterministic=True, action_masks=venv.action_masks())
        env_command = venv.core.commands(torch.as_tensor(actions).reshape(copies, -1))
        assert np.allclose(controller.observe(sim).reshape(len(obs), -1).numpy(), obs, atol=1e-6)
        for k in range(interval):
            command = controller.act(sim)
            assert torch.equal(command, env_command)  # the same phase, held through the interval
            sim.step(command)
        obs, *_ = venv.step(actions)
        assert torch.equal(sim.state.phase, venv.core.sim.state.phase)
        seen.update(map(tuple, actions.reshape(copies, -1).tolist()))
    assert len(seen) > 1  # the policy did not just hold one action
    assert int(env_command[:, 0].max()) < 4  # intersection 0 never got a phase it does not have


# ---- the independent policy -----------------------------------------------------------------------------


def _independent_model(scenario=None, copies=2):
    venv = IntersectionVecEnv(copies=copies, scenario=scenario or uneven_grid(), episode_s=100,
                              observations=OBSERVATIONS)
    model = MaskablePPO(IndexedActorCriticPolicy, venv, n_steps=8, batch_size=16, n_epochs=2, seed=0,
                        device="cpu", policy_kwargs={"num_intersections": 4, "net_arch": [16, 16]})
    model.set_logger(silent_logger())
    return venv, model


def _outputs(policy, obs):
    with torch.no_grad():
        logits = policy.get_distribution(obs).distribution.logits
        values = policy.predict_values(obs)
    return logits, values


def test_independent_policy_holds_separate_weights_per_intersection():
    venv, model = _independent_model()
    policy = model.policy
    for layer in policy.mlp_extractor.policy_net.layers:
        assert layer.weight.shape[0] == 4  # [I, in, out]
    obs = torch.as_tensor(venv.reset())  # rows n = b * 4 + i
    intersection = torch.arange(obs.shape[0]) % 4
    logits, values = _outputs(policy, obs)
    # rows in any order (SB3 shuffles minibatches) give each row the same outputs
    perm = torch.randperm(obs.shape[0], generator=torch.Generator().manual_seed(0))
    logits_p, values_p = _outputs(policy, obs[perm])
    assert torch.allclose(logits_p, logits[perm], atol=1e-6)
    assert torch.allclose(values_p, values[perm], atol=1e-6)
    # changing intersection 0's weights changes intersection 0's outputs and nothing else
    with torch.no_grad():
        for net in (policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net):
            for layer in net.layers:
                layer.weight[0] += 0.5
    logits2, values2 = _outputs(policy, obs)
    zero = intersection == 0
    assert not torch.allclose(logits2[zero], logits[zero]) and not torch.allclose(values2[zero], values[zero])
    assert torch.equal(logits2[~zero], logits[~zero]) and torch.equal(values2[~zero], values[~zero])


def test_independent_policy_trains_keeps_masks_and_round_trips_through_a_checkpoint(tmp_path):
    from agents.ppo.policy import save_checkpoint

    venv, model = _independent_model()
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=64)
    changed = [not torch.equal(a, b) for a, b in zip(before, model.policy.parameters())]
    assert any(changed)
    obs = venv.reset()
    for _ in range(5):
        actions, _ = model.predict(obs, action_masks=venv.action_masks())
        assert actions[0] < 3 and actions[4] < 3  # intersection 0 has 3 actions
        obs, *_ = venv.step(actions)
    path = save_checkpoint(model, tmp_path / "independent.zip", {"env": venv.core.describe()})
    loaded, _ = load_policy(path)
    assert isinstance(loaded.policy, IndexedActorCriticPolicy)
    obs = torch.as_tensor(obs)
    assert torch.equal(_outputs(loaded.policy, obs)[0], _outputs(model.policy, obs)[0])


def test_row_groups_place_every_row_once():
    index = torch.tensor([2, 0, 2, 1, 2, 0])
    groups = RowGroups.of(index, 4)
    assert groups.rows == 3
    cells = set(zip(groups.index.tolist(), groups.slot.tolist()))
    assert len(cells) == 6 and all(slot < 3 for _, slot in cells)


# ---- sweeps ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("launcher, target", [
    ("local", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ("submitit_local_jobs", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"),
    ("ray_cluster", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"),
])
def test_every_launcher_config_composes_with_the_training_config(launcher, target):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target


def test_default_sweep_launcher_is_joblib():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


@pytest.mark.parametrize("launcher", ["local", "submitit_local_jobs"])
def test_a_two_run_sweep_runs_on_this_machine(tmp_path, launcher):
    tiny = tiny_run(env__copies=2, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                 eval__steps=60, env__episode_s=60)
    done = subprocess.run(
        [sys.executable, "train.py", "-m", f"hydra/launcher={launcher}", *tiny,
         "train.total_agent_steps=20", "train.eval_every=0", "seed=0,1", f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for job in ("0", "1"):
        meta = read_meta(tmp_path / job / "checkpoints" / "last.zip")
        assert meta["config"]["seed"] == int(job) and meta["num_timesteps"] >= 20
