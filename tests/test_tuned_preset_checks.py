"""A tuned preset records what it was tuned under (scenario, scenario.seed, engine settings), the tuner
honours engine.FIELD= and refuses the engine keys it cannot honour, and a run that uses a preset tuned on
another scenario or under other engine settings says so in one warning line each, and records it in
evaluate.py's summary.json."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

import agents.classical.tune as tune_cli
import agents.ppo.tuned_preset_checks as checks
import evaluate
from agents.classical.tuned_presets import PRESET_DIR, read_record, record_line
from envs.engine.state import EngineParams
from envs.errors import ConfigError
from envs.scenario.presets import PRESETS
from tests.minimal_scenario import assert_names_everything
from tests.test_evaluate import evaluate_config

COMMITTED = sorted(PRESET_DIR.glob("*_tuned_*.yaml"))
DEFAULT_ENGINE = asdict(EngineParams())


def test_the_tuner_runs_every_trial_under_the_engine_settings_given_and_the_preset_records_them(tmp_path, monkeypatch):
    ran = []
    real = tune_cli.tune
    monkeypatch.setattr(tune_cli, "tune", lambda *a: ran.append(a[4]) or real(*a))
    out = tmp_path / "max_pressure_tuned_grid_1x1.yaml"
    tune_cli.main(["controller=max_pressure", "scenario=grid_1x1", "trials=1", "random_trials=1", "seeds=1",
                   "steps=30", "threads=1", "engine.min_green_s=7", "engine.junction_yielding=true", f"out={out}"])
    assert ran == [EngineParams(min_green_s=7, junction_yielding=True)]  # was EngineParams() whatever was asked
    assert read_record(out) == {"scenario": "grid_1x1", "scenario_seed": 0,
                                "engine": {**DEFAULT_ENGINE, "min_green_s": 7, "junction_yielding": True}}
    use = next(line for line in out.read_text().splitlines() if line.startswith("# Use:"))
    assert "python evaluate.py scenario=grid_1x1 engine.min_green_s=7 engine.junction_yielding=true " in use


@pytest.mark.parametrize("argument, reason", [
    ("engine.device=cuda", "not an engine setting the tuner reads"),  # it runs on the CPU: refused, not ignored
    ("engine.compile=true", "not an engine setting the tuner reads"),
    ("engine.yellow_s=abc", "must be an integer >= 0"),
])
def test_an_engine_key_the_tuner_cannot_honour_is_refused_naming_it(argument, reason):
    with pytest.raises(ConfigError, match=reason) as refused:
        tune_cli.main(["controller=sotl", "scenario=grid_1x1", argument])
    key, _, value = argument.partition("=")
    assert_names_everything(refused.value, "<tune>", key, value)


def test_the_tuner_tunes_on_the_scenario_seed_given_and_the_preset_records_it(tmp_path, monkeypatch):
    seeds = []
    real = tune_cli.tune
    monkeypatch.setattr(tune_cli, "tune", lambda *a: seeds.append(a[2].info["seed"]) or real(*a))
    out = tmp_path / "max_pressure_tuned_grid_1x1.yaml"
    tune_cli.main(["controller=max_pressure", "scenario=grid_1x1", "scenario.seed=3", "trials=1", "random_trials=1",
                   "seeds=1", "steps=30", "threads=1", f"out={out}"])
    assert seeds == [3]  # was always the seed-0 demand of a generated scenario
    assert read_record(out)["scenario_seed"] == 3
    use = next(line for line in out.read_text().splitlines() if line.startswith("# Use:"))
    assert "python evaluate.py scenario=grid_1x1 scenario.seed=3 controller@" in use


@pytest.mark.parametrize("argv, value, says", [
    (["scenario=grid_1x1", "scenario.seed=-1"], -1, "must be an integer >= 0"),
    (["scenario=grid_1x1", "scenario.seed=abc"], "abc", "must be an integer"),
    (["scenario=grid_1x1", "scenario.seed="], "", "empty"),
    # as train.py and evaluate.py refuse it: a dataset, a SUMO scenario or one's own files ignored it
    (["scenario=hangzhou_4x4", "scenario.seed=3"], 3, "only a generated preset draws its demand from it; "
                                                      "'hangzhou_4x4' has its own files"),
    (["scenario=resco_cologne1", "scenario.seed=1"], 1, "'resco_cologne1' has its own files"),
])
def test_a_scenario_seed_the_tuner_cannot_use_is_refused_naming_it_before_loading_anything(argv, value, says,
                                                                                            capsys):
    with pytest.raises(ConfigError, match=re.escape(says)) as refused:
        tune_cli.main(["controller=sotl", *argv, "out=/nonexistent/never.yaml"])
    assert_names_everything(refused.value, "<tune>", "scenario.seed", value)
    assert capsys.readouterr().out == ""


def test_a_scenario_with_its_own_files_records_no_seed(tmp_path, monkeypatch):
    """A dataset, a SUMO scenario or one's own files ignore scenario.seed: the record said 0 all the same."""
    from envs.scenario.cityflow import write_cityflow
    from envs.scenario.presets import PRESETS

    roadnet, flow, _ = PRESETS["grid_1x1"](0)
    write_cityflow(tmp_path / "city", roadnet, flow)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "preset.yaml"
    tune_cli.main(["controller=max_pressure", "scenario=city", "trials=1", "random_trials=1", "seeds=1", "steps=30",
                   "threads=1", f"out={out}"])
    assert read_record(out)["scenario_seed"] is None


