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
