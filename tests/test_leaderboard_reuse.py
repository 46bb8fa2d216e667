"""benchmarks/leaderboard.py reuses a finished run of the same command in --runs-dir (an
interrupted leaderboard goes on) and refuses one of another command: it reused any run there,
reporting 2-seed figures under eval_seeds 3 and dropping controllers the old run lacked."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture()
def leaderboard(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    monkeypatch.delitem(sys.modules, "leaderboard", raising=False)
    import leaderboard

    return leaderboard


def test_a_finished_run_is_reused_only_for_the_same_command(leaderboard, tmp_path):
    out = tmp_path / "eval"
    extra = ["eval.steps=120", "eval.progress=false", "eval.plots=false"]

    def run(seeds, controllers=("fixed_time", "sotl")):
        return leaderboard.evaluate(SimpleNamespace(scenario="grid_1x1", eval_seeds=seeds), list(controllers), [],
                                    extra, out)

    first = run(2)
    assert first["names"] == ["fixed_time", "sotl"] and len(first["per_seed"]["sotl"]["travel_time/mean"]) == 2
    written = (out / "metrics.csv").stat().st_mtime_ns
    assert run(2) == first and (out / "metrics.csv").stat().st_mtime_ns == written  # reused, not re-run
    for other in ((3,), (2, ("fixed_time", "sotl", "max_pressure"))):
        with pytest.raises(SystemExit) as refused:
            run(*other)
        assert str(out) in str(refused.value) and "another --runs-dir" in str(refused.value)
        assert "eval.seeds=2" in str(refused.value)  # what the folder holds


def test_the_recorded_commit_says_when_the_working_tree_differs(leaderboard, tmp_path):
    """It recorded HEAD's hash alone, attributing uncommitted code's figures to that commit."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "one")
    clean = leaderboard.commit(tmp_path)
    assert len(clean) >= 7 and not clean.endswith("-dirty")
    (tmp_path / "code.py").write_text("a = 2\n")
    assert leaderboard.commit(tmp_path) == clean + "-dirty"
    (tmp_path / "untracked.txt").write_text("")  # outputs beside the code are not a change of it
    git("checkout", "-q", "code.py")
    assert leaderboard.commit(tmp_path) == clean


def test_a_training_run_of_the_same_command_under_other_defaults_is_refused(leaderboard, tmp_path):
    """The command names only the script's overrides: a run an earlier version trained (decisions every 10 s
    before c47b465) was reused by today's, its checkpoint reported as trained under today's defaults."""
    import json
    import zipfile

    from omegaconf import OmegaConf

    from tests.test_train import train_config

    args = SimpleNamespace(scenario="grid_1x1", agent="ppo_shared", steps=40, eval_seeds=1, train_override=[])
    run_dir = tmp_path / "ppo_shared_s0"
    overrides = leaderboard.fast_train_overrides("grid_1x1", "ppo_shared", 0, 40, 1)
    saved = OmegaConf.to_container(train_config(*overrides), resolve=True)

    def finished_run(config):
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(run_dir / "checkpoints" / "last.zip", "w") as archive:
            archive.writestr("gridlight.json", json.dumps({"format": 1, "config": config}))
        record = {"seed": 0, "checkpoint": str(run_dir / "checkpoints" / "last.zip"),
                  "command": "python train.py " + " ".join(overrides), "wall_s": 1.0}
        (run_dir / "leaderboard_train.json").write_text(json.dumps(record))
        return record

    record = finished_run(saved)
    assert leaderboard.train(args, 0, run_dir) == record  # today's settings: reused
    saved["env"]["decision_interval_s"] = 10
    finished_run(saved)
    with pytest.raises(SystemExit) as refused:
        leaderboard.train(args, 0, run_dir)
    assert str(run_dir) in str(refused.value) and "env.decision_interval_s=5 (checkpoint: 10)" in str(refused.value)
    assert "another --runs-dir" in str(refused.value)


def test_an_ablation_run_of_the_same_overrides_under_other_defaults_is_refused(monkeypatch, tmp_path):
    """learning_ablation.py reused a run whose recorded overrides matched: its `base` variant, trained by an
    earlier version (10 s decisions), was scored as today's defaults."""
    import json
    import zipfile

    import yaml
    from omegaconf import OmegaConf

    from tests.test_train import train_config

    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    monkeypatch.delitem(sys.modules, "learning_ablation", raising=False)
    import learning_ablation

    args = SimpleNamespace(scenario="grid_1x1", seed=0, steps=40, eval_seeds=1, threads=0, runs_dir=tmp_path)
    run_dir = tmp_path / "grid_1x1" / "base"
    wanted = learning_ablation.fast_train_overrides("grid_1x1", "ppo_shared", 0, 40, 1)
    saved = OmegaConf.to_container(train_config(*wanted), resolve=True)
    saved["env"]["decision_interval_s"] = 10
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(wanted))
    (run_dir / "summary.json").write_text(json.dumps({"eval_history": [{"agent_steps": 40, "wall_s": 1.0,
                                                                         "travel_time/mean": 30.0}]}))
    (run_dir / "checkpoints").mkdir()
    with zipfile.ZipFile(run_dir / "checkpoints" / "last.zip", "w") as archive:
        archive.writestr("gridlight.json", json.dumps({"format": 1, "config": saved}))
    with pytest.raises(SystemExit) as refused:
        learning_ablation.run_variant(args, "base", [])
    assert str(run_dir) in str(refused.value) and "env.decision_interval_s=5 (checkpoint: 10)" in str(refused.value)


@pytest.mark.parametrize("damage", ["no checkpoint", "no record", "not a zip"])
def test_a_reused_run_whose_checkpoint_cannot_be_read_is_named(monkeypatch, tmp_path, damage):
    """A finished run's folder whose last.zip is gone, holds no gridlight.json or is no zip: the reuse
    check names the file (it was a FileNotFoundError / KeyError / BadZipFile traceback)."""
    import zipfile

    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    monkeypatch.delitem(sys.modules, "common", raising=False)
    import common

    checkpoint = tmp_path / "run" / "checkpoints" / "last.zip"
    checkpoint.parent.mkdir(parents=True)
    if damage == "no record":
        with zipfile.ZipFile(checkpoint, "w") as archive:
            archive.writestr("policy.pth", b"")
    elif damage == "not a zip":
        checkpoint.write_text("not a zip")
    with pytest.raises(SystemExit) as refused:
        common.check_trained_as_today(tmp_path / "run", [])
    assert str(checkpoint) in str(refused.value) and "remove that folder" in str(refused.value)
