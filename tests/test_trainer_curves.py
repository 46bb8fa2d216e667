"""benchmarks/trainer_curves.py refuses a folder that holds no training run in one line (it was a
FileNotFoundError traceback), naming the folder."""

from __future__ import annotations

from tests.test_cli_refusals import _run


def test_a_folder_without_progress_csv_is_one_error_line_naming_it(tmp_path):
    missing = tmp_path / "no_such_run"
    done = _run("benchmarks/trainer_curves.py", str(missing), "--out", str(tmp_path / "curves.png"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert done.stderr == (f"error: benchmarks/trainer_curves.py: field 'runs' = '{missing}': no progress.csv "
                           "there: give train.py run folders (hydra.run.dir)\n")
    assert not (tmp_path / "curves.png").exists()
