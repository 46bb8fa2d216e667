"""The classical-controller parameter search (agents/classical/tuning.py, tune.py): it draws only
training demand, its grid moves, and what it writes loads through Hydra's controller group."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

import agents.classical.tuning as tuning
import agents.ppo.config  # noqa: F401  (registers the Hydra schemas and the controller group)
from agents.classical import CONTROLLERS
from agents.classical.tune import main as tune_main
from agents.classical import tuned_presets
from agents.classical.tuned_presets import preset_path
from agents.classical.tuning import SEARCH_SPACES, TuningSettings, candidate_params, neighbours, tune
from envs.engine.state import EngineParams
from envs.errors import ConfigError
from envs.scenario import load_scenario
from envs.scenario.cityflow import write_cityflow
from envs.scenario.presets import PRESETS
from envs.scenario.splits import SPLITS, split_seed
from tests.minimal_scenario import assert_names_everything

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("controller", sorted(SEARCH_SPACES))
def test_the_search_draws_training_demand_only(monkeypatch, controller):
    drawn = []
    real = tuning.sample_trips

    def recording(scenario, spec, split, index, **kwargs):
        drawn.append((split, index, split_seed(split, index)))
        return real(scenario, spec, split, index, **kwargs)

    monkeypatch.setattr(tuning, "sample_trips", recording)
    scenario = load_scenario("grid_1x1", horizon=60)
    settings = TuningSettings(trials=5, random_trials=3, seeds=2, steps=60, batch_trials=3, first_sample=7)
    result = tune(controller, CONTROLLERS[controller], scenario, settings, EngineParams())
    assert [(split, index) for split, index, _ in drawn] == [("train", 7), ("train", 8)]
    assert result.samples == [("train", 7), ("train", 8)]
    # no seed of the evaluation split (evaluate.py draws eval samples 0, 1, 2, ...) was used
    eval_seeds = {split_seed("eval", k) for k in range(10_000)}
    assert not {seed for _, _, seed in drawn} & eval_seeds
    assert SPLITS.index("eval") == 1 and all(seed % 2 == 0 for _, _, seed in drawn)
    assert result.trials[0]["params"] == candidate_params(controller, CONTROLLERS[controller], settings)[0]
    assert result.best_score == min(t["score"] for t in result.trials)
    assert len(result.trials) <= 5


def test_candidates_start_from_the_defaults_and_never_repeat():
    settings = TuningSettings(random_trials=16)
    sotl = candidate_params("sotl", CONTROLLERS["sotl"], settings)
    assert sotl[0] == {"theta": 40.0, "distance_m": 80.0, "omega_m": 25.0, "mu": 3, "min_green_s": 10.0}
    assert len(sotl) == 16 and len({tuple(p.values()) for p in sotl}) == 16
    mp = candidate_params("max_pressure", CONTROLLERS["max_pressure"], settings)
    assert len(mp) == 16  # the whole grid: 8 minimum greens x halting or not
    with pytest.raises(ConfigError, match="controller") as refused:
        candidate_params("webster", CONTROLLERS["fixed_time_webster"], settings)
    assert_names_everything(refused.value, "<tune>", "controller", "webster")
    assert 'no search space' in refused.value.reason


@pytest.mark.parametrize("space, field, value, says", [
    ({"thetta": [10.0]}, "SEARCH_SPACES.sotl.thetta", [10.0], "not a parameter of sotl"),  # a TypeError at batch 1
    ({"theta": [40.0, -1.0]}, "SEARCH_SPACES.sotl.theta", -1.0, "must be a finite number > 0"),  # at its batch
    ({"theta": [40.0], "mu": []}, "SEARCH_SPACES.sotl.mu", [], "empty grid"),  # the product was empty: defaults only
])
def test_a_bad_search_space_is_refused_naming_it_before_any_trial(space, field, value, says, monkeypatch):
    monkeypatch.setitem(tuning.SEARCH_SPACES, "sotl", space)
    with pytest.raises(ConfigError, match=says) as refused:
        candidate_params("sotl", CONTROLLERS["sotl"], TuningSettings())
    assert_names_everything(refused.value, "<tune>", field, value)


def test_neighbours_move_one_parameter_one_grid_step():
    space = {"a": [1, 2, 3], "b": [True, False]}
    assert neighbours(space, {"a": 1, "b": True}) == [{"a": 2, "b": True}, {"a": 1, "b": False}]
    assert neighbours(space, {"a": 2, "b": False}) == [{"a": 1, "b": False}, {"a": 3, "b": False},
                                                        {"a": 2, "b": True}]


def test_the_cli_writes_a_controller_option_that_hydra_loads(tmp_path, capsys):
    out = tmp_path / "controller" / "max_pressure_tuned_grid_1x1.yaml"
    summary = tune_main(["controller=max_pressure", "scenario=grid_1x1", "trials=3", "random_trials=3",
                         "seeds=1", "steps=60", "threads=1", f"out={out}"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 4  # one progress line per trial, then the summary
    written = yaml.safe_load(out.read_text())
    assert written["defaults"] == ["max_pressure", "_self_"]
    assert {k: written[k] for k in summary["best"]} == summary["best"]
    with pytest.raises(ConfigError, match="controller") as refused:
        tune_main(["controller=webster", "scenario=grid_1x1"])
    assert_names_everything(refused.value, "<tune>", "controller", "webster")
    assert 'expected one of' in refused.value.reason
    # original: every train sample is the flow file evaluate.py reports on (the preset said "TRAINING demand only")
    with pytest.raises(ConfigError, match="use poisson or jitter") as refused:
        tune_main(["controller=max_pressure", "scenario=grid_1x1", "demand_mode=original", f"out={out}"])
    assert_names_everything(refused.value, "<tune>", "demand_mode", "original")


def test_an_out_that_cannot_be_written_is_refused_before_the_search(tmp_path, capsys):
    """out= a folder (or somewhere not writable) was an IsADirectoryError traceback after every trial."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out, reason in ((tmp_path, "is a folder"), (blocker / "x.yaml", "cannot create its folder")):
        with pytest.raises(ConfigError, match=reason) as refused:
            tune_main(["controller=max_pressure", "scenario=grid_1x1", "trials=1", "random_trials=1", "seeds=1",
                       "steps=30", "threads=1", f"out={out}"])
        assert_names_everything(refused.value, "<tune>", "out", str(out))
    assert capsys.readouterr().out == ""  # no trial ran


