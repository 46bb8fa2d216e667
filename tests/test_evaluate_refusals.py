"""evaluate.py refuses options the run would accept and then ignore, naming the key, and labels
what summary.json holds under a perturbation and what its status line counts."""

from __future__ import annotations

import json
import re

import pytest

import evaluate
from agents.ppo.config import check_evaluate_config
from envs.errors import CheckpointError, ConfigError, ModelError
from tests.test_evaluate import evaluate_config

BASE = ("scenario=grid_1x1", "eval.steps=120", "eval.seeds=2", "eval.progress=false", "eval.plots=false")


@pytest.mark.parametrize("override, field", [
    ("controller_params.fixed_time_webster.window_s=100", "window_s"),  # only window=busiest reads it
    ("checkpoint_max_green_s=30", "checkpoint_max_green_s"),  # no checkpoint= policy to read it
    ("eval.demand.jitter_s=999", "jitter_s"),  # only demand mode jitter reads it (eval's mode is poisson)
])
def test_options_nothing_would_read_are_refused_naming_them(override, field, tmp_path):
    cfg = evaluate_config(*BASE, "controllers=[fixed_time_webster]", override)
    with pytest.raises(ConfigError) as error:
        check_evaluate_config(cfg)  # evaluate.py's main, before any work
        evaluate.evaluate(cfg, tmp_path)
    assert error.value.field.endswith(field)


