"""Issue 18, point 1: configs, checkpoints and export — each mistake refused before any work
with the key or file named, and the command-line tools print one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

from agents.deploy.export import export_policy
from agents.deploy.export_files import MIN_OPSET, check_opset, check_written_opset
from agents.ppo.config import check_config
from agents.ppo.policy import META_NAME, PolicyController, load_policy, read_meta
from agents.ppo.torchrl_policy import CHECKPOINT_FORMAT, read_torchrl_checkpoint
from envs.errors import CheckpointError, ConfigError, ModelError
from tests.conftest import REPO_ROOT
from tests.minimal_scenario import assert_names_everything
from tests.test_train import tiny_run, train_config


@pytest.mark.parametrize("override, key, says", [
    ("eval.steps=0", "eval.steps", "must be >= 1"),
    ("eval.steps=-5", "eval.steps", "must be >= 1"),
    ("engine.device=tpu", "engine.device", "not a torch device"),
    ("train.device=cuda:x", "train.device", "expected auto, cpu, cuda or cuda:N"),
    # NaN and inf pass `x <= 0` / `x < 0`: NaN failed deep inside torch, inf trained silently
    ("agent.learning_rate=nan", "agent.learning_rate", "must be > 0"),
    ("agent.ent_coef=nan", "agent.ent_coef", "must be >= 0"),
    ("agent.clip_range=inf", "agent.clip_range", "must be a finite number"),
    ("agent.vf_coef=inf", "agent.vf_coef", "must be a finite number"),
    ("agent.target_kl=nan", "agent.target_kl", "must be > 0 or null"),
    ("env.probes.p=2.0", "env.probes.p", "a probability must lie in"),  # was <probes>: probes.p
    # a bad horizon was blamed on the dataset's flow file
    ("scenario.horizon=-5", "scenario.horizon", "must be an integer >= 1"),
    ("scenario.horizon=0", "scenario.horizon", "must be an integer >= 1"),
    ("seed=4294967296", "seed", "must be <= 4294967295"),  # numpy's ValueError traceback under trainer=sb3
])
def test_bad_training_config_values_name_their_key(override, key, says):
    with pytest.raises(ConfigError, match=says) as caught:
        check_config(train_config(*tiny_run(), override))
    assert caught.value.field == key and caught.value.source == "<config>"
    assert str(caught.value.value) == override.split("=", 1)[1]
    assert f"field {key!r} = {caught.value.value!r}:" in str(caught.value)


@pytest.mark.parametrize("changes, overrides, key, value, says", [
    ({"agent__batch_size": 1}, [], "agent.batch_size", 1, "must be >= 2"),  # normalising advantages needs two
    ({}, ["agent=mappo", "trainer=sb3"], "trainer", "sb3", "trains with trainer=torchrl"),
    ({}, ["agent.policy=independent", "agent.intersection_id=false"], "agent.intersection_id", False,
     "picks each row's weights from the intersection_id feature"),
    ({}, ["agent.net_arch=[64,0]"], "agent.net_arch[1]", 0, "layer widths must be >= 1"),
    ({}, ["agent.gamma=0.0"], "agent.gamma", 0.0, r"must be in \(0, 1\]"),  # gamma 0 would see no future
    ({}, ["agent.gae_lambda=1.5"], "agent.gae_lambda", 1.5, r"must be in \[0, 1\]"),
    ({}, ["agent.reward_scale=0.0"], "agent.reward_scale", 0.0, "must be > 0"),
    ({"train__threads": 0}, [], "train.threads", 0, "must be > 0 or null"),
])
def test_agent_values_the_trainers_cannot_use_name_their_key(changes, overrides, key, value, says):
    with pytest.raises(ConfigError, match=says) as caught:
        check_config(train_config(*tiny_run(**changes), *overrides))
    assert (caught.value.field, caught.value.value) == (key, value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_device_cuda_without_cuda_is_an_error_not_a_silent_cpu_run():
    with pytest.raises(ConfigError, match="CUDA is not available") as caught:
        check_config(train_config(*tiny_run(), "train.device=cuda"))
    assert caught.value.field == "train.device"


def test_evaluate_with_zero_steps_prints_one_line_and_exits_2(tmp_path):
    done = subprocess.run([sys.executable, "evaluate.py", "scenario=grid_1x1", "eval.steps=0",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: <config>: field 'eval.steps' = 0: must be >= 1"]


def test_an_opset_the_exporter_cannot_honour_is_refused_before_any_work(tmp_path):
    for opset in (7, 400):
        with pytest.raises(ConfigError, match=f"writes opsets {MIN_OPSET} to") as caught:
            export_policy(tmp_path / "no-such-checkpoint.zip", tmp_path / "out", opset=opset)  # before loading
        assert caught.value.field == "opset" and caught.value.value == opset
    assert not (tmp_path / "out").exists()


def test_the_opsets_at_both_ends_of_the_exporters_range_are_accepted():
    # "an opset= outside 18 to the installed onnx's newest is refused": 18 and the newest are inside
    from onnx.defs import onnx_opset_version

    assert check_opset(MIN_OPSET) == MIN_OPSET and check_opset(onnx_opset_version()) == onnx_opset_version()


def test_the_written_model_must_declare_the_opset_its_metadata_states(uneven):
    _, onnx_path, meta_path = uneven[1]["shared"]
    stated = json.loads(meta_path.read_text())["model"]["opset"]
    check_written_opset(onnx_path, stated)  # the real export agrees with its metadata
    with pytest.raises(ModelError, match=f"wrote opset {stated} instead"):
        check_written_opset(onnx_path, stated + 1)


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_out_folder_that_is_a_file_is_refused_before_any_work(tmp_path, overwrite):
    out = tmp_path / "train.log"  # was a FileExistsError traceback once the model was built
    out.write_text("")
    # the checkpoint's stem names the files, as export.py names them
    with pytest.raises(ConfigError, match=f"cannot write no-such-checkpoint.onnx there: {out} is a file") as caught:
        export_policy(tmp_path / "no-such-checkpoint.zip", out / "deploy", overwrite=overwrite)  # before loading
    assert_names_everything(caught.value, "<export>", "out", str(out / "deploy"))


def test_exporting_onto_an_existing_file_is_an_error_unless_overwrite(uneven, tmp_path):
    scenario, exports = uneven
    checkpoint, onnx_path, _ = exports["shared"]
    target = tmp_path / "out"
    target.mkdir()
    (target / "policy.json").write_text("{}")
    with pytest.raises(ConfigError, match="overwrite=true") as caught:
        export_policy(checkpoint, target, name="policy", scenario=scenario)
    assert caught.value.field == "out" and caught.value.value == str(target / "policy.json")
    assert (target / "policy.json").read_text() == "{}" and not (target / "policy.onnx").exists()
    written, meta = export_policy(checkpoint, target, name="policy", scenario=scenario, overwrite=True)
    assert json.loads(meta.read_text())["model"]["file"] == "policy.onnx" and written.stat().st_size > 0
    assert sorted(p.name for p in target.iterdir()) == ["policy.json", "policy.onnx"]  # no temporary files left


def _damaged(source, target, how: str):
    data = bytearray(source.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "flipped byte":  # inside the first member's compressed data: its CRC fails
        with zipfile.ZipFile(source) as archive:
            info = archive.infolist()[0]
        data[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("how, says", [("truncated", "truncated or corrupted"),
                                       ("flipped byte", "fails its checksum")])
def test_damaged_sb3_checkpoints_name_the_file_and_what_is_wrong(uneven, tmp_path, how, says):
    path = _damaged(uneven[1]["shared"][0], tmp_path / "last.zip", how)
    with pytest.raises(CheckpointError, match=says) as caught:
        load_policy(path)
    assert caught.value.source == str(path)


@pytest.mark.parametrize("member", [1, 2])  # the export's .onnx, its .json
def test_an_exported_model_given_as_a_checkpoint_is_named_as_such_not_as_damaged(uneven, member):
    path = uneven[1]["shared"][member]
    with pytest.raises(CheckpointError, match="not a train.py checkpoint .*evaluate.py deployed=") as caught:
        read_meta(path)
    assert "corrupted" not in str(caught.value)
    assert_names_everything(caught.value, str(path), "checkpoint", str(path))


def test_a_checkpoint_with_unreadable_metadata_names_the_member(uneven, tmp_path):
    path = tmp_path / "last.zip"
    with zipfile.ZipFile(uneven[1]["shared"][0]) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            target.writestr(item, b"{not json" if item.filename == META_NAME else source.read(item))
    with pytest.raises(CheckpointError, match="truncated or corrupted") as caught:
        read_meta(path)
    assert caught.value.source == str(path) and caught.value.field == META_NAME


def test_a_truncated_torchrl_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"trainer": "torchrl", "weights": torch.zeros(10_000)}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupted") as caught:
        read_torchrl_checkpoint(path)
    assert caught.value.source == str(path)


def _with_meta(source, target, edit):
    """A copy of the checkpoint `source` at `target` whose ``gridlight.json`` `edit` changed."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            data = original.read(item)
            if item.filename == META_NAME:
                meta = json.loads(data)
                edit(meta)
                data = json.dumps(meta).encode()
            copy.writestr(item, data)
    return target


