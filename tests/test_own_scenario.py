"""A scenario given by path (`envs/scenario/own_files.py`): a user's own CityFlow folder or SUMO
files through load_scenario, train.py, evaluate.py and export.py, with every refusal naming
``scenario.name`` and the path. Small generated networks and the hand-written SUMO fixture only."""

from __future__ import annotations

import os

import pytest
import torch

import evaluate
from agents.classical.tuned_presets import preset_path
from agents.ppo.config import check_config, check_evaluate_config
from agents.ppo.policy import read_meta
from envs.errors import ConfigError
from envs.scenario import load_scenario, scenario_from_sumo
from envs.scenario.cityflow import write_cityflow
from envs.scenario.presets import PRESETS
from tests.minimal_scenario import assert_names_everything
from tests.sumo_fixtures import write_tiny
from tests.test_evaluate import evaluate_config
from tests.test_train import tiny_run, train_config


def own_grid(folder, preset: str = "grid_1x1"):
    """`preset`'s generated files written where a user keeps their own network."""
    roadnet, flow, _ = PRESETS[preset](0)
    write_cityflow(folder, roadnet, flow)
    return folder


def assert_same_network_and_trips(ours, theirs) -> None:
    tensors = {key: value for key, value in vars(theirs.network).items() if isinstance(value, torch.Tensor)}
    assert tensors
    for key, value in tensors.items():
        assert torch.equal(getattr(ours.network, key), value), key
    for key in ("depart", "routes", "vehicle"):
        assert (getattr(ours.trips, key) == getattr(theirs.trips, key)).all(), key


def test_a_cityflow_folder_loads_as_the_same_network_and_trips_as_the_preset_it_was_written_from(tmp_path):
    own = load_scenario(str(own_grid(tmp_path / "city", "grid_4x4")))
    assert own.name == str(tmp_path / "city")
    assert_same_network_and_trips(own, load_scenario("grid_4x4"))
    assert load_scenario(str(tmp_path / "city"), horizon=600).trips.depart.max() < 600  # the horizon applies


def test_a_sumo_folder_or_its_sumocfg_loads_through_the_sumo_importer(tmp_path):
    folder = write_tiny(tmp_path / "sumo")
    imported = scenario_from_sumo(folder)
    for given in (folder, folder / "tiny.sumocfg"):
        scenario = load_scenario(str(given))
        assert scenario.name == str(given) and scenario.info["sumocfg"] == str(folder / "tiny.sumocfg")
        assert scenario.info["sumo_report"] == imported.info["sumo_report"]
        assert_same_network_and_trips(scenario, imported)


