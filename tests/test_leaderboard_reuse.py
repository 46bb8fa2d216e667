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