@pytest.mark.parametrize("seed", [0, None], ids=["old record: 0", "null"])
def test_a_dataset_preset_recording_seed_0_or_null_is_its_scenarios_and_another_scenario_is_named_without_it(
        seed, tmp_path, monkeypatch, capsys):
    preset = tmp_path / "sotl_tuned_hangzhou_4x4.yaml"
    preset.write_text(record_line("hangzhou_4x4", seed, DEFAULT_ENGINE) + "\ndefaults:\n  - sotl\n  - _self_\n")
    monkeypatch.setattr(checks, "PRESET_DIR", tmp_path)
    choice = {"controller@controller_params.sotl": "sotl_tuned_hangzhou_4x4"}
    notes = checks.check_tuned_presets(evaluate_config("scenario=hangzhou_4x4"), ["sotl"], choice)
    assert _said(capsys) == [] and notes[0]["other_scenario"] is False  # was a TypeError for null
    checks.check_tuned_presets(evaluate_config("scenario=grid_4x4", "scenario.seed=2"), ["sotl"], choice)
    assert _said(capsys) == [f"warning: controller_params.sotl (preset {preset}) was tuned on hangzhou_4x4, this run "
                             "is on grid_4x4 (scenario.seed 2)"]


@pytest.mark.parametrize("seed", [-1, True, "3", 2.5])
def test_a_recorded_scenario_seed_that_is_no_seed_is_refused_naming_the_file(seed, tmp_path):
    preset = tmp_path / "sotl_tuned_grid_4x4.yaml"
    preset.write_text(record_line("grid_4x4", seed, DEFAULT_ENGINE) + "\n")
    with pytest.raises(ConfigError, match="an integer >= 0, or null") as refused:
        read_record(preset)
    assert_names_everything(refused.value, str(preset), "tuned_under.scenario_seed", seed)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_each_committed_preset_records_its_scenario_and_the_default_engine(path):
    # tuned before presets recorded it, by a tuner that always ran EngineParams() on scenario seed 0; a
    # scenario with its own files (a dataset, SUMO's Manhattan) reads no seed: null
    scenario = path.stem.split("_tuned_")[1]
    assert read_record(path) == {"scenario": scenario, "scenario_seed": 0 if scenario in PRESETS else None,
                                 "engine": DEFAULT_ENGINE}


def _said(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]


