"""The TorchRL multi-agent PPO trainer (agents/ppo/torchrl_trainer.py): tiny runs of every agent
kind, learning on grid_1x1, resume, the checkpoint controller, and no host reads in the loop body.
CPU only, small scenarios; no timing assertions."""

from __future__ import annotations

import contextlib
import csv
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

import agents.ppo.config  # noqa: F401  (registers the structured config)
from agents.ppo.config import demand_spec, engine_params
from agents.ppo.periodic_eval import Evaluator
from agents.ppo.policy import controller_for_checkpoint
from agents.ppo.torchrl_policy import (
    TorchRLPolicyController,
    read_torchrl_checkpoint,
    read_torchrl_meta,
)
from agents.ppo.torchrl_trainer import TorchRLTrainer, train_torchrl
from envs.errors import CheckpointError, ConfigError
from envs.scenario import load_scenario
from tests.conftest import REPO_ROOT
from tests.minimal_scenario import assert_names_everything
from tests.test_interrupts import sigint_in_the_first_optimiser_step
from tests.test_train import RandomController

CONFIGS = REPO_ROOT / "configs"
TINY = {
    "scenario": "grid_1x1", "env.episode_s": 600, "eval.steps": 600, "eval.seeds": 3, "train.progress": "false",
    "train.threads": 1, "train.device": "cpu", "agent.n_steps": 30, "agent.batch_size": 240,
}
# grid_4x4 (16 intersections), a few rollouts of 2 copies x 5 decisions (25 s at the default 5 s
# decisions), 50 s episodes: every second rollout ends an episode
SMALL = {**TINY, "scenario": "grid_4x4", "env.copies": 2, "agent.n_steps": 5, "agent.batch_size": 80,
         "agent.n_epochs": 2, "agent.net_arch": "[16,16]", "env.episode_s": 50, "eval.seeds": 1,
         "eval.steps": 100, "train.total_agent_steps": 320, "train.eval_every": 160,
         "train.checkpoint_every": 160}


def torchrl_config(settings: dict, agent: str = "ppo_shared", torchrl: dict | None = None, **changes):
    """The composed train config (trainer=torchrl) with `settings` (``env__copies=4`` for
    ``env.copies=4``) and `torchrl` options (``{"loss": "clip_ppo"}`` for ``torchrl.loss=clip_ppo``)."""
    merged = {**settings, **{key.replace("__", "."): value for key, value in changes.items()}}
    merged.update({f"torchrl.{key}": value for key, value in (torchrl or {}).items()})
    merged.setdefault("trainer", "torchrl")
    overrides = [f"agent={agent}"] + [f"{key}={value}" for key, value in merged.items()]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


# ---- tiny runs of every agent kind ------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["ppo_shared", "ppo_independent", "mappo"])
def test_a_tiny_run_writes_checkpoints_tensorboard_and_progress(tmp_path, agent):
    cfg = torchrl_config(SMALL, agent)
    result = train_torchrl(cfg, tmp_path)
    assert result["num_timesteps"] == 320 and result["agent_steps_per_s"] > 0
    assert [e["agent_steps"] for e in result["eval_history"]] == [0, 160, 320]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    with open(tmp_path / "progress.csv", newline="") as handle:
        header = next(csv.reader(handle))
    for key in ("time/total_timesteps", "eval/travel_time/mean", "eval/reduction_vs_max_pressure",
                "baseline/fixed_time/travel_time/p95", "rollout/throughput", "rollout/ep_rew_mean",
                "train/entropy_loss", "train/value_loss", "train/explained_variance", "time/agent_steps_per_s"):
        assert key in header, key

    last = tmp_path / "checkpoints" / "last.pt"
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    data = read_torchrl_checkpoint(last)
    meta = data["meta"]
    assert data["num_timesteps"] == meta["num_timesteps"] == 320
    assert meta["config"]["agent"]["net_arch"] == [16, 16] and meta["env"]["observation_size"] > 0
    assert meta["train_next_sample"] > 0 and data["optimizer"] is not None
    networks = meta["networks"]
    assert networks["share_params"] is (agent != "ppo_independent")
    assert networks["centralised_critic"] is (agent == "mappo")
    weights = [v for k, v in data["actor"].items() if k.endswith("weight")]
    assert all(w.shape[0] == 16 for w in weights) is (agent == "ppo_independent")  # per-intersection stacks
    size = meta["env"]["observation_size"]
    if agent == "mappo":  # every intersection's observation projected once, its own, its index (a bias each)
        shapes = {key: tuple(data["critic"][key].shape) for key in ("every", "own", "bias")}
        assert shapes == {"every": (16 * size, 16), "own": (1, size, 16), "bias": (16, 16)}
    else:
        assert next(v for k, v in data["critic"].items() if k.endswith("0.weight")).shape[-1] == size

    # the checkpoint is a controller: the final evaluation was last.pt's
    scenario = load_scenario("grid_4x4")
    evaluator = Evaluator(scenario, demand_spec(cfg.eval.demand, "eval.demand"), 1, 100, engine_params(cfg))
    controller = controller_for_checkpoint(last)
    assert isinstance(controller, TorchRLPolicyController)
    travel = evaluator.evaluate(controller)["travel_time/mean"].mean()
    assert travel == pytest.approx(result["eval_history"][-1]["travel_time/mean"], rel=1e-6)


