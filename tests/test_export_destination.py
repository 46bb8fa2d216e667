"""What export refuses before any work, beyond tests/test_reliability_cli.py: an opset that is
not an integer, a folder it may not write in, an existing model file alone (without its
metadata beside it), and a name that would part the model from its metadata."""

from __future__ import annotations

import pytest

from agents.deploy.export import export_policy
from envs.errors import ConfigError
from tests.minimal_scenario import assert_names_everything


@pytest.mark.parametrize("opset", [18.0, "18"])
def test_an_opset_that_is_not_an_integer_is_refused_before_any_work(tmp_path, opset):
    with pytest.raises(ConfigError, match="writes opsets 18 to") as caught:
        export_policy(tmp_path / "no-such-checkpoint.zip", tmp_path / "out", opset=opset)  # before loading
    assert (caught.value.field, caught.value.value) == ("opset", opset)


def test_a_folder_without_write_access_is_refused_before_any_work(tmp_path, monkeypatch):
    import agents.deploy.export_files as export_files

    # as root every folder is writable: the check is what os.access answers
    monkeypatch.setattr(export_files.os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=f"cannot write no-such-checkpoint.onnx there: {tmp_path} is not writable"):
        export_policy(tmp_path / "no-such-checkpoint.zip", tmp_path / "deploy")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_model_file_alone_is_an_error_unless_overwrite(uneven, tmp_path):
    scenario, exports = uneven
    checkpoint = exports["shared"][0]
    (tmp_path / "policy.onnx").write_bytes(b"an older model")
    with pytest.raises(ConfigError, match="overwrite=true") as caught:
        export_policy(checkpoint, tmp_path, name="policy", scenario=scenario)
    assert_names_everything(caught.value, "<export>", "out", str(tmp_path / "policy.onnx"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.onnx"]
    assert (tmp_path / "policy.onnx").read_bytes() == b"an older model"


@pytest.mark.parametrize("name, says", [
    ("", "must be a non-empty file name"),  # wrote .onnx and .json, and the service looked for .onnx.json
    ("deploy/", "contains a path separator"),
    ("../x", "contains a path separator"),  # wrote x.onnx and x.json beside out, not in it
    ("sub/../../x", "contains a path separator"),
    ("..\\x", "contains a path separator"),  # a separator on Windows
    ("..", "is '..'"),
    ("/tmp/x", "is an absolute path"),
    ("C:\\x", "is an absolute path"),
    ("city.onnx", "ends in .onnx: export.py adds .onnx and .json to the name itself; give name=city"),  # city.onnx.onnx
    ("city.JSON", "ends in .json"),  # wrote city.JSON.onnx and city.JSON.json
])
def test_a_name_that_is_not_a_plain_file_name_is_refused_before_anything_is_written(tmp_path, name, says):
    out = tmp_path / "a" / "out"
    with pytest.raises(ConfigError, match=says) as caught:
        export_policy(tmp_path / "no-such-checkpoint.zip", out, name=name)  # before loading the checkpoint
    assert_names_everything(caught.value, "<export>", "name", name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argument, says", [
    ("name=../x", "field 'name' = '../x': contains a path separator"),
    ("name='../x'", "field 'name' = '../x': contains a path separator"),  # read as Hydra reads it
    ("+name=", "field 'name' = '': must be a non-empty file name"),
])
def test_export_py_refuses_a_name_outside_out_before_any_work(tmp_path, capsys, monkeypatch, argument, says):
    import runpy
    import sys

    from tests.conftest import REPO_ROOT

    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["export.py", f"checkpoint={tmp_path / 'last.zip'}", f"out={out}", argument,
                                      f"hydra.run.dir={tmp_path / 'run'}"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(REPO_ROOT / "export.py"), run_name="__main__")
    err = capsys.readouterr().err
    assert ended.value.code == 2 and "Traceback" not in err, err[-2000:]
    # named before the missing checkpoint is
    assert err.startswith(f"error: <export>: {says}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []  # refused on the command line: not even Hydra's run folder


def test_a_name_with_dots_keeps_the_pair_together(uneven, tmp_path):
    scenario, exports = uneven
    onnx_path, meta_path = export_policy(exports["shared"][0], tmp_path, name="policy.v2", scenario=scenario)
    assert (onnx_path.name, meta_path.name) == ("policy.v2.onnx", "policy.v2.json")
    assert onnx_path.with_suffix(".json") == meta_path


@pytest.mark.parametrize("run_dir", ["{file}", "{file}/sub"])
def test_a_hydra_run_dir_that_is_a_file_or_under_one_is_one_error_line(tmp_path, run_dir, capsys, monkeypatch):
    """export.py ran none of the command-line checks train.py and evaluate.py run: Hydra's
    FileExistsError / NotADirectoryError traceback, exit 1."""
    import runpy
    import sys

    from tests.conftest import REPO_ROOT

    taken = tmp_path / "taken"
    taken.write_text("")
    run_dir = run_dir.format(file=taken)
    monkeypatch.setattr(sys, "argv", ["export.py", f"checkpoint={tmp_path / 'last.zip'}", f"hydra.run.dir={run_dir}"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(REPO_ROOT / "export.py"), run_name="__main__")
    err = capsys.readouterr().err
    assert ended.value.code == 2 and "Traceback" not in err, err[-2000:]
    assert err.startswith(f"error: <config>: field 'hydra.run.dir' = '{run_dir}': ") and err.count("\n") == 1, err
    assert not (tmp_path / "last.onnx").exists()
