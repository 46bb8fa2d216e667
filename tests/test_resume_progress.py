"""A run resumed into its own folder continues its progress.csv, with either trainer: the rows
up to the checkpoint stay and the resumed run's follow (`agents.ppo.atomic_files.earlier_progress`);
each dump rewrites the whole file, which once left only the resumed run's rows."""

from __future__ import annotations

import csv

import pytest

from agents.ppo.atomic_files import STEP_COLUMN, earlier_progress, write_csv_atomic
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_trainer import train_torchrl
from tests.tensorboard_points import scalar_events
from tests.test_torchrl_trainer import SMALL, torchrl_config
from tests.test_train import tiny_run, train_config


def _rows(path) -> list[dict]:
    with open(path, newline="") as table:
        return list(csv.DictReader(table))


def test_earlier_progress_keeps_the_rows_up_to_the_checkpoint_and_those_without_a_step(tmp_path):
    path = tmp_path / "progress.csv"
    assert earlier_progress(path, 100) == ([], [])  # a fresh folder: nothing to continue
    keys = [STEP_COLUMN, "a", "b"]
    write_csv_atomic(path, keys, [{STEP_COLUMN: 50, "a": 1}, {STEP_COLUMN: 100, "b": 2}, {"a": 3},
                                  {STEP_COLUMN: 150, "a": 4}])
    assert earlier_progress(path, 100) == (keys, [
        {STEP_COLUMN: "50", "a": "1", "b": ""}, {STEP_COLUMN: "100", "a": "", "b": "2"},
        {STEP_COLUMN: "", "a": "3", "b": ""},  # cannot be placed: kept
    ])  # the row at 150 is a step the resumed run trains again


def _sb3(run, total: int, resume=None, *overrides: str):
    tiny = tiny_run(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                    eval__steps=100, env__episode_s=100)
    extra = [] if resume is None else [f"resume={resume}"]
    return train(train_config(*tiny, f"train.total_agent_steps={total}", "train.eval_every=40", *extra, *overrides),
                 run)


def _sb3_pool(run, total: int, resume=None):
    """With a demand pool (episodes cycle through 2 samples): a resume once rebased the pool on
    the sample it restarted from, and trained on other samples."""
    return _sb3(run, total, resume, "env.demand_pool=2")


def _torchrl(run, total: int, resume=None):
    extra = {} if resume is None else {"resume": resume}
    return train_torchrl(torchrl_config(SMALL, train__total_agent_steps=total, **extra), run)


@pytest.mark.parametrize("trainer, last, first_total", [(_sb3, "last.zip", 80), (_torchrl, "last.pt", 160)])
def test_a_run_resumed_into_its_own_folder_continues_its_progress_csv(tmp_path, trainer, last, first_total):
    run = tmp_path / "run"
    trainer(run, first_total)
    first = _rows(run / "progress.csv")
    assert first and max(int(float(row[STEP_COLUMN])) for row in first) == first_total
    trainer(run, 2 * first_total, resume=run / "checkpoints" / last)
    both = _rows(run / "progress.csv")
    assert both[:len(first)] == [{**{key: "" for key in both[0]}, **row} for row in first]
    later = [int(float(row[STEP_COLUMN])) for row in both[len(first):]]
    assert later and min(later) > first_total and max(later) == 2 * first_total


def _parameters(checkpoint) -> dict:
    import torch

    if str(checkpoint).endswith(".pt"):
        from agents.ppo.torchrl_policy import read_torchrl_checkpoint

        data = read_torchrl_checkpoint(checkpoint)
        return {f"{part}.{k}": v for part in ("actor", "critic") for k, v in data[part].items()}
    from agents.ppo.policy import load_policy

    model, _ = load_policy(str(checkpoint), device="cpu")
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items() if torch.is_tensor(v)}


@pytest.mark.parametrize("trainer, last, first_total", [(_sb3, "last.zip", 80), (_sb3_pool, "last.zip", 80),
                                                        (_torchrl, "last.pt", 320)])
def test_a_run_resumed_at_an_episode_boundary_trains_on_the_demand_the_uninterrupted_run_does(
        tmp_path, trainer, last, first_total):
    import torch

    # both settings end every copy's episode at first_total: resampled (poisson) training demand
    trainer(tmp_path / "whole", 2 * first_total)
    trainer(tmp_path / "cut", first_total)
    trainer(tmp_path / "cut", 2 * first_total, resume=tmp_path / "cut" / "checkpoints" / last)
    whole = _parameters(tmp_path / "whole" / "checkpoints" / last)
    resumed = _parameters(tmp_path / "cut" / "checkpoints" / last)
    # the resumed run skipped the samples the last autoreset drew: it trained on others and differed
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)


def _scalar_steps(tb_dir) -> dict[str, list[int]]:
    return {tag: [event.step for event in events] for tag, events in scalar_events(tb_dir).items()}


