"""The metadata JSON is covered by a checksum (agents/deploy/metadata.py, `check_checksum`): an
edit that stays in every allowed range (min green 5 -> 0) is refused at load with an error
naming the file and the entry that differs, and so is a file without a checksum (an export from
before it), with the command that re-exports it; a model file whose SHA-256 is not the metadata's
``model.sha256`` is refused naming it and both digests."""

from __future__ import annotations

import hashlib
import json

import pytest

from agents.deploy.metadata import CHECKSUM_FIELD, metadata_checksum
from agents.deploy.runtime import PolicyRuntime
from envs.errors import ModelError


def _edit(meta_path, edit) -> dict:
    """`edit(meta)` written back as a hand edit would be: the checksum left as it was."""
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def _refused(model_copy) -> ModelError:
    with pytest.raises(ModelError) as caught:
        PolicyRuntime(*model_copy)
    return caught.value


def test_the_export_writes_a_checksum_of_every_other_entry(model_copy):
    _, meta_path = model_copy
    meta = json.loads(meta_path.read_text())
    stored = meta[CHECKSUM_FIELD]
    assert stored["algorithm"] == "sha256" and set(stored["sections"]) == set(meta) - {CHECKSUM_FIELD}
    assert stored == metadata_checksum(meta)
    timing = json.dumps(meta["timing"], sort_keys=True, separators=(",", ":")).encode()
    assert stored["sections"]["timing"] == hashlib.sha256(timing).hexdigest()  # the canonical form it states
    PolicyRuntime(*model_copy)  # and the runtime takes it


def test_an_edited_min_green_is_refused_naming_the_file_and_the_entry(model_copy):
    _, meta_path = model_copy
    meta = _edit(meta_path, lambda m: m["timing"].update(min_green_s=0))  # in range: only the checksum tells
    error = _refused(model_copy)
    assert str(error).startswith(f"{meta_path}: field 'timing' = {meta['timing']!r}: "
                                 "the metadata differs from what export.py wrote in 'timing' (edited)")
    assert f"re-export it: python export.py checkpoint={meta['training']['checkpoint']}" in str(error)


def test_every_entry_that_differs_is_named(model_copy):
    _, meta_path = model_copy

    def edit(meta):
        meta["intersections"][0]["fallback_plan"][0]["green_s"] = 1.0
        meta["model"]["opset"] = 17
        meta["notes"] = "mine"

    _edit(meta_path, edit)
    error = _refused(model_copy)
    assert error.field == "intersections"
    assert "in 'intersections' (edited), 'model' (edited), 'notes' (added)" in error.reason


def test_a_model_checksum_edited_to_fit_another_model_is_refused_as_a_metadata_edit(model_copy):
    # the model entry holds the model file's SHA-256, and the metadata's checksum covers that entry
    onnx_path, meta_path = model_copy
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    _edit(meta_path, lambda m: m["model"].update(sha256=hashlib.sha256(onnx_path.read_bytes()).hexdigest()))
    assert "'model' (edited)" in _refused(model_copy).reason


@pytest.mark.parametrize("damage", ["appended byte", "flipped byte"])
def test_a_model_file_that_differs_from_model_sha256_is_refused_naming_both_digests(model_copy, damage):
    # the metadata is as exported, the model file is not: it was loaded onto the fixed-time fallback of
    # every intersection, a deployment that ran no policy at all with no error at load
    onnx_path, meta_path = model_copy
    expected = json.loads(meta_path.read_text())["model"]["sha256"]
    data = bytearray(onnx_path.read_bytes())
    if damage == "appended byte":
        data += b"\0"
    else:
        data[len(data) // 2] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    found = hashlib.sha256(bytes(data)).hexdigest()
    error = _refused(model_copy)
    assert (error.source, error.field, error.value) == (str(onnx_path), "model.sha256", found)
    assert str(error).startswith(f"{onnx_path}: field 'model.sha256' = {found!r}: model file {onnx_path} checksum "
                                 f"(SHA-256) {found} does not match the metadata's model.sha256 {expected} "
                                 f"({meta_path})")
    checkpoint = json.loads(meta_path.read_text())["training"]["checkpoint"]
    assert error.reason.endswith(f"re-export it: python export.py checkpoint={checkpoint}")


@pytest.mark.parametrize("stored, says", [
    (None, "missing: the file was written by an export from before the metadata had a checksum"),
    ("0" * 64, "malformed"),
    ({"algorithm": "md5", "sections": {}}, "malformed"),
])
def test_a_file_without_a_usable_checksum_is_refused_with_how_to_re_export(model_copy, stored, says):
    _, meta_path = model_copy
    meta = _edit(meta_path, lambda m: m.pop(CHECKSUM_FIELD) if stored is None else m.update(checksum=stored))
    error = _refused(model_copy)
    assert str(error).startswith(f"{meta_path}: field 'checksum' = {stored!r}: {says}")
    assert error.reason.endswith(f"re-export it: python export.py checkpoint={meta['training']['checkpoint']}")