# ---- learning ----------------------------------------------------------------------------------------


def test_a_tiny_run_beats_a_random_policy_on_held_out_demand(tmp_path):
    # as tests/test_train.py's SB3 run: grid_1x1, queue reward, default 5 s decisions, 24k agent-steps
    cfg = torchrl_config(TINY, seed=0, env__copies=32, train__total_agent_steps=24000, train__eval_every=0,
                  agent__learning_rate=0.001, agent__n_epochs=20)
    result = train_torchrl(cfg, tmp_path)
    evaluator = Evaluator(load_scenario("grid_1x1"), demand_spec(cfg.eval.demand, "eval.demand"), 3, 600,
                          engine_params(cfg))
    random_tt = evaluator.evaluate(RandomController(cfg.env.decision_interval_s, seed=0))["travel_time/mean"].mean()
    trained_tt = evaluator.evaluate(TorchRLPolicyController(tmp_path / "checkpoints" / "last.pt"))[
        "travel_time/mean"].mean()
    # measured: random 137.7 s, trained 78.8 s (seeds 1, 2: 78.7, 80.4); 12k agent-steps gave 8-33%
    assert trained_tt < 0.9 * random_tt, (trained_tt, random_tt)
    assert result["eval_history"][-1]["travel_time/mean"] == pytest.approx(trained_tt, rel=1e-6)


# ---- resume ------------------------------------------------------------------------------------------


