"""benchmarks/incident_detection.py's flags that it would ignore or repeat, refused before any
recording: one ``error: benchmarks/incident_detection.py: field 'FLAG' = VALUE: reason`` line,
exit status 2, no JSON line. Each runs the script's __main__ block in this process."""

from __future__ import annotations

import runpy
import sys

import pytest

from tests.conftest import REPO_ROOT

# were the checks to pass, the sweep stays short
SMALL_SWEEP = ["--scenario", "grid_1x1", "--copies", "1", "--train-copies", "1", "--placements", "uniform",
               "--override", "perturbation.incidents.start_s=[100,300]", "--override", "eval.steps=600"]


@pytest.mark.parametrize("flags, start", [
    # no learned detector: left out of every point's config, silently (0 included)
    (["--p", "0", "--detectors", "blockage_rule", "--epochs", "5"],
     "field '--epochs' = 5: nothing reads it: no learned detector is listed (--detectors)"),
    (["--p", "0", "--detectors", "blockage_rule", "--epochs", "0"], "field '--epochs' = 0: must be >= 1"),
    # was named by evaluate.py's key, detection.learned.epochs, which this script has no flag for
    (["--p", "0", "--detectors", "learned_mlp", "--epochs", "0"], "field '--epochs' = 0: must be >= 1"),
    # the same point twice: two identical entries in --out, the second report over the first
    (["--p", "0,0.0", "--detectors", "blockage_rule"], "field '--p' = 0.0: listed twice"),
    (["--p", "0", "--detectors", "blockage_rule", "--placements", "uniform,uniform"],
     "field '--placements' = 'uniform': listed twice"),
    # was named by evaluate.py's key, detection.classifiers
    (["--p", "0", "--detectors", "blockage_rule,blockage_rule"], "field '--detectors' = 'blockage_rule': listed twice"),
])
def test_the_sweep_refuses_flags_it_would_ignore_or_repeat(flags, start, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "argv", ["benchmarks/incident_detection.py", *SMALL_SWEEP, *flags,
                                      "--out", str(tmp_path / "r.json"), "--report-dir", str(tmp_path / "reports")])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(REPO_ROOT / "benchmarks" / "incident_detection.py"), run_name="__main__")
    printed, err = capsys.readouterr()
    assert ended.value.code == 2 and printed == "", err[-2000:]
    assert err.splitlines() == [err.splitlines()[-1]] and "Traceback" not in err, err[-2000:]
    assert err.startswith(f"error: benchmarks/incident_detection.py: {start}"), err