def test_summary_json_says_which_condition_it_holds_and_keeps_the_clean_rows_beside(tmp_path):
    surge = ["perturbation=surge", "perturbation.surge.start_s=0", "perturbation.surge.end_s=120",
             "perturbation.surge.scale=3.0"]
    result = evaluate.evaluate(evaluate_config(*BASE, "controllers=[max_pressure]", *surge), tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["summary_condition"] == "surge" and set(written["clean_summary"]) == {"max_pressure"}
    rows = [line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines()]
    column = rows[0].index("travel_time/mean")
    for condition, key in (("surge", "summary"), ("clean", "clean_summary")):
        mean = sum(float(r[column]) for r in rows[1:] if r[3] == condition) / 2
        assert written[key]["max_pressure"]["travel_time/mean"]["mean"] == pytest.approx(mean)
    assert result["summary_condition"] == "surge"


def test_a_surge_that_empties_the_evaluated_time_is_refused_naming_it_before_the_run(tmp_path, monkeypatch):
    # the perturbed demands depart no trip: their travel times are NaN, which ended the whole run in a
    # ValueError traceback from the statistics (only the clean demands were checked)
    monkeypatch.setattr(evaluate, "EvaluationBatch", lambda *a, **k: pytest.fail("simulation work before the check"))
    empty = ["perturbation=surge", "perturbation.surge.scale=0", "perturbation.surge.start_s=0",
             "perturbation.surge.end_s=120"]
    with pytest.raises(ConfigError, match="no trip of evaluation demand seed 0 departs within the 120 s") as refused:
        evaluate.evaluate(evaluate_config(*BASE, "controllers=[fixed_time]", *empty), tmp_path)
    assert (refused.value.source, refused.value.field, refused.value.value) == ("<config>", "perturbation.surge.scale",
                                                                                 0.0)
    assert "raise perturbation.surge.scale or end the surge before" in refused.value.reason


@pytest.mark.parametrize("override, field, value, says", [
    # a reading at t covers (t - interval, t]: an onset at eval.steps is never seen, and would be scored as missed
    (["perturbation.incidents.start_s=900"], "perturbation.incidents.start_s", [900.0],
     r"onsets at or after eval.steps \(900 s\)"),
    (["perturbation.incidents.start_s=100", "perturbation.incidents.capacity=0.5"], "perturbation.incidents.capacity",
     0.5, "scores lane closures"),
])
def test_detection_incidents_it_could_not_score_are_refused(override, field, value, says):
    cfg = evaluate_config("task=incident_detection", "scenario=grid_1x1", "eval.steps=900", "perturbation=incident",
                          *override)
    with pytest.raises(ConfigError, match=says) as refused:
        evaluate._detection_perturbation(cfg)
    assert refused.value.field == field and refused.value.value == value


@pytest.mark.parametrize("key, error", [("checkpoint", CheckpointError), ("deployed", ModelError)])
def test_a_policy_file_listed_twice_is_refused_naming_it(key, error, tmp_path):
    """The same checkpoint twice ran as ppo_shared and ppo_shared_2, two rows that agreed to the digit (like two
    training seeds that agree), while controllers=[sotl,sotl] is refused."""
    from envs.scenario import load_scenario
    from tests.deploy_fixtures import untrained

    if key == "checkpoint":
        path = untrained(load_scenario("grid_1x1", horizon=3600), "shared", tmp_path / "a.zip")
    else:  # refused before the model is read
        path = tmp_path / "a.onnx"
        path.write_bytes(b"")
    (tmp_path / "sub").mkdir()
    for second in (path, tmp_path / "sub" / ".." / path.name):  # the same file spelt another way too
        cfg = evaluate_config(*BASE, "controllers=[fixed_time]", f"{key}=[{path},{second}]")
        with pytest.raises(error, match="listed twice") as refused:
            check_evaluate_config(cfg)
            evaluate.evaluate(cfg, tmp_path)
        assert (refused.value.field, refused.value.value) == (key, str(second))


def test_the_status_line_counts_the_trips_departing_within_the_evaluated_time(tmp_path, capsys):
    """It gave the whole sample's count (1988 trips each for 120 s of grid_1x1's 3600 s demand)."""
    import csv

    evaluate.evaluate(evaluate_config(*BASE, "controllers=[fixed_time]"), tmp_path)
    said = re.search(r"\(poisson, (\d+) trips each within the 120 s\)", capsys.readouterr().out)
    departed = [float(r["vehicles/departed"]) for r in csv.DictReader(open(tmp_path / "metrics.csv"))]
    assert said and int(said.group(1)) == round(sum(departed) / len(departed))


def test_a_scale_that_leaves_a_sample_without_trips_names_eval_demand_scale(tmp_path):
    """It was named 'scale' of <demand spec>: not the key to raise."""
    with pytest.raises(ConfigError, match="has no trip; raise the scale") as refused:
        evaluate.evaluate(evaluate_config(*BASE, "controllers=[fixed_time]", "eval.demand.scale=1e-9"), tmp_path)
    assert (refused.value.source, refused.value.field, refused.value.value) == ("<config>", "eval.demand.scale", 1e-9)


def test_the_detection_task_names_eval_demand_scale_too(tmp_path):
    """It recorded its training copies and then failed as 'scale' of <demand spec>."""
    cfg = evaluate_config("scenario=grid_1x1", "eval.progress=false", "eval.plots=false",  # fails at the first draw
                          "task=incident_detection", "perturbation=incident", "detection.train_copies=4",
                          "detection.copies=2", "eval.demand.scale=1e-9")
    with pytest.raises(ConfigError, match="has no trip; raise the scale") as refused:
        evaluate.evaluate_detection(cfg, tmp_path)
    assert (refused.value.source, refused.value.field) == ("<config>", "eval.demand.scale")


def test_a_scale_too_large_to_draw_names_eval_demand_scale_before_any_work(tmp_path):
    """eval.demand.scale=1e9 ended in a MemoryError traceback."""
    with pytest.raises(ConfigError, match=r"a poisson sample would hold about [\d,]+ trips .*int32") as refused:
        evaluate.evaluate(evaluate_config(*BASE, "controllers=[fixed_time]", "eval.demand.scale=1e9"), tmp_path)
    assert (refused.value.source, refused.value.field, refused.value.value) == ("<config>", "eval.demand.scale", 1e9)


@pytest.mark.parametrize("held, hint", [("checkpoints/last.zip", "checkpoints/last.zip"), ("last.pt", "last.pt"),
                                        (None, None)])
def test_a_run_folder_given_as_the_checkpoint_names_its_last_checkpoint(held, hint, tmp_path):
    """A sweep job's folder (or its checkpoints/) given for checkpoint= read 'no such checkpoint file', of a folder
    that is there; train.py's resume= names the folder's last checkpoint, and so does evaluate.py now."""
    run = tmp_path / "3"
    run.mkdir()
    if held:
        (run / held).parent.mkdir(parents=True, exist_ok=True)
        (run / held).write_bytes(b"")
    cfg = evaluate_config(*BASE, "controllers=[fixed_time]", f"checkpoint={run}")
    with pytest.raises(CheckpointError) as refused:
        check_evaluate_config(cfg)
        evaluate.evaluate(cfg, tmp_path)
    assert (refused.value.field, refused.value.value) == ("checkpoint", str(run))
    assert refused.value.reason == (f"is a folder: checkpoint={run / hint}" if hint else
                                    "is a folder, with no last.zip or last.pt in it or its checkpoints/")