def test_a_preset_of_another_scenario_warns_naming_both_and_one_of_this_scenario_says_nothing(capsys):
    cfg = evaluate_config("scenario=grid_4x4", "controller@controller_params.sotl=sotl_tuned_grid_16x8")
    notes = checks.check_tuned_presets(cfg, ["sotl"], {"controller@controller_params.sotl": "sotl_tuned_grid_16x8"})
    assert _said(capsys) == ["warning: controller_params.sotl (preset configs/controller/sotl_tuned_grid_16x8.yaml) "
                             "was tuned on grid_16x8 (scenario.seed 0), this run is on grid_4x4 (scenario.seed 0)"]
    assert notes[0]["other_scenario"] is True and notes[0]["engine_differs"] == {}
    checks.check_tuned_presets(cfg, ["sotl"], {"controller@controller_params.sotl": "sotl_tuned_grid_4x4"})
    checks.check_tuned_presets(cfg, ["max_pressure"], {"controller@controller_params.sotl": "sotl_tuned_grid_16x8"})
    assert _said(capsys) == []  # its own scenario; a controller the run does not build
    seeded = evaluate_config("scenario=grid_4x4", "scenario.seed=2")
    checks.check_tuned_presets(seeded, ["sotl_tuned"])
    assert _said(capsys)[0].endswith("was tuned on grid_4x4 (scenario.seed 0), this run is on grid_4x4 "
                                     "(scenario.seed 2)")


def test_other_engine_settings_are_one_warning_line_naming_each_key_and_both_values(capsys):
    cfg = evaluate_config("scenario=grid_4x4", "engine.min_green_s=8", "engine.junction_yielding=true")
    notes = checks.check_tuned_presets(cfg, ["max_pressure"],
                                       {"controller@baseline_params.max_pressure": "max_pressure_tuned_grid_4x4"})
    assert _said(capsys) == [
        "warning: baseline_params.max_pressure (preset configs/controller/max_pressure_tuned_grid_4x4.yaml) was "
        "tuned under other engine settings: engine.min_green_s 5 in the preset, 8 in this run, "
        "engine.junction_yielding false in the preset, true in this run"]
    assert notes[0]["engine_differs"] == {"min_green_s": [5, 8], "junction_yielding": [False, True]}


def test_a_preset_without_a_record_warns_that_what_it_was_tuned_under_is_unknown(tmp_path, monkeypatch, capsys):
    old = tmp_path / "sotl_tuned_grid_4x4.yaml"
    old.write_text("\n".join(line for line in (PRESET_DIR / old.name).read_text().splitlines()
                             if not line.startswith("# tuned_under:")) + "\n")
    monkeypatch.setattr(checks, "PRESET_DIR", tmp_path)
    notes = checks.check_tuned_presets(evaluate_config("scenario=grid_4x4"), ["sotl"],
                                       {"controller@controller_params.sotl": "sotl_tuned_grid_4x4"})
    said = _said(capsys)
    assert len(said) == 1 and "does not record the scenario and engine settings it was tuned under" in said[0]
    assert notes[0]["tuned_under"] is None
    old.write_text(record_line("grid_4x4", 0, DEFAULT_ENGINE)[:-3] + "\n")  # a record cut short: refused, named
    with pytest.raises(ConfigError, match="not JSON") as refused:
        checks.check_tuned_presets(evaluate_config("scenario=grid_4x4"), ["sotl"],
                                   {"controller@controller_params.sotl": "sotl_tuned_grid_4x4"})
    assert (refused.value.file, refused.value.field) == (str(old), "tuned_under")


def test_evaluate_records_the_presets_it_ran_in_its_summary(tmp_path, capsys):
    cfg = evaluate_config("scenario=grid_4x4", "controllers=[sotl_tuned]", "engine.min_green_s=6", "eval.seeds=1",
                          "eval.steps=60", "eval.progress=false", "eval.plots=false")
    evaluate.evaluate(cfg, tmp_path)
    assert "engine.min_green_s 5 in the preset, 6 in this run" in capsys.readouterr().out
    recorded = json.loads(Path(tmp_path / "summary.json").read_text())["tuned_presets"]
    assert recorded == [{"chosen_by": "sotl_tuned", "preset": "configs/controller/sotl_tuned_grid_4x4.yaml",
                         "tuned_under": read_record(PRESET_DIR / "sotl_tuned_grid_4x4.yaml"), "other_scenario": False,
                         "engine_differs": {"min_green_s": [5, 6]}}]
