"""Shared fixtures."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import torch

from envs.scenario import registry

REPO_ROOT = Path(__file__).resolve().parents[1]
# Under pytest-xdist (`make test` runs one worker per core) each worker takes its share of the
# cores, so the workers' torch threads do not oversubscribe the machine.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _WORKERS))

# A shell starts a background job (`make test &` in a script) with SIGINT ignored, and the
# processes it runs inherit that: Ctrl-C would then raise nothing, and the tests of what Ctrl-C
# does in a training run (in this process and in the runs they start) would fail for the way
# pytest was launched. Python's own Ctrl-C handler restores what an interactive run has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# the devices the device-touching tests run on: always the CPU, CUDA where this machine has it
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def root_logger_restored():
    """The root logger's handlers and level as they were before the test: a Hydra app run in this
    process (runpy of train.py or export.py) configures it with a console handler on the test's captured
    stream, closed when the test ends, and every later record (a service thread's) printed
    '--- Logging error --- ... I/O operation on closed file'. pytest's own capture handlers are its to manage."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each device of `DEVICES` in turn (a test taking it runs once per device)."""
    return request.param


@pytest.fixture
def datasets_dir() -> Path:
    """The CityFlow dataset directory; skips locally when absent, fails under CI (which has it)."""
    return find_datasets_dir()


def find_datasets_dir() -> Path:
    """`registry.data_dir()` where it is a directory; else a skip (a failure under CI=true) naming
    the directory looked at and where that came from: $GRIDLIGHT_DATA_DIR, or the default."""
    directory = registry.data_dir()
    if directory is not None and directory.is_dir():
        return directory
    if os.environ.get(registry.DATA_DIR_ENV):
        missing = f"{registry.DATA_DIR_ENV}={os.environ[registry.DATA_DIR_ENV]} is not a directory"
        remedy = f"point {registry.DATA_DIR_ENV} at the datasets (or unset it to use {registry.DEFAULT_DATA_DIR})"
    else:
        missing = f"{registry.DEFAULT_DATA_DIR} not found and {registry.DATA_DIR_ENV} not set"
        remedy = f"set {registry.DATA_DIR_ENV}=/path/to/datasets"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but no dataset directory: {missing}; {remedy}")
    pytest.skip(f"no dataset directory: {missing}; {remedy} to run the dataset tests")


@pytest.fixture(scope="session")
def uneven(tmp_path_factory):
    """The uneven grid's untrained policy, exported once for every deployment test file."""
    from tests.deploy_fixtures import exported_uneven

    return exported_uneven(tmp_path_factory)


@pytest.fixture(scope="module", params=[5, 20])
def interval_model(uneven, tmp_path_factory, request):
    """That export's model file, its decisions 5 s apart (min green, as exported) or 20 s (more
    than min green and the clearance: a change can fall due within one interval of another)."""
    from tests.deploy_fixtures import with_decision_interval

    return with_decision_interval(uneven[1]["shared"], tmp_path_factory, request.param)


@pytest.fixture
def model_copy(uneven, tmp_path):
    """A copy of that export that a test may damage."""
    from tests.deploy_fixtures import copy_model

    return copy_model(uneven[1], tmp_path)
