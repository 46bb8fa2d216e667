"""benchmarks/incident_detection.py's flags that it would ignore or repeat, and output paths it
cannot write, refused before any recording: one ``error: benchmarks/incident_detection.py: field
'FLAG' = VALUE: reason`` line, exit status 2, no JSON line. Each runs the script's __main__ block
in this process."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.script_runs import refusal

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
    # p = 0 skips probe_only, leaving that point nothing: was named by evaluate.py's detection.classifiers = []
    (["--p", "0,0.2", "--detectors", "probe_only"], "field '--p' = '0,0.2': p = 0 leaves no detector to score"),
])
def test_the_sweep_refuses_flags_it_would_ignore_or_repeat(flags, start, tmp_path, capsys, monkeypatch):
    argv = [*SMALL_SWEEP, *flags, "--out", str(tmp_path / "r.json"), "--report-dir", str(tmp_path / "reports")]
    error = refusal("incident_detection.py", argv, capsys, monkeypatch, only_line=True)
    assert error.startswith(f"error: benchmarks/incident_detection.py: {start}"), error


@pytest.mark.parametrize("case, start", [
    ("out_is_a_folder", "field '--out' = '{tmp}/folder': is a folder"),  # IsADirectoryError after the whole sweep
    ("report_dir_is_a_file", "field '--report-dir' = '{tmp}/file': is a file"),  # NotADirectoryError after recording
    ("out_under_a_file", "field '--out' = '{tmp}/file/results.json': '{tmp}/file' is a file"),
    # a JSONDecodeError traceback
    ("merge_into_no_json", "field '--merge' = '{tmp}/bad.json': --out is not the results JSON"),
])
def test_the_sweep_refuses_output_paths_it_cannot_write_before_any_work(case, start, tmp_path, capsys, monkeypatch):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    (tmp_path / "bad.json").write_text("{bad")
    out, report = {"out_is_a_folder": ("folder", "reports"), "report_dir_is_a_file": ("r.json", "file"),
                   "out_under_a_file": ("file/results.json", "reports"),
                   "merge_into_no_json": ("bad.json", "reports")}[case]
    argv = [*SMALL_SWEEP, "--p", "0", "--detectors", "blockage_rule", "--out", str(tmp_path / out),
            "--report-dir", str(tmp_path / report), *(["--merge"] if case == "merge_into_no_json" else [])]
    error = refusal("incident_detection.py", argv, capsys, monkeypatch, only_line=True)
    assert error.startswith("error: benchmarks/incident_detection.py: " + start.format(tmp=tmp_path)), error


def test_training_copies_without_an_incident_are_named_by_the_sweeps_flag(tmp_path, capsys, monkeypatch):
    # a rate whose draws were all 0 on the training copies: evaluate.py names detection.train_copies,
    # which the sweep sets from --train-copies
    argv = [*SMALL_SWEEP, "--p", "0", "--detectors", "blockage_rule", "--override",
            "perturbation.incidents.rate_per_hour=0.5", "--out", str(tmp_path / "r.json"),
            "--report-dir", str(tmp_path / "reports")]
    error = refusal("incident_detection.py", argv, capsys, monkeypatch)  # after the progress lines
    assert error.startswith("error: benchmarks/incident_detection.py: field '--train-copies' = 1: the training "
                            "copies drew no incident"), error


def test_the_default_output_is_not_the_recorded_results():
    # a trial run without --out replaced docs/results/incident_detection.json, the record the docs quote
    from benchmarks.incident_detection import ROOT, parse_args

    out = Path(parse_args([]).out)
    assert ROOT / "outputs" in out.parents and "docs" not in out.relative_to(ROOT).parts, out


def test_the_recorded_commands_write_the_recorded_results():
    # each run's command (meta) re-runs into the record only if it names it: --out is no longer the default
    from benchmarks.incident_detection import ROOT, parse_args

    record = ROOT / "docs/results/incident_detection.json"
    meta = json.loads(record.read_text())["meta"]
    for run in [meta, *meta.get("runs", [])]:
        argv = shlex.split(run["command"])
        assert argv[:2] == ["python", "benchmarks/incident_detection.py"], run["command"]
        assert (ROOT / parse_args(argv[2:]).out).resolve() == record, run["command"]
