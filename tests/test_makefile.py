"""The Makefile's install step, run against a stand-in venv whose python only records its
arguments: what `make install` does with a venv left half made, nothing installed for real."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _stand_in(path: Path, log: Path, fails_on: str) -> None:
    """A python that appends its arguments to `log` and exits 1 when they hold `fails_on`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in *"{fails_on}"*) exit 1;; esac\n')
    path.chmod(0o755)


def _make_install(tmp_path: Path, venv_fails_on: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    log, venv = tmp_path / "calls.log", tmp_path / "venv"
    _stand_in(venv / "bin" / "python", log, venv_fails_on)
    _stand_in(tmp_path / "python3", log, "never")
    env = {**os.environ, "MAKEFLAGS": ""}
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "install", f"VENV={venv}",
                           f"PYTHON={tmp_path / 'python3'}"], capture_output=True, text=True, env=env)
    return done, log.read_text().splitlines() if log.exists() else []


def test_a_venv_without_pip_is_made_again(tmp_path: Path) -> None:
    # `python -m venv` interrupted while it runs ensurepip leaves bin/python and no pip: reusing
    # that venv failed every later make with "No module named pip" until `make clean`
    done, calls = _make_install(tmp_path, venv_fails_on="-m pip --version")
    assert done.returncode == 0, done.stderr
    assert f"-m venv {tmp_path / 'venv'}" in calls
    assert (tmp_path / "venv" / ".installed").is_file()


def _python_answering(path: Path, which: str, log: Path) -> None:
    """A python that records its arguments and answers the Makefile's interpreter check with `which`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$*" >> {log}\ncase "$*" in -c*) echo "{which}";; esac\n')
    path.chmod(0o755)


@pytest.mark.parametrize("given", ["command line", "environment"])
def test_python_given_while_the_venv_was_made_by_another_interpreter_is_refused(tmp_path: Path, given: str) -> None:
    # PYTHON= was ignored once .venv existed: `make test PYTHON=python3.12` ran the suite on .venv's 3.11
    log, venv = tmp_path / "calls.log", tmp_path / "venv"
    _python_answering(venv / "bin" / "python", "3.11 (/usr)", log)
    _python_answering(tmp_path / "python3.12", "3.12 (/usr)", log)
    (venv / ".installed").touch()  # installed, and newer than pyproject.toml: nothing to do but the check
    python = str(tmp_path / "python3.12")
    env = {**os.environ, "MAKEFLAGS": "", **({"PYTHON": python} if given == "environment" else {})}
    argv = ["make", "-s", "-C", str(ROOT), "test", f"VENV={venv}", *([f"PYTHON={python}"] if given == "command line"
                                                                     else [])]
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: PYTHON={python} is Python 3.12 (/usr), but {venv} was made with Python "
                                  "3.11 (/usr): remove it (make clean)"), done.stderr
    assert not any("pytest" in call or "pip" in call for call in log.read_text().splitlines())  # nothing ran


def test_python_naming_the_venvs_interpreter_or_left_out_uses_the_venv(tmp_path: Path) -> None:
    log, venv = tmp_path / "calls.log", tmp_path / "venv"
    _python_answering(venv / "bin" / "python", "3.11 (/usr)", log)
    _python_answering(tmp_path / "python3", "3.11 (/usr)", log)
    (venv / ".installed").touch()
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"} | {"MAKEFLAGS": ""}
    for extra in ([f"PYTHON={tmp_path / 'python3'}"], []):
        done = subprocess.run(["make", "-s", "-C", str(ROOT), "test", f"VENV={venv}", *extra], capture_output=True,
                              text=True, env=env)
        assert done.returncode == 0, done.stderr
        assert log.read_text().splitlines()[-1] == "-m pytest -q -n auto --dist loadfile"  # the venv's, as before
