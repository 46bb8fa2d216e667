"""Tuned parameters as controllers of their own: ``sotl_tuned`` is SOTL with the parameters that
``python -m agents.classical.tune controller=sotl scenario=S`` wrote for scenario S into
``configs/controller/sotl_tuned_S.yaml``. evaluate.py accepts such names in ``controllers=[...]``
beside the untuned ones, so one table (and one batched simulation) holds both.

A preset records what it was tuned under in one comment line, ``# tuned_under: {JSON}`` (the scenario,
its ``scenario.seed``, null for a scenario with its own files, which reads none (presets written before
recorded 0 there, read alike), and the engine settings, `EngineParams`' fields): a comment, as the file is a
``controller`` group option whose keys are the controller's parameters only. `read_record` reads it
back; `record_differences` says what a run does otherwise (agents/ppo/tuned_preset_checks.py warns)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from omegaconf import OmegaConf

from envs.errors import ConfigError
from envs.scenario.registry import PROJECT_ROOT

TUNED_SUFFIX = "_tuned"
PRESET_DIR = PROJECT_ROOT / "configs" / "controller"
RECORD_PREFIX = "# tuned_under: "
RECORD_KEYS = ("scenario", "scenario_seed", "engine")
UNRECORDED = "(not recorded)"  # an engine setting the preset's record or the run lacks


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


def record_line(scenario: str, scenario_seed: int | None, engine: dict) -> str:
    """The preset's comment line recording what it was tuned under (`engine`: EngineParams' fields)."""
    return RECORD_PREFIX + json.dumps({"scenario": scenario, "scenario_seed": scenario_seed, "engine": engine})


def read_record(path: Path) -> dict | None:
    """The ``tuned_under`` record of the preset at `path`; None for a preset written without one (before
    the tuner recorded it). A record that does not parse is a ConfigError naming the file."""
    lines = [line for line in Path(path).read_text().splitlines() if line.startswith(RECORD_PREFIX)]
    if not lines:
        return None
    text = lines[0][len(RECORD_PREFIX):]
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(str(path), "tuned_under", text, f"not JSON: {error.msg}") from None
    if not isinstance(record, dict) or sorted(record) != sorted(RECORD_KEYS) or not isinstance(record["engine"], dict):
        raise ConfigError(str(path), "tuned_under", text,
                          f"expected a mapping of {list(RECORD_KEYS)}, its engine a mapping")
    seed = record["scenario_seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(str(path), "tuned_under.scenario_seed", seed, "must be an integer >= 0, or null for a "
                          "scenario with its own files")
    return record


def seed_read(scenario: str, scenario_seed: int | None) -> int | None:
    """`scenario_seed` where `scenario` draws its demand from it (a generated preset), else None: a
    dataset, SUMO scenario or path reads none (a record written before said 0 for them)."""
    from envs.scenario import reads_seed  # (it imports torch: only when asked)

    return None if scenario_seed is None or not reads_seed(scenario) else int(scenario_seed)


def tuned_on(scenario: str, scenario_seed: int | None) -> str:
    """The scenario as a message names it: with its ``scenario.seed`` where it reads one."""
    seed = seed_read(scenario, scenario_seed)
    return scenario if seed is None else f"{scenario} (scenario.seed {seed})"


def record_differences(record: dict, scenario: str, scenario_seed: int, engine: dict) -> tuple[bool, dict]:
    """(whether the run's scenario or its seed is not the preset's, {engine key: (preset's value, run's)}
    for each engine setting that differs; a setting one side lacks shows `UNRECORDED` there). A seed counts
    only where the scenario reads one: a preset of a dataset recording 0 or null is that dataset's."""
    recorded = str(record["scenario"])
    other_scenario = (scenario_key(recorded) != scenario_key(scenario)
                      or (seed_read(scenario, scenario_seed) is not None
                          and seed_read(recorded, record["scenario_seed"]) != seed_read(scenario, scenario_seed)))
    tuned = record["engine"]
    keys = list(tuned) + [key for key in engine if key not in tuned]
    return other_scenario, {key: (tuned.get(key, UNRECORDED), engine.get(key, UNRECORDED)) for key in keys
                            if tuned.get(key, UNRECORDED) != engine.get(key, UNRECORDED)}
