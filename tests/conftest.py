"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envs.scenario import registry

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def datasets_dir() -> Path:
    """The CityFlow dataset directory; skips locally when absent, fails under CI (which has it)."""
    directory = registry.data_dir()
    if directory is not None and directory.is_dir():
        return directory
    if os.environ.get("CI", "").lower() == "true":
        looked_at = directory or registry.DEFAULT_DATA_DIR
        pytest.fail(
            f"CI=true but the dataset directory is missing (looked at {looked_at}); "
            f"CI must provide ../shared/datasets or set {registry.DATA_DIR_ENV}"
        )
    pytest.skip("../shared/datasets not found; set GRIDLIGHT_DATA_DIR to run dataset tests")