def test_resume_continues_the_step_count_and_the_demand_stream(tmp_path, capsys):
    first = torchrl_config(SMALL, train__total_agent_steps=160, train__eval_every=0)
    train_torchrl(first, tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.pt"
    meta = read_torchrl_meta(last)
    assert meta["num_timesteps"] == 160

    result = train_torchrl(torchrl_config(SMALL, train__eval_every=0, resume=last), tmp_path / "second")
    assert result["start_timesteps"] == 160 and result["num_timesteps"] == 320
    resumed = read_torchrl_meta(tmp_path / "second" / "checkpoints" / "last.pt")
    assert resumed["num_timesteps"] == 320
    # cut mid-episode (50 s episodes, 25 s rollouts): the resumed run replays those episodes on their
    # samples, not skipping them (tests/test_resume_progress.py: at a boundary it draws fresh ones)
    assert resumed["train_next_sample"] == meta["train_next_sample"]
    assert (meta["n_updates"], resumed["n_updates"]) == (2, 4)  # epochs carry on across the resume (restarted at 0)
    assert [e["agent_steps"] for e in resumed["eval_history"]] == [0, 160, 320]  # history carries on
    assert f"resumed from {last} at 160 agent-steps" in capsys.readouterr().out
    # the wall clock carries on from the checkpoint's too (it restarted at 0)
    assert resumed["eval_history"][-1]["wall_s"] >= round(meta["wall_s"], 1) >= meta["eval_history"][-1]["wall_s"]

    with pytest.raises(ConfigError, match="already at 160 agent-steps") as refused:  # nothing left to do
        train_torchrl(torchrl_config(SMALL, train__total_agent_steps=160, resume=last), tmp_path / "third")
    assert_names_everything(refused.value, "<config>", "train.total_agent_steps", 160)
    with pytest.raises(CheckpointError, match="trained with 'shared'; resume needs the same") as refused:
        train_torchrl(torchrl_config(SMALL, "ppo_independent", resume=last), tmp_path / "fourth")
    assert_names_everything(refused.value, str(last), "agent.policy", "independent")
    # mappo's critic is not ppo_shared's
    with pytest.raises(CheckpointError, match="centralised_critic=False") as refused:
        train_torchrl(torchrl_config(SMALL, "mappo", resume=last), tmp_path / "fifth")
    assert_names_everything(refused.value, str(last), "torchrl.centralised_critic", True)  # the run's, mappo's
    # another scenario is named as such, not as the networks' sizes it changes (grid_1x1: 1 intersection)
    with pytest.raises(CheckpointError, match="differs from the checkpoint's 'grid_4x4'") as refused:
        train_torchrl(torchrl_config(SMALL, resume=last, scenario="grid_1x1"), tmp_path / "sixth")
    # named by the key that sets it (env.scenario is no key: scenario.name= or scenario= is)
    assert_names_everything(refused.value, str(last), "scenario.name", "grid_1x1")


def test_an_interrupt_saves_last_pt_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    iteration, calls = TorchRLTrainer.iteration, []

    def interrupted_in_the_second_rollout(trainer):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM as train.py raises it
        iteration(trainer)

    monkeypatch.setattr(TorchRLTrainer, "iteration", interrupted_in_the_second_rollout)
    with pytest.raises(KeyboardInterrupt):
        train_torchrl(torchrl_config(SMALL, train__eval_every=0, train__checkpoint_every=0), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    assert read_torchrl_meta(last)["num_timesteps"] == 160  # the first rollout (2 x 5 x 16); not the cut one
    assert f"interrupted at 160 agent-steps; resume with resume={last}" in capsys.readouterr().out


def test_an_interrupt_inside_the_update_saves_the_whole_update(tmp_path, monkeypatch, capsys):
    unscheduled = dict(train__eval_every=0, train__checkpoint_every=0)  # last.pt only at the end
    # the same seed, one rollout, uninterrupted: last.pt holds the parameters right after its update
    train_torchrl(torchrl_config(SMALL, train__total_agent_steps=160, **unscheduled), tmp_path / "whole")
    calls = sigint_in_the_first_optimiser_step(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_torchrl(torchrl_config(SMALL, **unscheduled), tmp_path / "cut")  # two rollouts planned
    assert len(calls) == 4  # both epochs of two minibatches ran, then the interrupt ended the run
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    assert read_torchrl_meta(last)["num_timesteps"] == 160  # the rollout counts: it was learnt from
    assert f"interrupted at 160 agent-steps; resume with resume={last}" in capsys.readouterr().out
    cut = read_torchrl_checkpoint(last)
    whole = read_torchrl_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    for part in ("actor", "critic"):
        for name, value in whole[part].items():
            assert torch.equal(cut[part][name], value), (part, name)
    assert cut["optimizer"]["state"][0]["step"] == whole["optimizer"]["state"][0]["step"] == 4


def test_an_update_that_fails_after_an_interrupt_ends_on_its_error_and_saves_nothing(tmp_path, monkeypatch):
    sigint_in_the_first_optimiser_step(monkeypatch, then_fail=True)
    with pytest.raises(RuntimeError, match="the update failed") as caught:
        train_torchrl(torchrl_config(SMALL, train__eval_every=0, train__checkpoint_every=0), tmp_path)
    assert caught.value.__notes__ == ["SIGINT arrived during the block; this error ends the run instead"]
    assert not (tmp_path / "checkpoints" / "last.pt").exists()  # no half-done update saved as last


def test_both_trainers_write_the_same_tensorboard_tags(tmp_path):
    from agents.ppo.sb3_trainer import train
    from tests.tensorboard_points import scalar_events

    tags = {}
    for trainer, run in (("torchrl", train_torchrl), ("sb3", train)):
        run(torchrl_config(SMALL, trainer=trainer, agent__n_epochs=1), tmp_path / trainer)
        tags[trainer] = set(scalar_events(tmp_path / trainer / "tb"))
    assert tags["torchrl"] == tags["sb3"]
    assert {"eval/travel_time/mean", "rollout/ep_rew_mean", "train/value_loss", "time/agent_steps_per_s"} <= tags["sb3"]


def test_trainer_options_are_checked(tmp_path):
    from hydra.errors import ConfigCompositionException

    from agents.ppo.config import check_config

    with pytest.raises(ConfigCompositionException, match="torchrl.lr"):  # not in the schema
        torchrl_config(SMALL, torchrl={"lr": 1.0})
    with pytest.raises(ConfigError, match="torchrl.loss") as refused:
        TorchRLTrainer(torchrl_config(SMALL, torchrl={"loss": "huber"}), tmp_path)
    assert_names_everything(refused.value, "<config>", "torchrl.loss", "huber")
    assert 'expected one of' in refused.value.reason
    sb3_mappo = torchrl_config(SMALL, "mappo", trainer="sb3")
    with pytest.raises(ConfigError, match="'trainer' = 'sb3'.*mappo"):
        check_config(sb3_mappo)


# ---- no host reads in the loop body --------------------------------------------------------------------

READS = ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__", "__index__")
# the env's own checks (its action check, the core's done.any(), step_and_maybe_reset's any_done),
# and torch.optim's step counter, which lives on the host for device parameters too
ALLOWED = ("/envs/", "/torchrl/envs/", "/torch/optim/")


@contextlib.contextmanager
def host_reads():
    """Records every tensor read back to the host (the method, and the first frame of our code
    that asked) unless the env or torch.optim's step counter is on the call stack."""
    hits, originals = [], {name: getattr(torch.Tensor, name) for name in READS}

    def guard(name, original):
        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            caller = f"{frame.f_code.co_filename}:{frame.f_lineno}"
            while frame is not None:
                if any(part in frame.f_code.co_filename for part in ALLOWED):
                    break
                frame = frame.f_back
            else:
                hits.append(f"{name} from {caller}")
            return original(self, *args, **kwargs)
        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, guard(name, original))
    try:
        yield hits
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.mark.parametrize("agent", ["ppo_shared", "mappo"])
def test_rollout_advantages_and_updates_read_nothing_back_to_the_host(tmp_path, agent):
    trainer = TorchRLTrainer(torchrl_config(SMALL, agent), tmp_path)
    with host_reads() as hits:
        torch.ones(2).sum().item()  # the guard sees reads from here
    assert len(hits) == 1 and "test_torchrl_trainer" in hits[0]
    before = [p.detach().clone() for p in trainer.params]
    with host_reads() as hits:
        for _ in range(2):  # two rollouts (an episode ends in the second) and their updates
            trainer.iteration()
    assert hits == [], hits
    assert trainer.num_timesteps == 320 and trainer.ppo_update.n_updates == 2 * 2  # rollouts x epochs, as SB3
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.params))
    assert int(trainer.episodes.count) == 2  # both copies' episodes ended, counted on the device


