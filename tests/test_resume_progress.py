"""A run resumed into its own folder continues its progress.csv, with either trainer: the rows
up to the checkpoint stay and the resumed run's follow (`agents.ppo.atomic_files.earlier_progress`);
each dump rewrites the whole file, which once left only the resumed run's rows."""

from __future__ import annotations

import csv

import pytest

from agents.ppo.atomic_files import STEP_COLUMN, earlier_progress, write_csv_atomic
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_trainer import train_torchrl
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


def _sb3(run, total: int, resume=None):
    tiny = tiny_run(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                    eval__steps=100, env__episode_s=100)
    extra = [] if resume is None else [f"resume={resume}"]
    return train(train_config(*tiny, f"train.total_agent_steps={total}", "train.eval_every=40", *extra), run)


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
