"""``<controller>_tuned`` names: a tuned preset evaluated beside the untuned controller."""

from __future__ import annotations

import csv
import re

import pytest
import yaml

import evaluate
from agents.classical import SOTL, tuned_presets
from envs.errors import ConfigError
from tests.test_evaluate import evaluate_config

PRESET = """defaults:
  - sotl
  - _self_
theta: 7.0
mu: 1
"""


@pytest.fixture
def preset_dir(tmp_path, monkeypatch):
    folder = tmp_path / "presets"
    folder.mkdir()
    monkeypatch.setattr(tuned_presets, "PRESET_DIR", folder)
    return folder


def test_a_tuned_name_builds_the_controller_with_the_presets_fields_over_the_class_defaults(preset_dir):
    (preset_dir / "sotl_tuned_grid_1x1.yaml").write_text(PRESET)
    controller = evaluate.build_controller("sotl_tuned", evaluate_config("scenario=grid_1x1"))
    assert isinstance(controller, SOTL)
    assert (controller.theta, controller.mu) == (7.0, 1)
    assert controller.distance_m == SOTL().distance_m  # not in the preset: the default


def test_the_tuned_and_the_untuned_controller_share_one_table(preset_dir, tmp_path):
    (preset_dir / "sotl_tuned_grid_1x1.yaml").write_text(PRESET)
    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=300", "eval.seeds=2", "eval.progress=false",
                          "controllers=[sotl,sotl_tuned]")
    (tmp_path / "run").mkdir()
    result = evaluate.evaluate(cfg, tmp_path / "run")
    assert result["controllers"] == ["sotl", "sotl_tuned"]
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    tt = {(r["controller"], r["seed"]): float(r["travel_time/mean"]) for r in rows}
    # theta 7 with mu 1 switches far more eagerly than the defaults: the runs differ
    assert any(tt[("sotl", s)] != tt[("sotl_tuned", s)] for s in ("0", "1"))


def test_a_missing_preset_names_the_controller_and_the_command_that_writes_it(preset_dir, tmp_path):
    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=10", "controllers=[sotl,sotl_tuned]")
    with pytest.raises(ConfigError, match=r"sotl_tuned.*no tuned preset.*agents.classical.tune controller=sotl "
                                          r"scenario=grid_1x1"):
        evaluate.evaluate(cfg, tmp_path)


def test_a_controller_without_a_search_space_is_not_offered_a_tune_command(preset_dir, tmp_path):
    # the message named `agents.classical.tune controller=fixed_time`, which refuses fixed_time itself
    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=10", "controllers=[fixed_time_tuned]")
    with pytest.raises(ConfigError, match=r"fixed_time_tuned.*only max_pressure, sotl are tuned"):
        evaluate.evaluate(cfg, tmp_path)


def test_tune_refuses_bad_threads_and_steps_naming_them_before_loading_anything():
    from agents.classical.tune import main

    for arg, field in (("threads=0", "threads"), ("steps=-5", "steps")):
        with pytest.raises(ConfigError) as error:
            main(["controller=sotl", "scenario=grid_1x1", arg])
        assert error.value.field == field


def test_an_unknown_base_is_an_unknown_controller(preset_dir, tmp_path):
    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=10", "controllers=[fastest_tuned]")
    with pytest.raises(ConfigError, match="fastest_tuned.*unknown controller"):
        evaluate.evaluate(cfg, tmp_path)


def test_a_preset_of_another_controller_is_refused_naming_the_file(preset_dir):
    (preset_dir / "sotl_tuned_grid_1x1.yaml").write_text(PRESET.replace("- sotl", "- max_pressure"))
    with pytest.raises(ConfigError, match=r"sotl_tuned_grid_1x1.yaml.*defaults.*must start from 'sotl'"):
        tuned_presets.tuned_params("sotl_tuned", "grid_1x1")


def test_the_committed_presets_load_as_their_controllers():
    from agents.classical import CONTROLLERS

    committed = sorted(tuned_presets.PRESET_DIR.glob("*_tuned_*.yaml"))
    assert committed, f"no tuned presets in {tuned_presets.PRESET_DIR}"  # not vacuous
    for path in committed:
        base, scenario = path.stem.split("_tuned_")
        params = tuned_presets.tuned_params(f"{base}_tuned", scenario)
        written = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "defaults"}
        assert written and params == written, path.name  # the file's fields, read on their own
        controller = CONTROLLERS[base](**params)  # every field a real parameter of the class
        assert {k: getattr(controller, k) for k in written} == written, path.name



# tiny settings and the presets in a temporary folder: before the fix these ran (and out= wrote a preset)
TINY = ["scenario=grid_1x1", "trials=1", "random_trials=1", "seeds=1", "steps=30", "threads=1"]


@pytest.mark.parametrize("argv, field, value, says", [
    # the last one won silently: this tuned max pressure and wrote its preset
    (["controller=sotl", "controller=max_pressure"], "controller", "max_pressure",
     "given twice (first controller=sotl)"),
    (["controller=sotl", "seeds=2"], "seeds", "2", "given twice (first seeds=1)"),
    # read as not given: out= (an unset $OUT) wrote over the committed configs/controller preset
    (["controller=sotl", "out="], "out", "", "empty"),
    (["controller=sotl", "data_dir="], "data_dir", "", "empty"),  # a dataset's was read from GRIDLIGHT_DATA_DIR
])
def test_tune_refuses_a_repeated_or_empty_key_naming_it_before_loading_anything(argv, field, value, says, capsys,
                                                                                 preset_dir):
    from agents.classical.tune import main

    with pytest.raises(ConfigError, match=re.escape(says)) as error:
        main([*TINY, *argv])
    assert (error.value.source, error.value.field, error.value.value) == ("<tune>", field, value)
    assert capsys.readouterr().out == "" and not list(preset_dir.iterdir())  # no trial ran, nothing written


@pytest.mark.parametrize("line, field, says", [
    ("bogus: 1", "bogus", "not a parameter of sotl"),  # a TypeError traceback from SOTL's constructor
    ("distance_m: -5.0", "distance_m", "must be a finite number > 0"),  # found once the scenario had loaded
])
def test_a_preset_with_a_bad_field_is_refused_naming_the_file_before_any_work(line, field, says, preset_dir,
                                                                                tmp_path, capsys):
    (preset_dir / "sotl_tuned_grid_1x1.yaml").write_text(PRESET + line + "\n")
    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=10", "eval.progress=false", "controllers=[sotl_tuned]")
    with pytest.raises(ConfigError, match=re.escape(says)) as refused:
        evaluate.evaluate(cfg, tmp_path)
    assert refused.value.source.endswith("sotl_tuned_grid_1x1.yaml") and refused.value.field == field
    assert "scenario grid_1x1" not in capsys.readouterr().out  # before the scenario and its demands
