"""Short scenario names -> CityFlow dataset folders under the shared data directory.

The data lives outside the repository (``../shared/datasets`` next to the checkout by default);
`data_dir` finds it, `dataset_paths` turns a short name into the two files the loader reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from envs.errors import ConfigError
from envs.scenario.cityflow import FLOW_FILE, ROADNET_FILE

DATA_DIR_ENV = "GRIDLIGHT_DATA_DIR"
DATA_DIR_CONFIG_KEY = "scenario.data_dir"

# envs/scenario/registry.py -> the directory holding pyproject.toml
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "datasets"

_REGISTRY_SOURCE = "<dataset registry>"

DATASETS: dict[str, str] = {
    "hangzhou_4x4": "anon_4_4_hangzhou_real",
    "hangzhou_4x4_5734": "anon_4_4_hangzhou_real_5734",
    "hangzhou_4x4_5816": "anon_4_4_hangzhou_real_5816",
    "jinan_3x4": "anon_3_4_jinan_real",
    "jinan_3x4_2000": "anon_3_4_jinan_real_2000",
    "jinan_3x4_2500": "anon_3_4_jinan_real_2500",
    "newyork_16x3": "anon_16_3_newyork_real",
    "syn_4x4_gaussian": "syn_4x4_gaussian_500_1h",
    "syn_1x1_uniform_800": "syn_1x1_uniform_800_1h",
    "syn_1x1_uniform_1600": "syn_1x1_uniform_1600_1h",
    "syn_1x1_uniform_2400": "syn_1x1_uniform_2400_1h",
    "grid_3x3_bi": "anon_3_3_300_0.3_bi",
    "grid_6x6_bi": "anon_6_6_300_0.3_bi",
    "grid_6x6_uni": "anon_6_6_300_0.3_uni",
}


# SUMO scenarios (envs/scenario/sumo): name -> folder under the data directory, holding one
# .sumocfg with its .net.xml and .rou.xml
SUMO_DATASETS: dict[str, str] = {
    **{f"resco_{name}": f"sumo/resco/{name}" for name in (
        "cologne1", "cologne3", "cologne8", "ingolstadt1", "ingolstadt7", "ingolstadt21",
        "grid4x4", "arterial4x4")},
    "manhattan_28x7": "sumo/manhattan_28x7",
}


def known_sumo_datasets() -> list[str]:
    return sorted(SUMO_DATASETS)


def sumo_folder(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder of the SUMO scenario called `name` (checked to exist)."""
    root = _resolve_data_dir(data_dir)
    directory = root / SUMO_DATASETS[name]
    if not directory.is_dir():
        raise ConfigError(
            _REGISTRY_SOURCE, DATA_DIR_CONFIG_KEY, str(directory),
            f"SUMO scenario {name!r} not found: no folder {directory} "
            f"(searched data directory {root}); {_how_to_set_data_dir()}",
        )
    return directory


def data_dir(override: str | Path | None = None) -> Path | None:
    """The dataset directory: `override`, else $GRIDLIGHT_DATA_DIR, else ../shared/datasets.

    An explicit override or environment value is returned even if it does not exist, so that the
    error raised later names the directory the user asked for. None means nothing was configured
    and the default location is absent.
    """
    return _locate_data_dir(override)


def _locate_data_dir(override: str | Path | None) -> Path | None:
    # Separate from `data_dir` because dataset_paths/available_datasets take a parameter of that
    # name, which hides the public function inside them.
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    if DEFAULT_DATA_DIR.is_dir():
        return DEFAULT_DATA_DIR
    return None


def known_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_paths(name: str, data_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(roadnet.json, flow.json) of the dataset called `name`."""
    folder = DATASETS.get(name)
    if folder is None:
        raise ConfigError(
            _REGISTRY_SOURCE,
            "scenario.name",
            name,
            f"unknown dataset; known datasets: {', '.join(known_datasets())}",
        )
    root = _resolve_data_dir(data_dir)
    directory = root / folder
    roadnet, flow = directory / ROADNET_FILE, directory / FLOW_FILE
    missing = [path.name for path in (roadnet, flow) if not path.is_file()]
    if missing:
        raise ConfigError(
            _REGISTRY_SOURCE,
            DATA_DIR_CONFIG_KEY,
            str(directory),
            f"dataset {name!r} not found: {', '.join(missing)} missing in {directory} "
            f"(searched data directory {root}); {_how_to_set_data_dir()}",
        )
    return roadnet, flow


def available_datasets(data_dir: str | Path | None = None) -> list[str]:
    """Known datasets whose two files are present in the data directory."""
    root = _locate_data_dir(data_dir)
    if root is None:
        return []
    return [
        name
        for name in known_datasets()
        if (root / DATASETS[name] / ROADNET_FILE).is_file()
        and (root / DATASETS[name] / FLOW_FILE).is_file()
    ]


def _resolve_data_dir(override: str | Path | None) -> Path:
    root = _locate_data_dir(override)
    if root is None:
        raise ConfigError(
            _REGISTRY_SOURCE,
            DATA_DIR_CONFIG_KEY,
            None,
            f"no dataset directory: {DEFAULT_DATA_DIR} does not exist "
            f"and {DATA_DIR_ENV} is not set; " + _how_to_set_data_dir(),
        )
    return root


def _how_to_set_data_dir() -> str:
    return (
        f"set the environment variable {DATA_DIR_ENV}=/path/to/datasets "
        f"or the config key {DATA_DIR_CONFIG_KEY}"
    )