def test_a_resumed_run_logs_at_the_rollouts_the_uninterrupted_run_logs(tmp_path):
    """torchrl.log_every_rollouts=2, rollouts of 160 agent-steps: the uninterrupted run logs after
    rollouts 2 and 4; one resumed after rollout 1 logged after rollouts 3 and 4 (its count restarted)."""
    every = {"log_every_rollouts": 2}
    whole = torchrl_config(SMALL, torchrl=every, train__eval_every=0, train__total_agent_steps=640)
    train_torchrl(whole, tmp_path / "whole")
    first = torchrl_config(SMALL, torchrl=every, train__eval_every=0, train__total_agent_steps=160)
    train_torchrl(first, tmp_path / "first")
    resumed = torchrl_config(SMALL, torchrl=every, train__eval_every=0, train__total_agent_steps=640,
                             resume=tmp_path / "first" / "checkpoints" / "last.pt")
    train_torchrl(resumed, tmp_path / "second")

    def logged(run):
        rows = csv.DictReader(open(tmp_path / run / "progress.csv"))
        return [int(r["time/total_timesteps"]) for r in rows if r.get("train/loss")]
    assert logged("whole") == [320, 640]
    assert logged("second") == [320, 640]


def test_target_kl_stops_the_update_before_the_step_of_the_first_minibatch_past_it_as_sb3(tmp_path):
    """SB3 checks each minibatch's KL before its optimizer step and ends the update there; the
    trainer checked only after a whole epoch had stepped (80 rows, minibatches of 5 x 16 agents)."""
    trainer = TorchRLTrainer(torchrl_config(SMALL, agent__target_kl=1e-12, agent__batch_size=16), tmp_path / "a")
    trainer.iteration()
    steps = {int(state["step"]) for state in trainer.optimizer.state.values()}
    count = int(trainer.ppo_update.train_count)
    assert trainer.ppo_update.n_updates == 1 and steps <= {1} and count == max(steps, default=0) + 1
    free = TorchRLTrainer(torchrl_config(SMALL, agent__batch_size=16), tmp_path / "b")
    free.iteration()  # without target_kl: every minibatch of both epochs steps
    assert {int(state["step"]) for state in free.optimizer.state.values()} == {2 * 10}


def test_rollout_metrics_average_the_copies_that_ended_and_ignore_the_ones_still_running():
    """Copies whose episodes end at different times (demand that drains before env.episode_s): a
    copy still running holds NaN metrics (no trip of its fresh episode finished), which must not
    reach the logged means (before: NaN x 0 = NaN in every rollout/* tag)."""
    from types import SimpleNamespace

    from agents.ppo.torchrl_logging import EpisodeStats
    from envs.evaluation.metrics import METRIC_NAMES

    stats = EpisodeStats(SimpleNamespace(copies=3, num_intersections=2, device=torch.device("cpu")), interval_s=5)
    nan = float("nan")
    for ended, value in ((0, 100.0), (2, 200.0)):
        done = torch.arange(3) == ended
        episode = {name: torch.where(done, value, nan) for name in METRIC_NAMES}
        episode["length_s"] = torch.where(done, 600.0, 10.0)
        stats.observe(torch.ones(3, 2), {"episode": episode, "_episode": done})
    logged = stats.read()
    assert logged["rollout/episodes"] == 2
    assert all(logged[f"rollout/{name}"] == 150.0 for name in METRIC_NAMES)
    assert logged["rollout/ep_len_mean"] == 120.0  # 600 s / 5 s decisions
    assert logged["rollout/ep_rew_mean"] == 1.5  # copy 0: one step of 1; copy 2: two steps of 1
