"""What a run says about the tuned presets it uses (evaluate.py, train.py's baselines): one warning
line for a preset tuned on another scenario (or scenario.seed), naming both (transfer stays allowed: a
legitimate experiment), one naming each engine setting that differs from the one it was tuned under
(its value in the preset's record and in this run), and one for a preset written without a record
(before the tuner wrote one: what it was tuned under is unknown). The record: `read_record`.

A preset is used as ``controllers=[NAME_tuned]`` (the file for this run's scenario) or chosen as a
``controller`` group option, ``controller@controller_params.NAME=NAME_tuned_SCENARIO`` (or
``baseline_params``), which Hydra's ``runtime.choices`` name; options named otherwise are not tuned presets.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from agents.classical.tuned_presets import (
    PRESET_DIR, TUNED_SUFFIX, base_controller, preset_path, read_record, record_differences, shown_path, tuned_on,
)
from agents.ppo.config import engine_params
from agents.ppo.run_messages import say

PARAMS_NODES = ("controller_params", "baseline_params")


def presets_used(cfg: DictConfig, choices: dict, built: list[str]) -> dict[str, Path]:
    """{what chose it: the preset file} for the tuned presets of the controllers in `built`."""
    used = {name: preset_path(base_controller(name), str(cfg.scenario.name)) for name in built
            if base_controller(name) is not None}
    for key, option in choices.items():
        group, _, package = key.partition("@")
        node, _, name = package.partition(".")
        if group == "controller" and node in PARAMS_NODES and name in built and option \
                and str(option).startswith(f"{name}{TUNED_SUFFIX}_"):
            used[package] = PRESET_DIR / f"{option}.yaml"
    return {label: path for label, path in used.items() if path.is_file()}  # a missing one is refused elsewhere


def check_tuned_presets(cfg: DictConfig, built: list[str], choices: dict | None = None) -> list[dict]:
    """Say the warnings above for the presets of `built` and return, per preset, what a run's results
    record: ``{"chosen_by", "preset", "tuned_under" (None: not recorded), "other_scenario", "engine_differs"}``.
    `choices`: Hydra's ``runtime.choices`` (read from the running Hydra app when not given)."""
    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    scenario, seed = str(cfg.scenario.name), int(cfg.scenario.seed)
    engine = asdict(engine_params(cfg))
    notes = []
    for label, path in presets_used(cfg, choices, built).items():
        record, shown = read_record(path), f"{label} (preset {shown_path(path)})"
        note = {"chosen_by": label, "preset": shown_path(path), "tuned_under": record, "other_scenario": None,
                "engine_differs": None}
        notes.append(note)
        if record is None:
            say(f"warning: {shown} does not record the scenario and engine settings it was tuned under (written "
                f"before presets recorded them): they are unknown; tuning it again records them")
            continue
        other, differ = record_differences(record, scenario, seed, engine)
        note["other_scenario"], note["engine_differs"] = other, {k: list(v) for k, v in differ.items()}
        if other:
            say(f"warning: {shown} was tuned on {tuned_on(str(record['scenario']), record['scenario_seed'])}, "
                f"this run is on {tuned_on(scenario, seed)}")
        if differ:
            say(f"warning: {shown} was tuned under other engine settings: " + ", ".join(
                f"engine.{key} {_shown(was)} in the preset, {_shown(now)} in this run" for key, (was, now) in
                differ.items()))
    return notes


def _shown(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


__all__ = ["check_tuned_presets", "presets_used"]
