"""Tuned parameters as controllers of their own: ``sotl_tuned`` is SOTL with the parameters that
``python -m agents.classical.tune controller=sotl scenario=S`` wrote for scenario S into
``configs/controller/sotl_tuned_S.yaml``. evaluate.py accepts such names in ``controllers=[...]``
beside the untuned ones, so one table (and one batched simulation) holds both."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from omegaconf import OmegaConf

from envs.errors import ConfigError
from envs.scenario.registry import PROJECT_ROOT

TUNED_SUFFIX = "_tuned"
PRESET_DIR = PROJECT_ROOT / "configs" / "controller"


def scenario_key(scenario: str) -> str:
    """`scenario` as a preset's file name holds it: a registered name as it is; one given by path
    (`envs.scenario.own_files`) as ``path_`` and the words of its absolute path (``/home/me/city`` ->
    ``path_home_me_city``), so a relative path and its absolute form find the same preset."""
    from envs.scenario import given_by_path  # (it imports torch: only when asked)

    if not given_by_path(scenario):
        return scenario
    return "path_" + re.sub(r"[^A-Za-z0-9]+", "_", str(Path(scenario).expanduser().resolve())).strip("_")


def preset_path(controller: str, scenario: str) -> Path:
    """Where the tuner writes (and this module reads) `controller`'s preset for `scenario`."""
    return PRESET_DIR / f"{controller}{TUNED_SUFFIX}_{scenario_key(scenario)}.yaml"


def tune_command(controller: str, scenario: str) -> str:
    """The command that tunes `controller` for `scenario`, quoted for a shell (a path with a space
    was cut there, so the command a message suggested failed)."""
    return f"python -m agents.classical.tune controller={controller} {shlex.quote(f'scenario={scenario}')}"


def base_controller(name: str) -> str | None:
    """``"sotl"`` for ``"sotl_tuned"``; None for a name without the suffix."""
    return name[: -len(TUNED_SUFFIX)] if name.endswith(TUNED_SUFFIX) else None


def shown_path(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def tuned_params(name: str, scenario: str, source: str = "<config>") -> dict:
    """The parameters of controller `name` (``<controller>_tuned``) tuned for `scenario`: the
    preset's fields, which override the controller class's defaults."""
    from agents.classical.tuning import SEARCH_SPACES  # (it imports the engine: only when asked)

    base = base_controller(name)
    path = preset_path(base or name, scenario)
    if base not in SEARCH_SPACES:  # the tune command refuses it too
        raise ConfigError(source, "controllers", name, f"only {', '.join(sorted(SEARCH_SPACES))} are tuned (as "
                          f"<name>_tuned: {tune_command('NAME', scenario)})")
    if not path.is_file():
        raise ConfigError(
            source, "controllers", name,
            f"no tuned preset {shown_path(path)} for scenario {scenario!r}; write one with "
            f"{tune_command(base or name, scenario)}",
        )
    preset = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if preset.get("defaults", [None])[0] != base:
        raise ConfigError(str(path), "defaults", preset.get("defaults"), f"a {name} preset must start from {base!r}")
    return {key: value for key, value in preset.items() if key != "defaults"}