def test_the_preset_of_a_scenario_given_by_path_says_how_evaluate_loads_it(tmp_path, monkeypatch):
    """Its "# Use:" line said scenario=PATH (evaluate.py reads a path from scenario.name=) and
    max_pressure_tuned_PATH (no such option: presets of a path are named path_<its words>)."""
    roadnet, flow, _ = PRESETS["grid_1x1"](0)
    write_cityflow(tmp_path / "city", roadnet, flow)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "preset.yaml"
    tune_main(["controller=max_pressure", "scenario=city", "trials=1", "random_trials=1", "seeds=1", "steps=30",
               "threads=1", f"out={out}"])
    use = [line for line in out.read_text().splitlines() if line.startswith("# Use:")]
    stem = preset_path("max_pressure", str(tmp_path / "city")).stem
    assert stem.startswith("max_pressure_tuned_path_") and "/" not in stem
    # written elsewhere than configs/controller: that option would load another file (or none)
    assert use == [f"# Use: copy this file to configs/controller/{stem}.yaml, then: python evaluate.py "
                   f"scenario.name={tmp_path / 'city'} controller@controller_params.max_pressure={stem}"]


def test_the_use_line_says_to_copy_a_preset_written_elsewhere(tmp_path, monkeypatch):
    """out= elsewhere: its "# Use:" line named max_pressure_tuned_grid_1x1, which loads the file in
    configs/controller (for hangzhou_4x4 the committed preset), not this one."""
    monkeypatch.setattr(tuned_presets, "PRESET_DIR", tmp_path / "controller")
    run = ["controller=max_pressure", "scenario=grid_1x1", "trials=1", "random_trials=1", "seeds=1", "steps=30",
           "threads=1"]
    for out, copy in ((tmp_path / "elsewhere.yaml", f"copy this file to {tmp_path}/controller/"
                       "max_pressure_tuned_grid_1x1.yaml, then: "), (None, "")):
        tune_main(run + ([f"out={out}"] if out else []))
        written = out or tmp_path / "controller" / "max_pressure_tuned_grid_1x1.yaml"
        use = [line for line in written.read_text().splitlines() if line.startswith("# Use:")]
        assert use == [f"# Use: {copy}python evaluate.py scenario=grid_1x1 "
                       "controller@controller_params.max_pressure=max_pressure_tuned_grid_1x1"]


TUNED = sorted((CONFIGS / "controller").glob("*_tuned_*.yaml"))


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_exits_0(capsys, flag):
    with pytest.raises(SystemExit) as stop:
        tune_main([flag])
    assert stop.value.code == 0
    usage = capsys.readouterr().out
    assert "python -m agents.classical.tune controller=sotl" in usage and "trials" in usage


@pytest.mark.parametrize("path", TUNED, ids=lambda p: p.stem)
def test_committed_tuned_configs_compose_into_the_controller_group(path):
    name = path.stem.split("_tuned_")[0]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("evaluate", [f"controller@controller_params.{name}={path.stem}"])
    params = dict(cfg.controller_params[name])
    written = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "defaults"}
    assert {k: params[k] for k in written} == written
    CONTROLLERS[name](**params)  # the class takes them
    assert "TRAINING demand only" in path.read_text()


def test_a_first_sample_whose_samples_run_past_the_last_index_names_first_sample():
    """It failed at the draw as field 'index', a name the tuner has no key for."""
    from envs.scenario.splits import MAX_INDEX

    TuningSettings(seeds=2, first_sample=MAX_INDEX - 1).validate()  # the last two samples: fine
    with pytest.raises(ConfigError, match="must end by") as refused:
        TuningSettings(seeds=2, first_sample=MAX_INDEX).validate()
    assert (refused.value.field, refused.value.value) == ("first_sample", MAX_INDEX)
