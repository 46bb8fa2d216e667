"""Settings that ended in a traceback or were silently ignored, each now one error naming the
key (found by walking the CLIs as a new user would): overrides into a null perturbation node,
an observation listed twice, unknown controller parameters, options only the other trainer or
action mode reads, an evaluation too short for any trip to depart, the export's order of
checks, the service's --deadline-ms and argparse errors, and the fault log's recovery line."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import evaluate

from agents.deploy.runtime import FaultLog
from agents.ppo.config import check_config, check_evaluate_config
from agents.ppo.controller_params import check_param_names
from agents.ppo.null_nodes import check_overrides_into_null_nodes
from envs.errors import ConfigError
from envs.evaluation.runner import check_departures
from envs.scenario.demand import Trips
from tests.conftest import REPO_ROOT
from tests.minimal_scenario import assert_names_everything
from tests.script_runs import refusal
from tests.test_evaluate import evaluate_config
from tests.test_train import train_config, tiny_run

ENV = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "PYTHONPATH": str(REPO_ROOT)}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.parametrize("argv, field, reason", [
    (["perturbation.incidents.count=3"], "perturbation.incidents.count",
     "perturbation=clean leaves perturbation.incidents null: choose perturbation=capacity_drop | incident | mixed"),
    (["perturbation=incident", "perturbation.surge.scale=2"], "perturbation.surge.scale",
     "perturbation=incident leaves perturbation.surge null: choose perturbation=mixed | surge"),
    (["perturbation.detectors={noise_std:1}"], "perturbation.detectors", "leaves perturbation.detectors null"),
    (["+perturbation.surge.scale=2"], "perturbation.surge.scale",  # added with '+': the same node
     "perturbation=clean leaves perturbation.surge null: choose perturbation=mixed | surge"),
])
def test_an_override_into_a_null_perturbation_node_names_it(argv, field, reason):
    with pytest.raises(ConfigError, match=re.escape(reason)) as error:  # the options that set it, and only those
        check_overrides_into_null_nodes(argv, "train")
    assert error.value.field == field


def test_overrides_the_chosen_perturbation_sets_pass():
    for argv in (["perturbation=incident", "perturbation.incidents.count=3"], ["perturbation=mixed",
                 "perturbation.surge.scale=2"], ["perturbation=incident,surge", "perturbation.surge.scale=2"], [],
                 ["perturbation.seed=5"],  # no node the option can leave null
                 ["perturbation=clean", "perturbation=incident", "perturbation.incidents.count=3"]):  # the last wins
        check_overrides_into_null_nodes(argv, "evaluate")  # a sweep is left to Hydra


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_the_clis_print_one_line_for_it_not_hydras_traceback(script, tmp_path):
    done = _run(script, "perturbation.incidents.count=3", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert done.stderr.startswith("error: <config>: field 'perturbation.incidents.count' = '3'")


@pytest.mark.parametrize("overrides, field, value, reason", [
    # the run started and failed at its first evaluation (a 13-wide input to a 25-wide network)
    (["env.observations=[lane_count,lane_count]"], "env.observations", "lane_count", "listed twice"),
    # reached SOTL's constructor as a TypeError
    (["eval.baselines=[sotl]", "+baseline_params.sotl.min_gren_s=20"], "baseline_params.sotl.min_gren_s", 20,
     "not a parameter of sotl"),
    (["+baseline_params.bogus.x=1"], "baseline_params.bogus", {"x": 1}, "not a controller"),
    # an AttributeError traceback ('int' object has no attribute 'items'); null, a TypeError at the first evaluation
    (["baseline_params.max_pressure=5"], "baseline_params.max_pressure", 5, "expected a mapping of its parameters"),
    (["baseline_params.max_pressure=null"], "baseline_params.max_pressure", None, "expected a mapping"),
    # silently ignored
    (["trainer=torchrl", "train.compile=true"], "train.compile", True, "only trainer=sb3 compiles"),
    (["env.green_durations_s=[10,20]"], "env.green_durations_s", [10, 20], "only action_mode=phase_duration"),
])
def test_train_config_refusals(overrides, field, value, reason):
    with pytest.raises(ConfigError, match=reason) as error:
        check_config(train_config(*tiny_run(), *overrides))
    assert (error.value.field, error.value.value) == (field, value)


def test_phase_duration_keeps_its_green_durations():
    check_config(train_config(*tiny_run(), "env.action_mode=phase_duration", "env.green_durations_s=[10,20]"))


def test_an_evaluation_in_which_no_trip_departs_is_refused_before_it_runs(tmp_path):
    trips = [Trips("s", np.array(depart, dtype=np.int64), np.zeros((len(depart), 1), np.int64),
                   np.zeros((len(depart), 10), np.float32), np.zeros(len(depart), np.int64))
             for depart in ([0, 5], [3, 4])]
    check_departures(trips, 4)  # each seed departs a trip in [0, 4)
    with pytest.raises(ConfigError, match=r"seed 1 departs within the 3 s evaluated \(its first at 3 s\)"):
        check_departures(trips, 3)
    # evaluate.py ended in a ValueError on NaN per-seed values after the whole run, train.py in
    # NaN evaluations, a summary.json with NaN and a matplotlib traceback
    for script in ("evaluate.py", "train.py"):
        done = _run(script, "scenario=grid_1x1", "eval.seeds=1", "eval.steps=3", f"hydra.run.dir={tmp_path / script}")
        assert done.returncode == 2 and done.stderr.startswith("error: <config>: field 'eval.steps' = 3: no trip of "
                                                               "evaluation demand seed 0 departs"), done.stderr[-2000:]


def test_the_services_deadline_takes_null_and_argparse_errors_are_one_line(tmp_path):
    missing = str(tmp_path / "none.onnx")
    cases = {("--deadline-ms", "null"): f"error: {missing}: field 'model'",  # parsed; the model is what fails
             ("--deadline-ms", "abc"): "error: <command line>: field '--deadline-ms' = 'abc': expected a number",
             ("--bogus",): "error: <command line>: unrecognized arguments: --bogus"}
    for extra, start in cases.items():
        done = _run("-m", "agents.deploy.service", "serve", "--model", missing, *extra)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith(start), done.stderr


def test_a_fault_clearing_while_another_holds_the_intersection_does_not_say_back_on_the_policy(caplog):
    log = FaultLog(["a", "b"])
    with caplog.at_level(logging.INFO, logger="gridlight.runtime"):
        log.update([["lane_count: over capacity"], []])
        log.update([["phase: 9 is not a phase"], []])
        log.update([[], []])
    said = [r.getMessage() for r in caplog.records if "cleared" in r.getMessage()]
    assert said == ["a still on the fixed-time plan: phase (lane_count cleared)",
                    "a back on the policy (phase cleared)"]


@pytest.mark.parametrize("overrides, field, value, reason", [
    # read by the other task only: silently ignored, bad values included
    (["detection.copies=0"], "detection.copies", 0, "only task=incident_detection reads it"),
    (["detection.probes.p=1.5"], "detection.probes.p", 1.5, "only task=incident_detection reads it"),
    (["task=incident_detection", "render=true"], "render", True, "task=incident_detection does not read it"),
    (["task=incident_detection", "controllers=[sotl]"], "controllers", ["sotl"], "does not read it"),
    (["task=incident_detection", "eval.seeds=7"], "eval.seeds", 7, "does not read it"),
])
def test_options_of_the_other_evaluation_task_are_refused(overrides, field, value, reason):
    with pytest.raises(ConfigError, match=reason) as error:
        check_evaluate_config(evaluate_config("scenario=grid_1x1", *overrides))
    assert (error.value.field, error.value.value) == (field, value)


@pytest.mark.parametrize("overrides, field, reason", [
    # recorded in summary.json, never simulated
    (["perturbation=mixed"], "perturbation.surge", "simulates incidents only"),
    (["perturbation=detector_faults"], "perturbation.detectors", "simulates incidents only"),
    # replaced by the task's default incident, all other settings with it
    (["perturbation=incident", "perturbation.incidents.count=0"], "perturbation.incidents.count", "needs incidents"),
    (["perturbation=incident", "perturbation.incidents.rate_per_hour=0"], "perturbation.incidents.rate_per_hour",
     "needs incidents"),
    # scored as missed
    (["perturbation=incident", "eval.steps=600"], "perturbation.incidents.start_s", "could never be detected"),
    # never watched: 0/0 incidents, every metric NaN
    (["perturbation=incident", "perturbation.incidents.lanes=[road_1_1_0_0]",
      "perturbation.incidents.start_s=[60,300]"],
     "perturbation.incidents.lanes", "ends at no signal"),
])
def test_detection_task_incidents_it_would_not_simulate_or_score_are_refused(overrides, field, reason):
    with pytest.raises(ConfigError, match=reason) as error:
        evaluate.detection_scenario(evaluate_config("scenario=grid_1x1", "task=incident_detection", *overrides))
    assert error.value.field == field


def test_an_unknown_incident_lane_is_refused_before_the_baselines_run():
    from agents.ppo.run_setup import load_scenarios

    cfg = train_config(*tiny_run(), "perturbation=incident", "perturbation.incidents.lanes=[nope]")
    with pytest.raises(ConfigError, match="no such lane") as error:  # was after both baselines' evaluations
        load_scenarios(cfg)
    assert (error.value.file, error.value.field) == ("<config>", "perturbation.incidents.lanes")


@pytest.mark.parametrize("script, flags, start", [
    ("incident_detection.py", ["--p", "1.5"], "field '--p' = 1.5: a probe share must lie in [0, 1]"),
    ("incident_detection.py", ["--p", "abc"], "field '--p' = 'abc'"),
    ("incident_detection.py", ["--placements", "nowhere"], "field '--placements' = 'nowhere'"),
    ("incident_detection.py", ["--position", "2"], "field '--position' = 2.0"),
    ("incident_detection.py", ["--override", "detection.probes.p=0.3"],  # its --p won, its command did not
     "field '--override' = 'detection.probes.p=0.3': the sweep sets this key itself: use --p"),
    ("false_alarms.py", ["--copies", "0"], "field '--copies' = 0: must be >= 1"),
])
def test_the_incident_benchmarks_refuse_a_bad_flag_in_one_line(script, flags, start, tmp_path):
    done = _run(f"benchmarks/{script}", "--scenario", "grid_1x1", *flags)  # were tracebacks, exit 1
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert done.stderr.startswith(f"error: benchmarks/{script}: {start}")


@pytest.mark.parametrize("script, flags, start", [
    # Hydra's MissingConfigException / ConfigCompositionException tracebacks, from composing the config
    ("incident_detection.py", ["--scenario", "nosuch"], "field '--scenario' = 'nosuch': no such scenario config"),
    ("incident_detection.py", ["--override", "nosuch.key=1"], "field '--override' = 'nosuch.key=1': "),
    ("false_alarms.py", ["--scenario", "nosuch"], "field '--scenario' = 'nosuch': no such scenario config"),
    ("lane_gap_check.py", ["--scenario", "nosuch"], "field '--scenario' = 'nosuch': no such scenario config"),
    # lane_gap_check checked no flag: named <engine> 'copies', or refused the second placement after the first ran
    ("lane_gap_check.py", ["--scenario", "grid_1x1", "--train-copies", "0"], "field '--train-copies' = 0"),
    ("lane_gap_check.py", ["--scenario", "grid_1x1", "--train-copies", "1", "--placements", "uniform,nowhere"],
     "field '--placements' = 'nowhere'"),
])
def test_the_incident_benchmarks_name_a_flag_hydra_cannot_compose(script, flags, start, capsys, monkeypatch):
    error = refusal(script, flags, capsys, monkeypatch, only_line=True)
    assert error.startswith(f"error: benchmarks/{script}: {start}"), error


def test_the_sweep_refuses_to_merge_into_results_that_lack_a_field_before_any_work(tmp_path):
    import json

    old = tmp_path / "old.json"  # entries written before mean_gap_to_floor_s: the merge failed after the sweep
    old.write_text(json.dumps({"meta": {}, "results": [{"detector": "gap_rule", "placement": "traffic"}]}))
    done = _run("benchmarks/incident_detection.py", "--scenario", "grid_1x1", "--merge", "--out", str(old))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert done.stderr.startswith(f"error: benchmarks/incident_detection.py: field '--merge' = '{old}'")
    assert "mean_gap_to_floor_s" in done.stderr


def test_probes_and_probe_features_go_together_in_training():
    with pytest.raises(ConfigError, match="no observation reads probe reports") as error:  # simulated for nothing
        check_config(train_config(*tiny_run(), "env.probes.p=0.05"))
    assert error.value.field == "env.probes.p"
    with pytest.raises(ConfigError, match="set probes.p > 0") as error:  # was '<env>: observations', at build
        check_config(train_config(*tiny_run(), "env.observations=[phase_onehot,probe_halted]"))
    assert (error.value.file, error.value.field) == ("<config>", "env.observations")
    check_config(train_config(*tiny_run(), "env.observations=[phase_onehot,probe_halted]", "env.probes.p=0.05"))


def test_detectors_listed_twice_and_zero_folds_are_refused():
    from agents.incidents.detection_task import check_detectors

    with pytest.raises(ConfigError, match="listed twice"):  # the table had one row for both
        check_detectors(["blockage_rule", "blockage_rule"], 0.0, 8, 4)
    with pytest.raises(ConfigError, match="detection.learned.folds"):  # passed without a learned classifier
        check_detectors(["blockage_rule"], 0.0, 8, 0)


def test_gridlight_data_dir_in_the_environment_is_no_data_dir_given_to_a_generated_preset(monkeypatch):
    monkeypatch.setenv("GRIDLIGHT_DATA_DIR", "/datasets/as/the/readme/says")  # train, evaluate, make demo failed
    check_config(train_config(*tiny_run()))
    check_evaluate_config(evaluate_config("scenario=grid_1x1"))
    with pytest.raises(ConfigError, match="is generated and reads no dataset"):  # given for this run: refused
        check_config(train_config(*tiny_run(), "scenario.data_dir=/datasets/as/the/readme/says"))


def test_a_dataset_folder_given_to_a_generated_preset_and_a_checkpoint_given_as_a_model_are_named(tmp_path):
    from agents.lineup import deployed_policies
    from envs.errors import ModelError

    with pytest.raises(ConfigError, match="is generated and reads no dataset"):  # was ignored
        check_evaluate_config(evaluate_config("scenario=grid_1x1", "scenario.data_dir=/nowhere"))
    checkpoint = tmp_path / "last.zip"
    checkpoint.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a model export.py wrote") as error:  # named 'metadata' (last.json)
        deployed_policies(evaluate_config("scenario=grid_1x1", f"deployed={checkpoint}"), [])
    assert error.value.field == "deployed"


@pytest.mark.parametrize("value, typed", [("5", 5), ("null", None)])
def test_controller_params_that_are_not_a_mapping_are_refused(value, typed):
    """5 was an AttributeError traceback before any run, null a ValueError once the controller was built."""
    with pytest.raises(ConfigError, match="expected a mapping of its parameters") as error:
        check_evaluate_config(evaluate_config("scenario=grid_1x1", "controllers=[sotl]",
                                              f"controller_params.sotl={value}"))
    assert (error.value.field, error.value.value) == ("controller_params.sotl", typed)


@pytest.mark.parametrize("overrides", [
    ["controllers=[fixed_time]", "controller_params.sotl.min_green_s=-5"],  # not run: even -5 passed
    ["controllers=[sotl_tuned]", "controller_params.sotl.min_green_s=40"],  # the preset is read, not these
])
def test_parameters_of_a_controller_the_evaluation_does_not_build_are_refused(overrides):
    with pytest.raises(ConfigError, match="sotl is not run here") as error:
        check_evaluate_config(evaluate_config("scenario=grid_1x1", *overrides))
    assert error.value.field == "controller_params.sotl.min_green_s"
    check_evaluate_config(evaluate_config("scenario=grid_1x1", "controllers=[sotl]",
                                          "controller_params.sotl.min_green_s=20"))


def test_parameters_of_a_baseline_training_does_not_run_are_refused():
    with pytest.raises(ConfigError, match="sotl is not run here"):
        check_config(train_config(*tiny_run(), "+baseline_params.sotl.min_green_s=5"))
    check_config(train_config(*tiny_run(), "eval.baselines=[sotl]", "+baseline_params.sotl.min_green_s=5"))


@pytest.mark.parametrize("params, field, value", [
    ({"sotel": {"mu": 5}}, "controller_params.sotel", {"mu": 5}),  # no such controller
    ({"sotl": {"min_gren_s": 5}}, "controller_params.sotl.min_gren_s", 5),  # added with "+": reached sotl's TypeError
])
def test_a_controller_or_parameter_name_that_does_not_exist_is_refused_naming_it(params, field, value):
    with pytest.raises(ConfigError) as error:
        check_param_names(params, "controller_params", ["sotl"])
    assert_names_everything(error.value, "<config>", field, value)
    check_param_names({"sotl": None, "max_pressure": {}}, "controller_params", [])  # nothing set: nothing refused


def test_a_bad_value_of_a_built_controller_is_refused_naming_its_key_before_any_work():
    """It was found where the controller was built, after the scenario and demands had loaded (evaluate.py)
    or training had run up to its baselines (train.py), as <controller:sotl>: field 'distance_m'."""
    with pytest.raises(ConfigError, match="must be a finite number > 0") as error:
        check_evaluate_config(evaluate_config("scenario=grid_1x1", "controllers=[sotl]",
                                              "controller_params.sotl.distance_m=-5"))
    assert_names_everything(error.value, "<config>", "controller_params.sotl.distance_m", -5.0)
    with pytest.raises(ConfigError) as error:
        check_config(train_config(*tiny_run(), "eval.baselines=[sotl]", "+baseline_params.sotl.mu=-1"))
    assert_names_everything(error.value, "<config>", "baseline_params.sotl.mu", -1)


@pytest.mark.parametrize("overrides, field, value, reason", [
    # keys added with "+" (Hydra's own hint for a misspelt one) ran with the defaults
    (["+eval.seed=5"], "eval.seed", 5, "unknown key"),
    (["task=incident_detection", "+detection.placment=traffic"], "detection.placment", "traffic", "unknown key"),
    (["+foo=1"], "foo", 1, "unknown key"),
    # read only with the GIF, or by a perturbation part: no GIF, no part, no message
    (["render_fps=30"], "render_fps", 30, "only render=true reads it"),
    (["render_every_s=5"], "render_every_s", 5, "only render=true reads it"),
    (["perturbation.seed=5"], "perturbation.seed", 5, "no part of the perturbation draws from it"),
])
def test_evaluation_options_nothing_would_read_are_refused(overrides, field, value, reason):
    with pytest.raises(ConfigError, match=reason) as error:
        check_evaluate_config(evaluate_config("scenario=grid_1x1", *overrides))
    assert (error.value.field, error.value.value) == (field, value)
    with pytest.raises(ConfigError, match="no part of the perturbation draws from it"):
        check_config(train_config("perturbation.seed=5"))
    # where they are read, they pass: the detection task's default incident draws from the seed
    for read in (["render=true", "render_fps=30"], ["task=incident_detection", "perturbation.seed=5"],
                 ["perturbation=incident", "perturbation.seed=5"]):
        check_evaluate_config(evaluate_config("scenario=grid_1x1", *read))


def test_export_refuses_a_key_added_with_plus_before_reading_the_checkpoint(tmp_path):
    from hydra import compose, initialize_config_dir

    import export

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="export", overrides=[f"checkpoint={tmp_path / 'none.zip'}", "+max_gren_s=90"])
    with pytest.raises(ConfigError, match="unknown key") as error:  # exported with max_green_s 120 s
        export.export(cfg)
    assert (error.value.field, error.value.value) == ("max_gren_s", 90)


@pytest.mark.parametrize("key", ["env.demand.scale", "eval.demand.scale"])
def test_a_demand_scale_too_large_to_draw_is_refused_naming_its_key_before_the_baselines_run(key):
    from agents.ppo.run_setup import load_scenarios

    with pytest.raises(ConfigError, match=r"would hold about [\d,]+ trips .*int32") as error:  # was a MemoryError
        load_scenarios(train_config(*tiny_run(), f"{key}=1e9"))
    assert (error.value.file, error.value.field, error.value.value) == ("<config>", key, 1e9)
