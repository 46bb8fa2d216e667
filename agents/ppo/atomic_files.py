"""Files a killed run must never leave half-written: checkpoints, progress.csv, summaries,
exported models. Each is written to a temporary file in the same directory, flushed, then
renamed over the old one (`os.replace` is atomic on one file system), so a reader, or a resumed
run, sees the old file or the new one, never a torn one; SIGINT, SIGTERM or ``kill -9`` at any
moment keeps the last complete file.

``GRIDLIGHT_SLOW_WRITES_S`` (tests only) sleeps that long between writing the temporary file and
the rename, so a test can kill a run in the middle of a write deterministically
(tests/test_reliability_training.py).

Also the random state a resumed run continues from (`rng_state` / `set_rng_state`): torch (CPU
and CUDA), numpy's global generator and Python's `random`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import random
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

SLOW_WRITES_ENV = "GRIDLIGHT_SLOW_WRITES_S"


def process_umask() -> int:
    """This process's umask. Linux shows it in /proc/self/status; elsewhere it can only be read
    by setting it, which another thread could observe for an instant."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed over `path` when the block succeeds,
    removed when it fails (the old file stays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial" + path.suffix, dir=path.parent)
    partial = Path(name)
    with os.fdopen(handle, "wb") as created:  # closed whatever happens
        # mkstemp makes the file 0600; give it what a plain open() would, so results and models
        # are as readable as the plots beside them (a file system without modes keeps 0600)
        with contextlib.suppress(OSError):
            os.fchmod(created.fileno(), 0o666 & ~process_umask())
    try:
        yield partial
        with open(partial, "rb+") as written:  # on disk before it takes the name
            os.fsync(written.fileno())
        delay = float(os.environ.get(SLOW_WRITES_ENV, "0") or 0)
        if delay > 0:
            time.sleep(delay)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as partial:
        partial.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_csv_atomic(path: str | Path, keys: list[str], rows: list[dict]) -> Path:
    """The whole table, rewritten (progress files are small: one row per rollout)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, restval="")
    writer.writeheader()
    # an undefined figure (NaN: a mean over no finished trip) is an empty cell, as in evaluate.py's
    # metrics.csv, not 'nan', which read as a value
    writer.writerows({key: "" if _undefined(value) else value for key, value in row.items()} for row in rows)
    return write_text_atomic(path, out.getvalue())


def _undefined(value) -> bool:
    # np.floating too: SB3 records train/approx_kl as np.float32, no float subclass (np.float64 is one);
    # the TorchRL trainer's values are Python floats (one .tolist()), no tensor reaches here
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def defined_scalars(values: dict) -> dict:
    """`values` without the undefined (NaN) ones: TensorBoard gets no point where progress.csv has an
    empty cell."""
    return {key: value for key, value in values.items() if not _undefined(value)}


STEP_COLUMN = "time/total_timesteps"  # progress.csv's agent-step column (both trainers, as SB3's)


def purge_step(resumed_at: int | None) -> int | None:
    """TensorBoard's purge step for a run resumed at `resumed_at` agent-steps: the points an earlier
    run wrote into the folder past its checkpoint (a run killed after it) are hidden, as
    progress.csv drops their rows; without it TensorBoard showed two points at those steps."""
    return None if resumed_at is None else resumed_at + 1


def earlier_progress(path: str | Path, resumed_at: int) -> tuple[list[str], list[dict]]:
    """The columns and rows of a progress.csv already in a resumed run's folder, up to the
    checkpoint's `resumed_at` agent-steps, for the resumed run's log to continue (it rewrites the
    whole file on every dump). Rows past the checkpoint are the steps the resumed run trains
    again; they give way to the new rows. No file: nothing to continue."""
    path = Path(path)
    if not path.is_file():
        return [], []
    with open(path, newline="") as table:
        reader = csv.DictReader(table)
        rows = [row for row in reader if not _past(row.get(STEP_COLUMN), resumed_at)]
        return list(reader.fieldnames or []), rows


def last_row_step(rows: list[dict]) -> int | None:
    """The agent-step of the last of `rows` (progress.csv's, as read back or as written), None
    without one: a resumed run's first dump at its checkpoint's step goes into that row."""
    try:
        return int(float(rows[-1][STEP_COLUMN]))
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def _past(step: str | None, resumed_at: int) -> bool:
    try:
        return float(step) > resumed_at
    except (TypeError, ValueError):  # no step in the row: it cannot be placed, so it is kept
        return False


def rng_state() -> dict:
    """Every random generator training draws from, to be saved with a checkpoint."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Continue from a checkpoint's `rng_state` (CUDA states only where this machine has as many
    devices)."""
    # the states are CPU byte tensors; a checkpoint read with map_location on a GPU moved them there
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


__all__ = ["SLOW_WRITES_ENV", "atomic_path", "defined_scalars", "process_umask", "rng_state", "set_rng_state",
           "write_bytes_atomic", "write_csv_atomic", "write_text_atomic"]
