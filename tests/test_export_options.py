"""export.py's options reach the export (out, name, opset, max_green_s, max_red_s, data_dir,
check.copies), and what export refuses after loading the checkpoint: a scenario that
no longer has the policy's intersections, a model file declaring another opset than the one
asked for. The CLI runs in-process with ``check.seconds=0`` (the parity check has its own tests)."""

from __future__ import annotations

import json
import shutil

import pytest

from agents.deploy.export import export_policy
from agents.deploy.onnx_opset import onnx_opsets
from agents.deploy.runtime import PolicyRuntime
from envs.errors import CheckpointError, ConfigError, ModelError
from envs.scenario import load_scenario
from tests.conftest import REPO_ROOT
from tests.deploy_fixtures import untrained
from tests.minimal_scenario import assert_names_everything


def export_cli(*overrides: str) -> None:
    """export.py's `export` on the composed config (`overrides`), in this process."""
    from hydra import compose, initialize_config_dir

    import export

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base=None):
        cfg = compose(config_name="export", overrides=list(overrides))
    export.export(cfg)


@pytest.fixture(scope="module")
def grid_checkpoint(tmp_path_factory):
    """An untrained policy on grid_1x1 whose meta names its scenario, as train.py's does."""
    root = tmp_path_factory.mktemp("options")
    return untrained(load_scenario("grid_1x1", horizon=600), "shared", root / "policy.zip",
                     config={"scenario": {"name": "grid_1x1", "seed": 0}})


def test_the_cli_writes_beside_the_checkpoint_with_the_opset_and_max_green_asked_for(grid_checkpoint, tmp_path):
    checkpoint = tmp_path / "run" / "best.zip"
    checkpoint.parent.mkdir()
    shutil.copy(grid_checkpoint, checkpoint)
    export_cli(f"checkpoint={checkpoint}", "check.seconds=0", "opset=19", "max_green_s=45")
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["best.json", "best.onnx", "best.zip"]
    onnx_path, meta_path = checkpoint.with_suffix(".onnx"), checkpoint.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    assert meta["model"]["opset"] == onnx_opsets(onnx_path.read_bytes())[""] == 19
    assert meta["timing"]["max_green_s"] == 45.0
    assert PolicyRuntime(onnx_path).timing.max_green_s == 45.0  # the runtime takes the pair


def test_the_cli_checks_the_max_green_given(grid_checkpoint, tmp_path):
    # 7 s is below grid_1x1's min green + decision interval (5 + 5 s); the default 120 s is not
    with pytest.raises(ConfigError) as refused:
        export_cli(f"checkpoint={grid_checkpoint}", f"out={tmp_path}", "check.seconds=0", "max_green_s=7")
    assert (refused.value.field, refused.value.value) == ("max_green_s", 7.0)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_writes_the_max_red_asked_for_and_none_by_default(grid_checkpoint, tmp_path):
    export_cli(f"checkpoint={grid_checkpoint}", f"out={tmp_path}", "name=guarded", "check.seconds=0", "max_red_s=90")
    assert json.loads((tmp_path / "guarded.json").read_text())["timing"]["max_red_s"] == 90.0
    assert PolicyRuntime(tmp_path / "guarded.onnx").guard.max_red_s == 90.0  # the runtime takes it
    export_cli(f"checkpoint={grid_checkpoint}", f"out={tmp_path}", "name=plain", "check.seconds=0")
    assert json.loads((tmp_path / "plain.json").read_text())["timing"]["max_red_s"] is None
    assert PolicyRuntime(tmp_path / "plain.onnx").guard is None


@pytest.mark.parametrize("given, value, reason", [
    # grid_1x1: min green 5 s, yellow 3 s + all-red 2 s, decisions 5 s apart: 5 + 2 x 5 + 5 = 20 s at least
    ("19.5", 19.5, "must be at least 20 s"), ("0", 0.0, "> 0"), ("-60", -60.0, "> 0"),
    ("inf", float("inf"), "finite"),
])
def test_the_cli_checks_the_max_red_given(grid_checkpoint, tmp_path, given, value, reason):
    with pytest.raises(ConfigError, match=reason) as refused:
        export_cli(f"checkpoint={grid_checkpoint}", f"out={tmp_path}", "check.seconds=0", f"max_red_s={given}")
    assert_names_everything(refused.value, "<config>", "max_red_s", value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override, key, value", [
    ("check.copies=0", "check.copies", 0),
    ("check.seconds=-1", "check.seconds", -1),
])
def test_the_cli_refuses_a_check_it_cannot_run_before_any_work(grid_checkpoint, tmp_path, override, key, value):
    with pytest.raises(ConfigError) as refused:
        export_cli(f"checkpoint={grid_checkpoint}", f"out={tmp_path}", override)
    assert_names_everything(refused.value, "<config>", key, value)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_without_a_checkpoint_is_one_error_naming_the_key():
    from tests.test_cli_refusals import _run

    with pytest.raises(ConfigError) as refused:  # was OmegaConf's MissingMandatoryValue traceback
        export_cli("check.seconds=0")
    assert_names_everything(refused.value, "<config>", "checkpoint", None)
    assert "required" in refused.value.reason
    done = _run("export.py")
    assert done.returncode == 2 and done.stderr == f"error: {refused.value}\n", done.stderr[-2000:]


def test_the_cli_looks_for_the_scenario_under_its_data_dir(uneven, tmp_path):
    checkpoint = untrained(uneven[0], "shared", tmp_path / "jinan.zip", config={"scenario": {"name": "jinan_3x4"}})
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="dataset 'jinan_3x4' not found") as refused:
        export_cli(f"checkpoint={checkpoint}", f"out={tmp_path / 'out'}", "check.seconds=0", f"data_dir={nowhere}")
    assert_names_everything(refused.value, "<config>", "data_dir", nowhere)



