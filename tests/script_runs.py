"""A benchmark script run as ``python benchmarks/SCRIPT ARGS`` runs it (its __main__ block), but in
this process: a subprocess per refusal cost ~2 s of imports each."""

from __future__ import annotations

import runpy
import sys

import pytest

from tests.conftest import REPO_ROOT


def refusal(script: str, argv: list[str], capsys, monkeypatch, only_line: bool = False) -> str:
    """The one ``error: ...`` line that ``benchmarks/SCRIPT ARGV`` ends with, asserted to be its last
    line on stderr, with exit status 2, nothing on stdout (nothing ran before it) and no traceback;
    `only_line`: nor anything else on stderr."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{script}", *argv])
    monkeypatch.setattr(sys, "path", [str(REPO_ROOT / "benchmarks"), *sys.path])  # as python puts a script's folder
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(REPO_ROOT / "benchmarks" / script), run_name="__main__")
    out, err = capsys.readouterr()
    assert ended.value.code == 2 and out == "", err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [err.splitlines()[-1]] and "Traceback" not in err, err[-2000:]
    if only_line:
        assert err.splitlines() == errors, err[-2000:]
    return errors[0]
