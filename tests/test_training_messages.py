"""What train.py tells its user (agents/ppo/run_messages.py): the rounding of
train.total_agent_steps to whole rollouts, the trainer a resumed checkpoint belongs to, the
compile notice, and SIGTERM's save and resume hint; status lines also reach RUN/train.log."""

from __future__ import annotations

import copy
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf
from tqdm import tqdm

import agents.ppo.sb3_callback as sb3_callback
import agents.ppo.sb3_trainer as sb3_trainer
from agents.ppo.interrupts import Terminated, sigterm_interrupts
from agents.ppo.policy import read_meta
from agents.ppo.run_messages import eval_line, say, seed_for_resume, status_log, trainer_for_resume, whole_rollouts
from agents.ppo.run_setup import LAYOUT_KEYS, check_layout
from agents.ppo.torchrl_trainer import train_torchrl
from envs.errors import CheckpointError, ConfigError
from tests.conftest import REPO_ROOT
from tests.test_train import tiny_run, train_config

# grid_1x1 (one intersection), 4 copies x 10 decisions: rollouts of 40 agent-steps
ROLLOUT = 40
SHORT = dict(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
             eval__steps=100, env__episode_s=100, train__eval_every=0)
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def test_whole_rollouts_rounds_up_and_says_so(capsys):
    assert whole_rollouts(20000, 0, 16384) == 32768
    assert capsys.readouterr().out == ("train.total_agent_steps=20000 is rounded up to 2 rollouts of "
                                       "16,384 agent-steps: 32,768\n")
    assert whole_rollouts(32768, 0, 16384) == 32768
    assert capsys.readouterr().out == ""  # a whole number of rollouts: nothing to say
    assert whole_rollouts(100, 40, 40) == 120
    assert "2 rollouts of 40 agent-steps after the checkpoint's 40: 120" in capsys.readouterr().out
    assert whole_rollouts(30, 0, 40) == 40
    assert capsys.readouterr().out == "train.total_agent_steps=30 is rounded up to 1 rollout of 40 agent-steps: 40\n"
    with pytest.raises(ConfigError, match="train.total_agent_steps' = 40: the checkpoint is already at 40"):
        whole_rollouts(40, 40, 16)