def test_with_a_data_dir_an_unknown_scenario_is_still_named_as_the_scenario(uneven, tmp_path):
    # only the registry's own data_dir complaint is renamed to export's data_dir key
    checkpoint = untrained(uneven[0], "shared", tmp_path / "p.zip", config={"scenario": {"name": "no_such_scenario"}})
    with pytest.raises(ConfigError, match="unknown scenario") as refused:
        export_policy(checkpoint, tmp_path / "out", data_dir=str(tmp_path))
    assert (refused.value.field, refused.value.value) == ("scenario.name", "no_such_scenario")

def test_a_scenario_without_the_policys_intersections_is_refused_and_nothing_written(uneven, tmp_path):
    checkpoint = uneven[1]["shared"][0]
    grid = load_scenario("grid_1x1", horizon=60)
    with pytest.raises(CheckpointError, match="no longer matches the policy's intersections") as refused:
        export_policy(checkpoint, tmp_path / "out", scenario=grid)
    assert_names_everything(refused.value, str(checkpoint), "env.intersections", ["intersection_1_1"])
    assert not (tmp_path / "out").exists()


def test_a_model_file_declaring_another_opset_is_never_written(uneven, tmp_path, monkeypatch):
    # docs/deployment.md: "a file whose real opset differs from the one asked for is never written"
    import agents.deploy.export as export_module

    write = export_module._write_onnx
    monkeypatch.setattr(export_module, "_write_onnx",
                        lambda module, layout, inputs, opset, path: write(module, layout, inputs, opset + 1, path))
    scenario, exported = uneven
    with pytest.raises(ModelError, match="the exporter wrote opset 19 instead") as refused:
        export_policy(exported["shared"][0], tmp_path, scenario=scenario, opset=18)
    assert (refused.value.field, refused.value.value) == ("opset", 18)
    assert list(tmp_path.iterdir()) == []



def test_the_export_check_replays_every_copy_asked_for(grid_checkpoint, tmp_path):
    from agents.ppo.policy import load_policy
    from export import check_against_torch

    onnx_path, _ = export_policy(grid_checkpoint, tmp_path)
    per_copy = 300 // load_policy(grid_checkpoint)[1]["env"]["decision_interval_s"]  # one intersection
    for copies in (1, 3):
        result = check_against_torch(onnx_path, str(grid_checkpoint), 300, copies, None)
        assert result == {"decisions": copies * per_copy, "identical": copies * per_copy}

def _opset_entry(domain: bytes, version: int) -> bytes:
    return b"\x0a" + bytes([len(domain)]) + domain + b"\x10" + bytes([version])


def test_the_opset_reader_steps_over_every_field_kind_and_refuses_a_truncated_field():
    ml, default = _opset_entry(b"ai.onnx.ml", 3), _opset_entry(b"", 19)
    data = (b"\x08\x08"  # field 1 (ir_version), a varint
            + b"\x42" + bytes([len(default)]) + default  # field 8 (opset_import)
            + b"\xa1\x01" + b"\x00\x00\x00\x00\x42\x02\x10\x07"  # field 20, 8 fixed bytes; read as 4, the
            # last 4 would be another default-domain opset, 7
            + b"\xad\x01" + b"\x42\x10\x13\x00"  # field 21, 4 fixed bytes (that look like an opset entry)
            + b"\x42" + bytes([len(ml)]) + ml)
    assert onnx_opsets(data) == {"ai.onnx.ml": 3, "": 19}
    for truncated in (data[:-1], data[:13], data[:23]):  # inside the last entry, the 8 bytes, the 4 bytes
        with pytest.raises(ValueError, match="truncated"):
            onnx_opsets(truncated)


@pytest.mark.parametrize("key, value", [("check.copies", 5), ("engine.device", "cuda:0")])
def test_the_checks_settings_with_check_seconds_0_are_refused_not_ignored(grid_checkpoint, tmp_path, monkeypatch,
                                                                            key, value):
    """check.seconds=0 skips the check: its copies and device were silently ignored."""
    import export

    monkeypatch.setattr(export, "check_device", lambda *args: None)  # as on a machine with that device
    with pytest.raises(ConfigError) as refused:
        export_cli(f"checkpoint={grid_checkpoint}", f"out={tmp_path}", "check.seconds=0", f"{key}={value}")
    assert_names_everything(refused.value, "<config>", key, value)
    assert "check.seconds=0 skips the check" in str(refused.value) and list(tmp_path.iterdir()) == []


def test_export_py_writes_what_it_says_into_its_run_folders_export_log(grid_checkpoint, tmp_path, capsys, monkeypatch):
    """export.py printed its lines only: Hydra's export.log in the run folder stayed empty."""
    import runpy
    import sys

    checkpoint = tmp_path / "best.zip"
    shutil.copy(grid_checkpoint, checkpoint)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["export.py", f"checkpoint={checkpoint}", "check.seconds=0",
                                      f"hydra.run.dir={run_dir}"])
    runpy.run_path(str(REPO_ROOT / "export.py"), run_name="__main__")
    wrote = f"wrote {checkpoint.with_suffix('.onnx')} ("
    assert wrote in capsys.readouterr().out  # still on the console
    log = (run_dir / "export.log").read_text()
    assert wrote in log and "check: SKIPPED (check.seconds=0)" in log and "serve it:" in log, log