@pytest.mark.parametrize("make, given, says", [
    (lambda p: None, "maps/city", "no such file or folder (a relative path is read from"),
    (lambda p: (p / "empty").mkdir(), "empty", "holds neither roadnet.json and flow.json nor a .sumocfg"),
    (lambda p: own_grid(p / "city"), "city/roadnet.json", "a file that is not a .sumocfg"),
    (lambda p: (own_grid(p / "city"), (p / "city" / "flow.json").unlink()), "city",
     "has roadnet.json but no flow.json"),
    (lambda p: (own_grid(p / "city"), (p / "city" / "roadnet.json").unlink()), "city", "has flow.json but no roadnet"),
    (lambda p: (own_grid(p / "both"), write_tiny(p / "both")), "both",
     "holds both CityFlow's roadnet.json and flow.json and SUMO's tiny.sumocfg"),
])
def test_a_path_that_is_no_scenario_is_refused_naming_scenario_name_and_the_path(tmp_path, monkeypatch, make,
                                                                                    given, says):
    make(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        load_scenario(given)
    assert_names_everything(refused.value, "<scenario path>", "scenario.name", given)
    assert says in refused.value.reason


def test_an_unknown_name_that_is_no_path_is_still_an_unknown_scenario():
    with pytest.raises(ConfigError, match="unknown scenario; known: .*grid_4x4.*; or by path, a folder with") as e:
        load_scenario("grid_4x5")
    assert_names_everything(e.value, "<scenario registry>", "scenario.name", "grid_4x5")


def test_the_config_check_makes_a_relative_path_absolute_and_refuses_what_it_would_ignore(tmp_path, monkeypatch):
    own_grid(tmp_path / "city")
    monkeypatch.chdir(tmp_path)
    cfg = evaluate_config("scenario.name=city")
    check_evaluate_config(cfg)
    assert cfg.scenario.name == str(tmp_path / "city")  # what a checkpoint records, wherever it is read
    for override, field, value in (("scenario.seed=3", "scenario.seed", 3),
                                   ("scenario.data_dir=/data", "scenario.data_dir", "/data")):
        with pytest.raises(ConfigError, match="has its own files|given by path and reads no dataset") as e:
            check_evaluate_config(evaluate_config("scenario.name=city", override))
        assert_names_everything(e.value, "<config>", field, value)


def test_a_tuned_preset_of_a_path_scenario_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    assert preset_path("sotl", "/srv/my-city.v2").name == "sotl_tuned_path_srv_my_city_v2.yaml"
    assert preset_path("sotl", "/srv/sumo/x.sumocfg").name == "sotl_tuned_path_srv_sumo_x_sumocfg.yaml"
    monkeypatch.chdir(tmp_path)
    own_grid(tmp_path / "city")
    assert preset_path("sotl", "city") == preset_path("sotl", str(tmp_path / "city"))  # relative = absolute
    assert preset_path("sotl", "hangzhou_4x4").name == "sotl_tuned_hangzhou_4x4.yaml"  # registered: as before


def test_train_evaluate_and_export_run_on_a_path_scenario_from_any_directory(tmp_path, monkeypatch):
    own_grid(tmp_path / "city")
    monkeypatch.chdir(tmp_path)
    tiny = tiny_run(env__copies=2, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                    eval__steps=100, env__episode_s=100)
    from agents.ppo.sb3_trainer import train

    cfg = train_config(*tiny, "scenario.name=city", "train.total_agent_steps=40", "train.eval_every=0")
    check_config(cfg)
    train(cfg, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoints" / "last.zip"
    assert read_meta(checkpoint)["config"]["scenario"]["name"] == str(tmp_path / "city")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded path is absolute: evaluate and export find the files
    cfg = evaluate_config(f"scenario.name={os.path.relpath(tmp_path / 'city')}", "eval.steps=100", "eval.seeds=1",
                          "eval.progress=false", "eval.plots=false", "controllers=[fixed_time]",
                          f"checkpoint={checkpoint}")
    check_evaluate_config(cfg)
    result = evaluate.evaluate(cfg, elsewhere)
    assert result["controllers"] == ["fixed_time", "ppo_shared"]
    from agents.deploy.export import export_policy

    model, metadata = export_policy(checkpoint, elsewhere)  # the scenario: the checkpoint's recorded path
    assert model.is_file() and metadata.is_file()


def test_a_path_object_is_a_path_and_a_name_that_is_no_string_is_still_an_unknown_scenario(tmp_path):
    import envs
    from envs.rl.signal_env import BatchedSignalEnv

    own_grid(tmp_path / "city")  # a Path was a TypeError in load_scenario, an AttributeError in the envs
    assert load_scenario(tmp_path / "city").name == str(tmp_path / "city")
    assert BatchedSignalEnv(tmp_path / "city").scenario.name == str(tmp_path / "city")
    assert envs.parallel_env(scenario=tmp_path / "city").possible_agents == ["intersection_1_1"]
    for name in (5, None):  # "/" in 5 was a TypeError
        with pytest.raises(ConfigError, match="unknown scenario"):
            load_scenario(name)


def test_the_tune_command_a_missing_preset_suggests_runs_as_given_for_a_path_with_a_space(tmp_path):
    import shlex

    from agents.classical.tune import parse_args
    from agents.classical.tuned_presets import tuned_params

    folder = str(own_grid(tmp_path / "my city"))
    with pytest.raises(ConfigError, match="no tuned preset") as missing:
        tuned_params("sotl_tuned", folder)
    command = shlex.split(missing.value.reason.partition("write one with ")[2])
    assert command[:3] == ["python", "-m", "agents.classical.tune"]
    assert parse_args(command[3:]) == {"controller": "sotl", "scenario": folder}  # was cut at the space


def test_export_refuses_a_data_dir_for_a_checkpoint_whose_scenario_reads_no_dataset(tmp_path):
    from agents.deploy.export import export_policy
    from tests.deploy_fixtures import untrained

    folder = str(own_grid(tmp_path / "city"))
    for name in (folder, "grid_1x1"):  # it was ignored: the files were read where training found them
        checkpoint = untrained(load_scenario(name), "shared", tmp_path / "p.zip", config={"scenario": {"name": name}})
        with pytest.raises(ConfigError, match="nothing reads it") as refused:
            export_policy(checkpoint, tmp_path / "out", data_dir=str(tmp_path / "moved"))
        assert_names_everything(refused.value, "<config>", "data_dir", str(tmp_path / "moved"))
        assert not (tmp_path / "out").exists()
    model, _ = export_policy(checkpoint, tmp_path / "out")  # without it, as before
    assert model.is_file()


def test_the_tuner_refuses_a_data_dir_that_a_path_or_preset_scenario_would_not_read(tmp_path, monkeypatch):
    from agents.classical.tune import main

    monkeypatch.chdir(tmp_path)
    own_grid(tmp_path / "city")
    for name in ("city", "grid_1x1"):  # it was ignored, and the tuning ran
        with pytest.raises(ConfigError, match="nothing reads it") as refused:
            main(["controller=sotl", f"scenario={name}", "data_dir=/data", f"out={tmp_path / 'p.yaml'}"])
        assert_names_everything(refused.value, "<tune>", "data_dir", "/data")
    assert not (tmp_path / "p.yaml").exists()


def test_train_py_records_the_absolute_scenario_path_in_the_runs_hydra_config(tmp_path):
    import subprocess
    import sys

    from omegaconf import OmegaConf

    from tests.conftest import REPO_ROOT

    own_grid(tmp_path / "city")
    tiny = tiny_run(env__copies=2, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                    eval__steps=100, env__episode_s=100)
    done = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *tiny, "scenario.name=city",
                           "train.total_agent_steps=20", "train.eval_every=0", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    # was 'city', read from whichever directory the record is used in; the checkpoint had the absolute path
    assert OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml").scenario.name == str(tmp_path / "city")
    assert read_meta(tmp_path / "run" / "checkpoints" / "last.zip")["config"]["scenario"]["name"] == str(
        tmp_path / "city")


def test_a_path_given_to_the_scenario_group_is_refused_naming_scenario_name(tmp_path, monkeypatch):
    from agents.ppo.null_nodes import check_command_line

    own_grid(tmp_path / "city")
    monkeypatch.chdir(tmp_path)
    for given in ("city", str(tmp_path / "city"), "./city/"):  # was Hydra's "Could not find 'scenario/city'"
        with pytest.raises(ConfigError, match=f"given by path as scenario.name={given}") as refused:
            check_command_line([f"scenario={given}", "eval.seeds=1"], "evaluate")
        assert_names_everything(refused.value, "<config>", "scenario", given)
    check_command_line(["scenario=grid_1x1"], "evaluate")  # a registered one, as before
    check_command_line(["scenario=grid_4x5"], "train")  # a typo: Hydra's own list of the options