def test_a_run_ends_at_the_rounded_total_and_the_progress_bar_counts_to_it(tmp_path, capsys, monkeypatch):
    totals = []

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            totals.append(kwargs["total"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sb3_callback, "tqdm", Bar)  # the callback draws the progress bar
    result = sb3_trainer.train(train_config(*tiny_run(**SHORT, train__total_agent_steps=50)), tmp_path)
    assert result["num_timesteps"] == 2 * ROLLOUT and totals == [2 * ROLLOUT]
    assert "train.total_agent_steps=50 is rounded up to 2 rollouts of 40 agent-steps: 80" in capsys.readouterr().out


def test_the_trainer_of_a_resumed_checkpoint_follows_its_suffix_unless_given(capsys):
    assert trainer_for_resume("run/last.pt", "sb3", explicit=False) == "torchrl"
    assert "trainer=torchrl (resuming a .pt checkpoint)" in capsys.readouterr().out
    assert trainer_for_resume("run/last.zip", "torchrl", explicit=False) == "sb3"
    assert trainer_for_resume("run/last.zip", "sb3", explicit=True) == "sb3"
    with pytest.raises(CheckpointError) as error:
        trainer_for_resume("run/last.pt", "sb3", explicit=True)
    assert str(error.value) == ("run/last.pt: field 'trainer' = 'sb3': this is a trainer=torchrl "
                                "checkpoint (.pt): resume it with trainer=torchrl")


def _train(*args: str, **kwargs):
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO_ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_cli_refuses_a_checkpoint_of_the_other_trainer_when_the_trainer_is_given(tmp_path):
    checkpoint = tmp_path / "last.zip"
    checkpoint.write_bytes(b"never read: the trainer is checked first")
    done = _train("trainer=torchrl", f"resume={checkpoint}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {checkpoint}: field 'trainer' = 'torchrl': this is a trainer=sb3 "
                                   "checkpoint (.zip): resume it with trainer=sb3")


def test_a_resumed_run_goes_on_with_the_checkpoints_seed_and_refuses_another_given(tmp_path):
    from envs.scenario import load_scenario
    from tests.deploy_fixtures import untrained

    scenario = load_scenario("grid_1x1", horizon=100)
    checkpoint = str(untrained(scenario, "shared", tmp_path / "seeded.zip", config={"seed": 3}))
    assert seed_for_resume(checkpoint, 0, explicit=False) == 3  # the default seed: the checkpoint's is recorded
    assert seed_for_resume(checkpoint, 3, explicit=True) == 3
    with pytest.raises(CheckpointError) as refused:  # it would be ignored: the checkpoint's random state goes on
        seed_for_resume(checkpoint, 5, explicit=True)
    assert str(refused.value) == (f"{checkpoint}: field 'seed' = 5: the checkpoint was trained with seed=3, and a "
                                  "resumed run goes on with its random state and demand samples: leave seed= out, "
                                  "or start a new run")
    older = str(untrained(scenario, "shared", tmp_path / "older.zip"))  # no seed recorded: this run's
    assert seed_for_resume(older, 5, explicit=True) == 5
    done = _train("seed=5", f"resume={checkpoint}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {refused.value}"


def test_resuming_a_checkpoint_whose_meta_lacks_the_architecture_is_one_error_naming_the_key(tmp_path):
    from envs.scenario import load_scenario
    from tests.deploy_fixtures import untrained

    # made by hand (the meta records the agent's name only): was a KeyError traceback
    checkpoint = untrained(load_scenario("grid_1x1", horizon=100), "shared", tmp_path / "hand.zip")
    done = _train(f"resume={checkpoint}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"error: {checkpoint}: field 'config.agent.policy' = None: missing from the "
                                   "checkpoint's meta; resume checks the architecture against it (train.py's "
                                   "checkpoints record it)")
    layout = read_meta(checkpoint)["env"]  # and the env layout's keys, each of them
    for key in LAYOUT_KEYS:
        lacking = {"env": {k: v for k, v in layout.items() if k != key}}
        if key in ("action_mode", "green_durations_s"):  # older checkpoints lack them: they chose phases
            check_layout(str(checkpoint), lacking, layout)
            continue
        with pytest.raises(CheckpointError, match=f"field 'env.{key}' = None: missing from the checkpoint's meta"):
            check_layout(str(checkpoint), lacking, layout)


def test_a_resume_with_other_observations_names_env_observations_not_the_size_they_change(tmp_path):
    from envs.rl.signal_env import BatchedSignalEnv

    def layout(observations):
        return BatchedSignalEnv("grid_1x1", copies=1, episode_s=60, observations=observations).describe()

    saved = layout(["phase_onehot", "time_in_phase", "lane_count", "lane_halting"])
    given = layout(["phase_onehot", "time_in_phase", "lane_count"])
    with pytest.raises(CheckpointError) as refused:  # was field 'env.observation_size' = 17, a key no one sets
        check_layout("run.zip", {"env": saved}, given)
    assert (refused.value.file, refused.value.field) == ("run.zip", "env.observations")
    assert refused.value.value == ["phase_onehot", "time_in_phase", "lane_count"]  # the names, not the layout dict
    assert refused.value.reason == ("differs from the checkpoint's ['phase_onehot', 'time_in_phase', 'lane_count', "
                                    "'lane_halting']")


def test_a_resume_compares_the_features_names_and_sizes_not_their_descriptions():
    """A feature's description reworded after the checkpoint was written (the meta records each
    feature's doc text) refused the resume with a message showing the same names on both sides."""
    from envs.rl.signal_env import BatchedSignalEnv

    def layout(observations):
        return BatchedSignalEnv("grid_1x1", copies=1, episode_s=60, observations=observations).describe()

    given = layout(["phase_onehot", "time_in_phase", "lane_count"])
    saved = copy.deepcopy(given)
    saved["observations"]["lane_count"]["doc"] = "vehicles on each incoming lane (an older wording)"
    check_layout("run.zip", {"env": saved}, given)
    saved["observations"]["lane_count"]["size"] += 1  # a size still differs: refused, naming the sizes
    with pytest.raises(CheckpointError) as refused:
        check_layout("run.zip", {"env": saved}, given)
    assert refused.value.field == "env.observations"
    assert "lane_count" in refused.value.reason and "doc" not in refused.value.reason


def test_a_resume_under_todays_defaults_of_an_older_checkpoint_says_the_setting_that_resumes_it(tmp_path):
    """The defaults moved (observations gained approach_moving/approach_halting, decisions every 5 s,
    not 10): a checkpoint of the older defaults resumed with them is refused, and the refusal says the
    override its run had, from the config the checkpoint records (intersection_id is the agent's)."""
    from envs.rl.signal_env import BatchedSignalEnv

    old = ["phase_onehot", "time_in_phase", "lane_count", "lane_halting"]
    saved = BatchedSignalEnv("grid_1x1", copies=1, episode_s=60, observations=old + ["intersection_id"],
                             decision_interval_s=10).describe()
    meta = {"env": saved, "config": {"env": {"observations": old, "decision_interval_s": 10}}}
    given = BatchedSignalEnv("grid_1x1", copies=1, episode_s=60, observations=old + ["intersection_id"]).describe()
    with pytest.raises(CheckpointError) as refused:
        check_layout("run.zip", meta, given)
    assert (refused.value.field, refused.value.value) == ("env.decision_interval_s", 5)
    assert refused.value.reason == "differs from the checkpoint's 10; resume it with env.decision_interval_s=10"
    given = BatchedSignalEnv("grid_1x1", copies=1, episode_s=60).describe()
    with pytest.raises(CheckpointError) as refused:
        check_layout("run.zip", meta, given)
    assert refused.value.field == "env.observations"
    assert refused.value.reason.endswith(
        "; resume it with env.observations=[phase_onehot,time_in_phase,lane_count,lane_halting]")


def test_a_resume_hint_names_only_a_setting_the_command_gives_differently_as_a_hydra_override():
    """The hint is the checkpoint's config value of the refused setting: where the command already gives
    that value (the observations' names agree, their layout does not: another feature size) it said
    'resume it with' the command's own setting; a list's booleans were Python's True, which Hydra reads
    as a string."""
    from envs.rl.signal_env import BatchedSignalEnv

    names = ["phase_onehot", "time_in_phase", "lane_count", "lane_halting"]
    given = BatchedSignalEnv("grid_1x1", copies=1, episode_s=60, observations=names).describe()
    saved = {**given, "observations": {**given["observations"],
                                       "lane_count": {**given["observations"]["lane_count"], "size": 99}}}
    command = OmegaConf.create({"env": {"observations": names, "green_durations_s": [10, 20]}})
    meta = {"env": saved, "config": {"env": {"observations": names}}}
    with pytest.raises(CheckpointError) as refused:
        check_layout("run.zip", meta, given, command)
    assert refused.value.field == "env.observations" and "resume it with" not in refused.value.reason
    saved = {**given, "green_durations_s": [10, 30]}
    meta = {"env": saved, "config": {"env": {"green_durations_s": [True, "a b", None]}}}
    with pytest.raises(CheckpointError) as refused:
        check_layout("run.zip", meta, given, command)
    assert refused.value.reason.endswith("; resume it with env.green_durations_s=[true,'a b',null]")


def test_a_resumed_run_without_seed_records_the_checkpoints_seed(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    done = _train(*tiny_run(**SHORT, train__total_agent_steps=ROLLOUT), "seed=3", f"hydra.run.dir={first}")
    assert done.returncode == 0, done.stderr
    done = _train(*tiny_run(**SHORT, train__total_agent_steps=2 * ROLLOUT),
                  f"resume={first / 'checkpoints' / 'last.zip'}", f"hydra.run.dir={second}")
    assert done.returncode == 0, done.stderr
    assert f"at {ROLLOUT} agent-steps" in done.stdout
    recorded = OmegaConf.load(second / ".hydra" / "config.yaml")
    assert recorded.seed == 3  # the run said seed 0 (the default) and went on with the checkpoint's
    assert read_meta(second / "checkpoints" / "last.zip")["config"]["seed"] == 3


@pytest.mark.parametrize("overrides, error", [
    (["env.copies=0"], "field 'env.copies' = 0: must be >= 1"),  # found by check_config, inside the trainer
    (["trainer=torchrl", "torchrl.loss=nope"], "field 'torchrl.loss' = 'nope'"),  # the TorchRL trainer's options
    (["resume={missing}"], "no such checkpoint file"),
])
def test_a_refused_run_says_only_its_error_not_that_it_compiles(tmp_path, overrides, error):
    """The compile notice came first, then a config error found later: a bad config fails with its error alone."""
    overrides = [item.format(missing=tmp_path / "missing.zip") for item in overrides]
    done = _train("engine.compile=true", "env.reward={pressure:1.0}", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and error in done.stderr, done.stderr
    assert done.stdout == ""  # neither the compile notice nor the reward line of a run that never starts


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_the_compile_notice_comes_once_the_run_is_checked_before_its_first_step(trainer, tmp_path, capsys, monkeypatch):
    import agents.ppo.torchrl_trainer as torchrl_trainer

    module = torchrl_trainer if trainer == "torchrl" else sb3_trainer
    said = []

    def first_step(*args):  # the next reset steps the (compiled) engine: stop there
        said.append(capsys.readouterr().out)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "start_demand", first_step)
    run = train_torchrl if trainer == "torchrl" else sb3_trainer.train
    with pytest.raises(KeyboardInterrupt):
        run(train_config(*tiny_run(**SHORT), "engine.compile=true", f"trainer={trainer}"), tmp_path)
    assert said == ["compiling the engine step (about 30 s on a CPU)…\n"]


def test_a_run_says_the_reward_an_override_merged_into_the_default(tmp_path, capsys, monkeypatch):
    """train.py's set-up (its record and the training stubbed: the line comes before them)."""
    import train as train_script

    monkeypatch.setattr(train_script, "write_run_record", lambda *args: None)
    trained = []
    for reward, said in (("{pressure:1.0}", "reward: 1 x queue + 1 x pressure (an env.reward override merges "
                                            "into the default; a weight of 0 drops a term)\n"),  # Hydra merges
                         ("{queue:0,pressure:1.0}", "")):  # one term: nothing to say
        cfg = train_config(*tiny_run(), f"env.reward={reward}")
        train_script.set_up_and_train(cfg, tmp_path, lambda cfg, run_dir: trained.append(cfg), set())
        assert capsys.readouterr().out == said
    assert len(trained) == 2


def test_sigterm_saves_last_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    args = tiny_run(**SHORT, train__total_agent_steps=100 * ROLLOUT, train__checkpoint_every=ROLLOUT)
    process = subprocess.Popen([sys.executable, "train.py", *args, f"hydra.run.dir={run}"], cwd=REPO_ROOT,
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = run / "checkpoints" / "last.zip"
    deadline = time.monotonic() + 120
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-2000:]
    steps = read_meta(last)["num_timesteps"]
    assert steps % ROLLOUT == 0  # a rollout cut short is not counted
    said = f"interrupted at {steps:,} agent-steps; resume with resume={last}"
    assert said in out.splitlines()
    assert said in (run / "train.log").read_text()


def test_status_lines_go_to_the_current_jobs_log_only(tmp_path, capsys):
    first, second = (logging.FileHandler(tmp_path / name) for name in ("first.log", "second.log"))
    with status_log([logging.StreamHandler(), first]):
        say("job one")
    first.close()  # as Hydra closes a finished job's log
    say("between jobs")  # e.g. a notebook evaluating again in the same process
    with status_log([second]):  # the next job of a sweep in the same process
        say("job two")
    second.close()
    said = capsys.readouterr()
    assert said.out == "job one\nbetween jobs\njob two\n"  # the console, as plain lines
    assert said.err == ""  # not again through a console handler of the job's (Hydra's prefixes its lines)
    assert (tmp_path / "first.log").read_text() == "job one\n"
    assert (tmp_path / "second.log").read_text() == "job two\n"


def test_sigterm_raises_only_inside_the_training_block():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_interrupts():
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before  # a SIGTERM after training does what it did


def test_an_evaluation_line_without_baselines_has_no_empty_brackets():
    assert eval_line(80, 133.31, {}) == "eval @ 80 agent-steps: travel time 133.3 s"  # eval.baselines=[]
    assert eval_line(1200, 133.31, {"fixed_time": 2.94}) == \
        "eval @ 1,200 agent-steps: travel time 133.3 s (+2.9% vs fixed_time)"


def test_each_baseline_is_said_with_its_mean_travel_time_over_the_eval_seeds(capsys):
    import torch

    from agents.ppo.run_messages import say_baselines

    say_baselines({"fixed_time": {"travel_time/mean": torch.tensor([100.0, 201.0])},
                   "max_pressure": {"travel_time/mean": torch.tensor([90.0, 90.5])}}, "travel_time/mean", 2)
    assert capsys.readouterr().out == ("baseline fixed_time: travel time 150.5 s on 2 eval seed(s)\n"
                                       "baseline max_pressure: travel time 90.2 s on 2 eval seed(s)\n")


def test_changed_settings_name_each_leaf_that_differs_and_skip_what_a_resume_sets_afresh():
    from agents.ppo.run_setup import changed_settings

    saved = {"agent": {"learning_rate": 0.001, "n_epochs": 4},
             "perturbation": {"name": "mixed", "surge": {"scale": 1.3}},
             "train": {"total_agent_steps": 100, "progress": True}, "resume": None, "env": {"copies": 64}}
    given = {"agent": {"learning_rate": 0.001, "n_epochs": 10}, "perturbation": {"name": "clean", "surge": None},
             "train": {"total_agent_steps": 900, "progress": False}, "resume": "a.zip",
             "env": {"copies": 64, "probes": {}}}  # a key newer than the checkpoint: not compared
    assert changed_settings(saved, given) == ["agent.n_epochs=10 (checkpoint: 4)",
                                              "perturbation.name='clean' (checkpoint: 'mixed')",
                                              "perturbation.surge=None (checkpoint: {...})"]


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_a_resume_names_the_settings_it_changes_from_the_checkpoints_run(tmp_path, capsys, trainer):
    # the documented resume command (train.py resume=PATH train.total_agent_steps=N) after a run under
    # perturbation=mixed went on clean, with nothing said
    train = sb3_trainer.train if trainer == "sb3" else train_torchrl
    first = tiny_run(**SHORT, train__total_agent_steps=ROLLOUT, trainer=trainer)
    train(train_config(*first, "perturbation=mixed", "agent.n_epochs=2"), tmp_path / "first")
    checkpoint = tmp_path / "first" / "checkpoints" / ("last.zip" if trainer == "sb3" else "last.pt")
    capsys.readouterr()
    again = tiny_run(**SHORT, train__total_agent_steps=2 * ROLLOUT, trainer=trainer, resume=checkpoint)
    train(train_config(*again), tmp_path / "second")
    said = capsys.readouterr().out
    assert ("this run's settings differ from the checkpoint's run, and apply from here on: agent.n_epochs=1 "
            "(checkpoint: 2); perturbation.name='clean' (checkpoint: 'mixed'); ") in said
    assert "(give the first run's overrides again to continue it unchanged)" in said
    train(train_config(*again, "perturbation=mixed", "agent.n_epochs=2"), tmp_path / "third")
    assert "differ from the checkpoint's" not in capsys.readouterr().out  # the first run's overrides: nothing to say


def test_a_resume_path_that_is_no_checkpoint_file_names_resume_and_a_run_folder_its_last_checkpoint(tmp_path):
    from agents.ppo.run_messages import check_resume

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "summary.json").write_text("{}")
    for given, reason in ((run, f"is a folder: resume={run / 'checkpoints' / 'last.pt'}"),
                          (run / "checkpoints", f"is a folder: resume={run / 'checkpoints' / 'last.pt'}"),
                          (tmp_path / "empty", "no such checkpoint file"),
                          (tmp_path / "summary.json", "not a train.py checkpoint (.zip from trainer=sb3, .pt from "
                                                      "trainer=torchrl)"),
                          ("", "empty: give a checkpoint (.zip or .pt), or leave resume out")):
        with pytest.raises(ConfigError) as refused:
            check_resume(str(given))
        assert (refused.value.field, refused.value.value, refused.value.reason) == ("resume", str(given), reason)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a checkpoint file"):
        check_resume(str(tmp_path / "empty"))
    done = _train(f"resume={run}", f"hydra.run.dir={tmp_path / 'new'}")  # was field 'checkpoint': no such file
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: <config>: field 'resume' = '{run}': is a folder: "
                                   f"resume={run / 'checkpoints' / 'last.pt'}")