@pytest.mark.parametrize("edit, key, value", [
    (lambda m: m["env"].pop("observations"), "env.observations", None),  # was KeyError, exit 1
    (lambda m: m["env"].update(decision_interval_s=0), "env.decision_interval_s", 0),  # was ZeroDivisionError
    (lambda m: m["env"].update(decision_interval_s=2.5), "env.decision_interval_s", 2.5),
    (lambda m: m["env"]["observations"]["lane_count"].pop("size"), "env.observations.lane_count.size", None),
])
def test_an_edited_checkpoint_meta_names_the_file_key_and_value(uneven, tmp_path, edit, key, value):
    path = _with_meta(uneven[1]["shared"][0], tmp_path / "last.zip", edit)
    with pytest.raises(CheckpointError) as caught:
        PolicyController(str(path))
    assert str(caught.value).startswith(f"{path}: field {key!r} = {value!r}: ")


def test_an_edited_torchrl_checkpoint_meta_names_the_file_key_and_value(tmp_path):
    path = tmp_path / "last.pt"
    meta = {"env": {"observations": {"lane_count": {"size": 8}}, "normalise": True, "intersections": ["a"],
                    "decision_interval_s": 0}}
    torch.save({"trainer": "torchrl", "format": CHECKPOINT_FORMAT, "meta": meta}, path)
    with pytest.raises(CheckpointError) as caught:
        read_torchrl_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: field 'env.decision_interval_s' = 0: ")


@pytest.mark.parametrize("max_green_s", [-5.0, float("nan"), 0.0, True])
def test_a_checkpoint_max_green_that_is_not_positive_is_refused(uneven, max_green_s):
    checkpoint = str(uneven[1]["shared"][0])
    with pytest.raises(ConfigError) as caught:  # was taken as given
        PolicyController(checkpoint, max_green_s=max_green_s)
    assert str(caught.value).startswith(f"{checkpoint}: field 'max_green_s' = {max_green_s!r}: ")
    # evaluate.py's checkpoint_max_green_s is refused before any work: tests/test_evaluate.py


def test_a_bad_baseline_parameter_value_names_its_config_key_before_any_work():
    """It failed once the run built the baselines, after the env and the model, as
    <controller:max_pressure>: field 'min_green_s', never naming baseline_params."""
    with pytest.raises(ConfigError) as caught:
        check_config(train_config(*tiny_run(), "baseline_params.max_pressure.min_green_s=-5"))
    assert (caught.value.source, caught.value.field, caught.value.value) == (
        "<config>", "baseline_params.max_pressure.min_green_s", -5)
    assert caught.value.reason == "must be a finite number >= 0"
