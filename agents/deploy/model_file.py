"""The exported ONNX model under onnxruntime: loading it checked against its metadata
(checksum, opset, input and output names and shapes), and one inference within a deadline.
A model file whose SHA-256 is not the metadata's ``model.sha256`` (changed or damaged since
export) is an `envs.errors.ModelError`: it is not the model exported, so it is refused at load.
Other problems come back as a message (the runtime's fail-safe takes over), never as an exception."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from agents.deploy.onnx_opset import onnx_opsets
from agents.deploy.readings import Readings, short
from envs.errors import ModelError


def check_digest(path: Path, data: bytes, spec: dict, metadata_path: str = "<metadata>", hint: str = "") -> None:
    """A `ModelError` naming the model file, the digest found and the one the metadata's ``model``
    entry `spec` states, where they differ; `hint`: how to write the pair again."""
    digest = hashlib.sha256(data).hexdigest()
    expected = spec.get("sha256")
    if digest != expected:
        raise ModelError(str(path), "model.sha256", digest,
                         f"model file {path} checksum (SHA-256) {digest} does not match the metadata's model.sha256 "
                         f"{expected} ({metadata_path}): the file was changed or damaged since export.py wrote the "
                         f"pair, and a model other than the one exported is refused, not run on the fixed-time "
                         f"fallback" + (f"; {hint}" if hint else ""))


def _check_file(path: Path, data: bytes, spec: dict) -> str | None:
    try:
        opset = onnx_opsets(data).get("", None)
    except ValueError as error:
        return f"model file {path} is not an ONNX model ({error})"
    if opset != spec.get("opset"):
        return f"model opset {opset} does not match the metadata's {spec.get('opset')}"
    return None


def check_signature(session, spec: dict) -> str | None:
    """What differs between the session's inputs/outputs (names, element types, static
    dimensions) and the metadata's; None if nothing does. The types too: a float ``action``
    passed the range check and was truncated to an action the model never chose, and an input
    of another type failed every inference instead of being named at load."""
    for kind, actual in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        expected = spec.get(kind, {})
        found = {arg.name: arg.shape for arg in actual}
        types = {arg.name: arg.type for arg in actual}
        if set(found) != set(expected):
            return f"model {kind} {sorted(found)} do not match the metadata's {sorted(expected)}"
        for name, entry in expected.items():
            static = [d if isinstance(d, int) else None for d in entry["shape"]]
            got = [d if isinstance(d, int) else None for d in found[name]]
            if static != got:
                return f"model {kind[:-1]} {name!r} has shape {found[name]}, the metadata says {entry['shape']}"
            # onnxruntime names float32 'float' ('tensor(float)'), int64 'int64' ('tensor(int64)')
            declared = {"float32": "tensor(float)"}.get(entry.get("dtype"), f"tensor({entry.get('dtype')})")
            if types[name] != declared:
                return f"model {kind[:-1]} {name!r} has type {types[name]}, the metadata says {entry.get('dtype')}"
    return None


def not_a_model(path: Path) -> str | None:
    """Why `path`, by its name, is not an exported model but a file given in its place, or None: the
    metadata JSON would be read as the model and as its own metadata (a checksum refusal that names no
    remedy); a checkpoint as a model whose metadata is missing."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return f"this is export.py's metadata; the model is the .onnx beside it ({path.with_suffix('.onnx').name})"
    if suffix in (".zip", ".pt"):
        return f"this is a train.py checkpoint; export it first: python export.py checkpoint={path}"
    return None


def load_session(path: Path, spec: dict, threads: int, metadata_path: str = "<metadata>", hint: str = ""):
    """(onnxruntime session, None), or (None, what is wrong) for the model file at `path` and
    the metadata's ``model`` entry `spec`; a `ModelError` where the file's SHA-256 is not the
    metadata's (`check_digest`)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, f"model file {path} unreadable ({error.strerror or error})"
    check_digest(path, data, spec, metadata_path, hint)
    problem = _check_file(path, data, spec)
    if problem:
        return None, problem
    try:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        return None, f"onnxruntime cannot load {path}: {error}"
    problem = check_signature(session, spec)
    return (None, problem) if problem else (session, None)


def recorded_feed(session, rows: dict) -> dict:
    """The session's inputs taken from recorded decision rows (`agents.deploy.simulated.record_decisions`),
    each in the dtype the model takes."""
    integer = ("phase", "intersection")
    return {arg.name: rows[arg.name].astype(np.int64 if arg.name in integer else np.float32)
            for arg in session.get_inputs()}


def infer(session, rows: np.ndarray, readings: Readings, num_actions: np.ndarray, deadline_s: float):
    """(actions [len(rows)], None), or (None, what went wrong) for the intersections `rows`:
    an inference error, an answer slower than `deadline_s`, or actions outside their range."""
    feed = {name: values[rows].astype(np.float32) for name, values in readings.lanes.items()}
    feed |= {
        "phase": readings.phase[rows].astype(np.int64),
        "time_in_phase": readings.time_in_phase[rows].astype(np.float32),
        "intersection": rows.astype(np.int64),
    }
    started = time.perf_counter()
    try:
        chosen = session.run(["action"], feed)[0]
    except Exception as error:  # onnxruntime's own exception types
        return None, f"inference failed: {error}"
    spent = time.perf_counter() - started
    if spent > deadline_s:
        return None, f"inference took {spent * 1e3:.2f} ms, over the {deadline_s * 1e3:g} ms deadline"
    chosen = np.asarray(chosen).reshape(-1)
    if chosen.shape != rows.shape or not ((chosen >= 0) & (chosen < num_actions[rows])).all():
        return None, f"inference returned actions {short(chosen)} outside the intersections' actions"
    return chosen, None
