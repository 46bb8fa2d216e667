"""Command-line overrides that Hydra's composition would answer with a traceback or ignore: one
into a config node that the chosen group option leaves null, a run directory that is a file or
given to a sweep, a launcher whose plugin (an optional extra) is not installed or, for SLURM's, whose
``srun`` is not on this machine, and a scenario path
given to the ``scenario`` group instead of ``scenario.name``; and (agents/ppo/typed_overrides.py) a
value of a type its key does not take.

``perturbation=clean`` (train.py's and evaluate.py's default) leaves ``perturbation.incidents``,
``.surge`` and ``.detectors`` null; an override of one of them or a key inside
(``perturbation.incidents.count=3``) made OmegaConf fail inside Hydra's composition, a traceback
before any of gridlight's checks ran. This check runs on the command line first and
names the override and the options that set the node.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import yaml

from agents.ppo.schema import parameters
from agents.ppo.typed_overrides import check_typed_overrides
from envs.errors import ConfigError
from envs.incidents.perturbation_specs import Perturbation
from envs.scenario.own_files import looks_like_path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LAUNCHER_EXTRAS = {"hydra_plugins.hydra_ray_launcher": "ray"}  # plugin package -> pyproject extra
GROUP = "perturbation"
NULLABLE = tuple(f.name for f in parameters(Perturbation) if f.default is None)  # incidents, surge, detectors


def _overrides(argv: list[str]) -> list[tuple[str, str]]:
    return [(key, value) for key, eq, value in (item.lstrip("+~").partition("=") for item in argv
                                                 if not item.startswith("-")) if eq]


def _default_option(primary: str) -> str | None:
    """The group's option in ``configs/<primary>.yaml``'s defaults list."""
    defaults = (yaml.safe_load((CONFIGS / f"{primary}.yaml").read_text()) or {}).get("defaults", [])
    return next((entry[GROUP] for entry in defaults if isinstance(entry, dict) and GROUP in entry), None)


def check_overrides_into_null_nodes(argv: list[str], primary: str) -> None:
    """ConfigError for the first override of `argv` into a node that the group option chosen
    (on the command line, else in ``configs/<primary>.yaml``) leaves null."""
    overrides = _overrides(argv)
    option = next((value for key, value in reversed(overrides) if key == GROUP), _default_option(primary))
    options = {path.stem: yaml.safe_load(path.read_text()) or {} for path in sorted((CONFIGS / GROUP).glob("*.yaml"))}
    if option not in options:  # unknown or a sweep (incident,surge): Hydra's own checks answer
        return
    for key, value in overrides:
        parts = key.split(".")
        if len(parts) >= 2 and parts[0] == GROUP and parts[1] in NULLABLE and options[option].get(parts[1]) is None:
            setting = " | ".join(name for name, node in options.items() if node.get(parts[1]) is not None)
            raise ConfigError("<config>", key, value, f"{GROUP}={option} leaves {GROUP}.{parts[1]} null: choose "
                              f"{GROUP}={setting} first")


def check_run_dir(argv: list[str]) -> None:
    """ConfigError when ``hydra.run.dir`` or ``hydra.sweep.dir`` names an existing file or a path
    under one (Hydra's FileExistsError / NotADirectoryError traceback), or ``hydra.run.dir`` is
    given to a sweep (``-m``), which writes under ``hydra.sweep.dir`` and never read it."""
    sweep = any(item in ("-m", "--multirun") for item in argv)
    for key, value in _overrides(argv):
        if key == "hydra.run.dir" and sweep:
            raise ConfigError("<config>", key, value, "a sweep (-m) does not read it: its runs go under "
                              "hydra.sweep.dir (default outputs/multirun/DATE/TIME/<job number>)")
        if key in ("hydra.run.dir", "hydra.sweep.dir"):
            path = Path(value)
            file = next((p for p in (path, *path.parents) if p.exists()), None)
            if file is not None and not file.is_dir():
                where = "" if file == path else f"{file} "
                raise ConfigError("<config>", key, value,
                                  f"{where}is a file: the run directory must be a folder or a new path")


def check_launcher(argv: list[str]) -> None:
    """ConfigError when ``hydra/launcher=X`` names a launcher whose plugin is not installed (Hydra's
    "Unknown plugin class" traceback), naming the extra that installs it, or the SLURM one on a
    machine without ``srun`` (submitit's RuntimeError traceback)."""
    for key, value in _overrides(argv):
        path = CONFIGS / "hydra" / "launcher" / f"{value}.yaml"
        if key != "hydra/launcher" or not path.is_file():
            continue  # an unknown option: Hydra's own error lists the options
        config = yaml.safe_load(path.read_text()) or {}
        if "submitit_slurm" in config.get("defaults", []) and shutil.which("srun") is None:  # submitit's traceback
            raise ConfigError("<config>", key, value, "no srun on this machine: launch the sweep from a SLURM "
                              "login node (hydra/launcher=submitit_local_jobs tries it here)")
        target = config.get("_target_", "")
        module = target.rpartition(".")[0]
        try:
            found = importlib.util.find_spec(module) is not None if module else True
        except ModuleNotFoundError:
            found = False
        if not found:
            extra = next((name for package, name in LAUNCHER_EXTRAS.items() if module.startswith(package)), None)
            how = f"pip install -e '.[{extra}]'" if extra else f"install the package that provides {module}"
            raise ConfigError("<config>", key, value, f"its plugin {module} is not installed: {how}")


def check_scenario_option(argv: list[str]) -> None:
    """ConfigError when ``scenario=X`` (the group, which picks a registered scenario's file) is given
    a path: Hydra answered "Could not find 'scenario//data/my_city'" with the options, never saying
    that a path goes in ``scenario.name=``."""
    for key, value in _overrides(argv):
        if key == "scenario" and not (CONFIGS / "scenario" / f"{value}.yaml").is_file() and looks_like_path(value):
            raise ConfigError("<config>", key, value, f"scenario= picks a registered scenario (configs/scenario/); "
                              f"one's own network is given by path as scenario.name={value}")


def check_command_line(argv: list[str], primary: str) -> None:
    """Every check of this module on `argv`, for ``configs/<primary>.yaml``'s script."""
    check_scenario_option(argv)
    check_overrides_into_null_nodes(argv, primary)
    check_typed_overrides(argv, primary)  # after: a key under a null node is refused naming the group first
    check_run_dir(argv)
    check_launcher(argv)