@pytest.mark.parametrize("trainer, rollout", [(_sb3, 40), (_torchrl, 160)])
def test_each_tag_has_one_point_per_rollout_and_the_update_sits_at_its_rollouts_step(tmp_path, trainer, rollout):
    trainer(tmp_path / "run", 3 * rollout)
    steps = _scalar_steps(tmp_path / "run" / "tb")
    # SB3 dumps before its update: train/* came out a rollout late (40, 80, 80 for updates at 40, 80, 120)
    assert steps["train/value_loss"] == [rollout, 2 * rollout, 3 * rollout]
    assert steps["time/agent_steps_per_s"] == [rollout, 2 * rollout, 3 * rollout]  # SB3's last one twice
    assert all(len(points) == len(set(points)) for points in steps.values()), steps
    rows = _rows(tmp_path / "run" / "progress.csv")  # one row a rollout (and the evaluation at 0)
    assert [int(float(row[STEP_COLUMN])) for row in rows if row[STEP_COLUMN]] == [0, rollout, 2 * rollout,
                                                                                  3 * rollout]


@pytest.mark.parametrize("trainer, last, rollout", [(_sb3, "last.zip", 40), (_torchrl, "last.pt", 160)])
def test_a_resume_into_a_folder_with_points_past_its_checkpoint_hides_them(tmp_path, trainer, last, rollout):
    import shutil

    run = tmp_path / "run"
    trainer(run, rollout)
    early = tmp_path / f"early{last[4:]}"
    shutil.copy(run / "checkpoints" / last, early)
    trainer(run, 2 * rollout, resume=run / "checkpoints" / last)  # the folder now holds points up to 2R
    trainer(run, 2 * rollout, resume=early)  # as after a kill past the early checkpoint: 2R trained again
    steps = _scalar_steps(run / "tb")
    assert steps["train/value_loss"] == [rollout, 2 * rollout]  # was rollout, 2R, 2R
    assert all(len(points) == len(set(points)) for points in steps.values()), steps


def test_start_demand_seeds_a_new_run_resumes_the_stream_and_reads_older_checkpoints():
    from types import SimpleNamespace

    from agents.ppo.run_setup import SAMPLES_PER_SEED, start_demand

    calls = []
    core = SimpleNamespace(resume_demand=lambda state, path: calls.append(("resume", state, path)))

    def seed(first):
        calls.append(("seed", first))

    state = {"held": [5, 4], "next_sample": 6, "pool_base": 0}
    start_demand(core, seed, 3, None, None)  # a new run: its seed's own samples
    start_demand(core, seed, 3, {"train_demand": state, "train_next_sample": 4}, "last.pt")
    start_demand(core, seed, 3, {"train_next_sample": 4}, "old.zip")  # written before train_demand
    assert calls == [("seed", 3 * SAMPLES_PER_SEED), ("resume", state, "last.pt"), ("seed", 4)]


@pytest.mark.parametrize("trainer, last", [(_sb3, "last.zip"), (_torchrl, "last.pt")])
def test_a_resumed_run_learns_at_this_configs_learning_rate(tmp_path, monkeypatch, trainer, last):
    import torch

    trainer(tmp_path / "first", 40 if last == "last.zip" else 160)  # at agent.learning_rate 1e-3
    step, rates = torch.optim.Adam.step, []

    def recorded(optimizer, *args, **kwargs):
        rates.extend(group["lr"] for group in optimizer.param_groups)
        return step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recorded)
    checkpoint = tmp_path / "first" / "checkpoints" / last
    if last == "last.zip":
        _sb3(tmp_path / "second", 80, checkpoint, "agent.learning_rate=0.0002")
    else:
        train_torchrl(torchrl_config(SMALL, train__total_agent_steps=320, agent__learning_rate=0.0002,
                                     resume=checkpoint), tmp_path / "second")
    assert rates and set(rates) == {0.0002}  # not the checkpoint's optimiser's 1e-3


def test_a_checkpoint_whose_observation_bounds_differ_from_todays_still_resumes(tmp_path, monkeypatch):
    """An observation's declared bounds (the Box's low/high) are no part of what the policy learned: a
    checkpoint written when `pressure`'s bound was another resumes (SB3 refused it with a ValueError,
    'Observation spaces do not match', a traceback). Its layout (names and sizes) is still checked."""
    import envs.rl.features as features

    observed = "env.observations=[phase_onehot,lane_count,pressure]"
    _sb3(tmp_path / "run", 40, None, observed)
    true_bound = features._pressure_bound
    monkeypatch.setattr(features, "_pressure_bound", lambda ctx, norm: 2.0 * true_bound(ctx, norm))
    _sb3(tmp_path / "run", 80, tmp_path / "run" / "checkpoints" / "last.zip", observed)
    assert [row[STEP_COLUMN] for row in _rows(tmp_path / "run" / "progress.csv")][-1] == "80"
