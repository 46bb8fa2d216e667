"""The file beside an export, or the checkpoint it came from, given where the model goes.

``serve --model last.json`` (the metadata, not ``last.onnx``) read that one file as both the model
and its own metadata: the service started, logged a model checksum mismatch and answered every
line with the fixed-time fallback, exit status 0; ``evaluate.py deployed=last.json`` was refused
for the same checksum. ``--model last.zip`` said only that ``last.json`` was missing. Now each is
refused at start-up naming the value given and the file to give instead."""

from __future__ import annotations

import pytest

from agents.deploy.runtime import PolicyRuntime
from agents.deploy.service import main
from envs.errors import ModelError
from tests.test_evaluate import evaluate_config


def test_the_metadata_given_as_the_model_is_refused_naming_the_onnx_beside_it(model_copy, capsys):
    onnx_path, meta_path = model_copy
    with pytest.raises(ModelError, match=f"the model is the .onnx beside it .{onnx_path.name}.") as refused:
        PolicyRuntime(meta_path)
    assert (refused.value.source, refused.value.field, refused.value.value) == (str(meta_path), "model",
                                                                              str(meta_path))
    with pytest.raises(SystemExit) as status:  # it ran on the fallback, status 0
        main(["serve", "--model", str(meta_path)])
    assert status.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {meta_path}: field 'model'") and onnx_path.name in err[0]


def test_a_checkpoint_given_as_the_model_says_to_export_it(model_copy, tmp_path):
    checkpoint = tmp_path / "last.zip"
    checkpoint.write_bytes(b"PK\x03\x04 a checkpoint")
    with pytest.raises(ModelError, match="train.py checkpoint; export it first: python export.py checkpoint="):
        PolicyRuntime(checkpoint)  # was: "no such metadata file" about last.json


def test_evaluate_refuses_the_metadata_as_a_deployed_model_naming_it(model_copy):
    from agents import lineup

    _, meta_path = model_copy
    cfg = evaluate_config("scenario=grid_1x1", f"deployed={meta_path}")
    with pytest.raises(ModelError, match="the model is the .onnx beside it") as refused:  # was: a checksum
        lineup.deployed_policies(cfg, [])
    assert refused.value.field == "deployed"
