"""evaluate.py end to end on a small scenario, through Hydra's compose API, and its statistics."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import evaluate
from agents import lineup
from envs.errors import CheckpointError
from envs.evaluation.report import EVALUATION_OUTPUTS, PRIMARY, markdown_table, summary
from envs.evaluation.stats import bootstrap_mean, reduction_percent
from tests.conftest import REPO_ROOT
from tests.minimal_scenario import assert_names_everything


def evaluate_config(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=list(overrides))


def test_evaluate_runs_every_controller_on_the_same_eval_demands_and_writes_the_report(tmp_path, capsys):
    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=300", "eval.seeds=3", "eval.progress=false",
                          "render=true", "render_every_s=30")
    result = evaluate.run_task(cfg, tmp_path)
    printed = capsys.readouterr().out
    controllers = ["fixed_time", "fixed_time_webster", "max_pressure", "sotl", "efficient_mp", "advanced_mp"]
    assert result["controllers"] == controllers
    written = ["table.md", "metrics.csv", "summary.json", "travel_time_bars.png",
               "travel_time_cdf.png", "queue_over_time.png", "episode.gif"]
    for name in written:
        assert (tmp_path / name).stat().st_size > 0, name
    assert sorted(os.listdir(tmp_path)) == sorted(written) and set(written) <= set(EVALUATION_OUTPUTS)
    assert (tmp_path / "table.md").read_text().strip() in printed
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 6 * 3 and {r["controller"] for r in rows} == set(controllers)
    # the three seeds are three different demands, shared by every controller
    departed = {(r["controller"], r["seed"]): r["vehicles/departed"] for r in rows}
    assert len({departed[("fixed_time", str(s))] for s in range(3)}) > 1
    for name in controllers:
        assert [departed[(name, str(s))] for s in range(3)] == [departed[("fixed_time", str(s))] for s in range(3)]
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    ft = np.array([float(r[PRIMARY]) for r in rows if r["controller"] == "fixed_time"])
    mp = np.array([float(r[PRIMARY]) for r in rows if r["controller"] == "max_pressure"])
    expected = reduction_percent(ft, mp).mean()
    assert summary["max_pressure"]["reduction_vs_fixed_time"]["mean"] == pytest.approx(expected)
    low, high = (summary["max_pressure"]["reduction_vs_fixed_time"][k] for k in ("low", "high"))
    assert low <= expected <= high

    # the folder again (a reused hydra.run.dir): a failed run removes nothing; one without plots
    # or GIF removes the earlier run's, keeps what is not an evaluation's output, rewrites the rest
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError):
        evaluate.run_task(evaluate_config("scenario=grid_1x1", f"checkpoint={tmp_path / 'missing.zip'}"), tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([*written, "notes.txt"])
    capsys.readouterr()
    again = evaluate.run_task(evaluate_config("scenario=grid_1x1", "eval.steps=60", "eval.seeds=1", "eval.plots=false",
                                              "eval.progress=false", "controllers=[fixed_time]"), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["metrics.csv", "notes.txt", "summary.json", "table.md"]
    written_again = json.loads((tmp_path / "summary.json").read_text())
    assert written_again["controllers"] == again["controllers"] == ["fixed_time"]
    # one seed: the table shows no interval, and summary.json holds none either (it held low = high =
    # mean, a zero-width "95% CI" that a reader of the JSON could quote)
    one = written_again["summary"]["fixed_time"][PRIMARY]
    assert one["low"] is None and one["high"] is None and one["mean"] == pytest.approx(
        float(next(csv.DictReader(open(tmp_path / "metrics.csv")))[PRIMARY]))
    assert ("removed travel_time_bars.png, travel_time_cdf.png, queue_over_time.png, episode.gif: an earlier "
            "evaluation's") in capsys.readouterr().out


@pytest.mark.parametrize("overrides, key, value, says", [
    (["scenario.horizon=-5"], "scenario.horizon", -5, "must be an integer >= 1"),
    # a dataset ignored it: the same demands as seed 0, silently (no data needed: refused first)
    (["scenario=jinan_3x4", "scenario.seed=5"], "scenario.seed", 5, "only a generated preset draws"),
    (["scenario=resco_cologne8", "scenario.seed=-1"], "scenario.seed", -1, "'resco_cologne8' has its own files"),
    (["render=true", "render_fps=0"], "render_fps", 0, "must be >= 1"),  # was a ZeroDivisionError at the end
    # written with 0 s frame delays, so the GIF played at 10 fps
    (["render=true", "render_fps=100"], "render_fps", 100, "must be <= 50: a GIF's frame delays"),
    (["render=true", "render_every_s=0"], "render_every_s", 0, "must be >= 1"),  # was no GIF, silently
    (["task=incident_detection", "detection.target_precision=5"], "detection.target_precision", 5.0,
     "must be in [0, 1]"),
    (["task=incident_detection", "detection.target_precision=nan"], "detection.target_precision", "nan",
     "must be in [0, 1]"),
    (["task=incident_detection", "detection.interval_s=0"], "detection.interval_s", 0, "must be >= 1"),
    (["checkpoint_max_green_s=nan"], "checkpoint_max_green_s", "nan", "must be > 0 or null"),
    (["checkpoint_max_green_s=0"], "checkpoint_max_green_s", 0.0, "must be > 0 or null"),
])
def test_evaluate_options_are_range_checked_before_any_work(overrides, key, value, says):
    from agents.ppo.config import check_evaluate_config
    from envs.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(says)) as caught:
        check_evaluate_config(evaluate_config("scenario=grid_1x1", *overrides))
    assert caught.value.field == key and caught.value.source == "<config>"
    assert str(caught.value.value) == str(value) and f"field {key!r} = {caught.value.value!r}:" in str(caught.value)


def test_evaluate_prints_a_bad_horizon_as_a_config_error_not_the_flow_files(tmp_path):
    done = subprocess.run([sys.executable, "evaluate.py", "scenario=grid_1x1", "scenario.horizon=0",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: <config>: field 'scenario.horizon' = 0: must be an integer >= 1 (seconds), "
        "or null for the whole flow file"]


def test_evaluate_rejects_an_unknown_controller(tmp_path):
    from envs.errors import ConfigError

    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=10", "controllers=[fixed_time,best_ever]")
    with pytest.raises(ConfigError, match="best_ever") as refused:
        evaluate.evaluate(cfg, tmp_path)
    assert_names_everything(refused.value, "<config>", "controllers", "best_ever")
    assert 'unknown controller' in refused.value.reason


@pytest.mark.parametrize("override, expected", [
    ("controllers=[nope]", "field 'controllers' = 'nope': unknown controller"),
    ("checkpoint=missing.zip", "field 'checkpoint' = 'missing.zip': no such checkpoint file"),
    # names the model, not the metadata .json that the deployment runtime would look for first
    ("deployed=missing.onnx", "field 'deployed' = 'missing.onnx': no such ONNX model file"),
    # Hydra reads these as an int and a nested list: they were TypeError tracebacks
    ("checkpoint=123", "field 'checkpoint' = '123': no such checkpoint file"),
    ("deployed=[[a]]", "field 'deployed' = ['a']: expected a path (ONNX model file) or a list of paths"),
])
def test_the_cli_prints_one_error_line_and_exits_2(tmp_path, override, expected):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    done = subprocess.run(
        [sys.executable, "evaluate.py", "scenario=grid_1x1", "eval.steps=10", override, f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: <config>: {expected}"), done.stderr[-3000:]


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(0)
    few = bootstrap_mean(rng.normal(10, 2, 5))
    many = bootstrap_mean(rng.normal(10, 2, 200))
    assert few.low <= few.mean <= few.high
    assert (many.high - many.low) < (few.high - few.low)
    assert bootstrap_mean([3.0, 3.0, 3.0]) == bootstrap_mean([3.0])  # no spread, zero width
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_mean([1.0, float("nan")])


def test_reduction_is_paired_per_seed():
    assert reduction_percent([100.0, 200.0], [90.0, 100.0]).tolist() == [10.0, 50.0]
    with pytest.raises(ValueError, match="> 0"):
        reduction_percent([0.0], [1.0])


def test_a_trained_checkpoint_joins_the_classical_controllers_in_the_table(tmp_path, capsys):
    from agents.ppo.sb3_trainer import train
    from tests.test_train import train_config
    from tests.test_train import tiny_run

    cfg = train_config(*tiny_run(env__copies=2, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1,
                                 eval__seeds=1, eval__steps=100, env__episode_s=100),
                       "train.total_agent_steps=40", "train.eval_every=0")
    train(cfg, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoints" / "last.zip"
    again = tmp_path / "again.zip"  # a second checkpoint of the same agent: a numbered name
    again.write_bytes(checkpoint.read_bytes())
    out = tmp_path / "eval"
    out.mkdir()
    result = evaluate.evaluate(
        evaluate_config("scenario=grid_1x1", "eval.steps=120", "eval.seeds=2", "eval.progress=false",
                        "eval.plots=false", "controllers=[fixed_time,max_pressure]",
                        f"checkpoint=[{checkpoint},{again}]"),
        out,
    )
    assert result["controllers"] == ["fixed_time", "max_pressure", "ppo_shared", "ppo_shared_2"]
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert sum(r["controller"] == "ppo_shared" for r in rows) == 2
    printed = capsys.readouterr().out
    assert "| ppo_shared |" in printed and "| ppo_shared_2 |" in printed
    # which file each name stands for: said at the start and kept in summary.json
    assert f"ppo_shared = {checkpoint}\nppo_shared_2 = {again}\n" in printed
    files = {"ppo_shared": str(checkpoint), "ppo_shared_2": str(again)}
    assert json.loads((out / "summary.json").read_text())["policy_files"] == files
    from envs.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no such checkpoint"):
        evaluate.evaluate(evaluate_config("scenario=grid_1x1", f"checkpoint={tmp_path / 'missing.zip'}"), out)


def test_the_cli_writes_its_status_lines_and_table_into_evaluate_log(tmp_path):
    done = subprocess.run([sys.executable, "evaluate.py", "scenario=grid_1x1", "eval.steps=60", "eval.seeds=2",
                           "eval.progress=false", "eval.plots=false", "controllers=[fixed_time,max_pressure]",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    header = (tmp_path / "table.md").read_text().splitlines()[0]
    log = (tmp_path / "evaluate.log").read_text()
    assert header in log and "scenario grid_1x1: 1 intersection;" in log and f"results in {tmp_path}" in log
    assert header in done.stdout  # still on the console as before


def test_a_checkpoint_of_another_layout_is_refused_naming_both_scenarios_before_simulating(
        tmp_path, datasets_dir, monkeypatch):
    from envs.errors import CheckpointError
    from envs.scenario import load_scenario
    from tests.deploy_fixtures import untrained

    checkpoint = untrained(load_scenario("grid_1x1", horizon=60), "shared", tmp_path / "grid.zip")
    monkeypatch.setattr(evaluate, "eval_demands", lambda *a: pytest.fail("simulation work before the check"))
    with pytest.raises(CheckpointError) as caught:  # the same intersection ids, 8 phases instead of 4
        evaluate.evaluate(evaluate_config("scenario=syn_1x1_uniform_800", "eval.steps=60", "eval.progress=false",
                                          "controllers=[]", f"checkpoint={checkpoint}"), tmp_path)
    assert caught.value.source == str(checkpoint) and caught.value.field == "env.observations.phase_onehot.size"
    assert "(trained on grid_1x1, run on syn_1x1_uniform_800)" in str(caught.value)


def test_a_checkpoint_trained_under_other_engine_rules_is_refused_before_simulating(tmp_path, monkeypatch):
    from envs.errors import ConfigError
    from envs.scenario import load_scenario
    from tests.deploy_fixtures import untrained

    checkpoint = untrained(load_scenario("grid_1x1", horizon=60), "shared", tmp_path / "g.zip",
                           engine={"min_green_s": 15})
    monkeypatch.setattr(evaluate, "eval_demands", lambda *a: pytest.fail("simulation work before the check"))
    with pytest.raises(ConfigError, match="trained with engine.min_green_s=15") as caught:  # ran under 5 s
        evaluate.evaluate(evaluate_config("scenario=grid_1x1", "eval.steps=60", "eval.progress=false",
                                          "controllers=[]", f"checkpoint={checkpoint}"), tmp_path)
    assert (caught.value.field, caught.value.value) == ("engine.min_green_s", 5)


def test_a_max_green_for_a_phase_duration_checkpoint_names_checkpoint_max_green_s(tmp_path):
    from envs.errors import ConfigError
    from envs.scenario import load_scenario
    from tests.deploy_fixtures import untrained

    checkpoint = untrained(load_scenario("grid_1x1", horizon=60), "shared", tmp_path / "hold.zip",
                           action_mode="phase_duration")
    with pytest.raises(ConfigError, match="a phase_duration policy chooses its green durations") as caught:
        lineup.trained_policies(evaluate_config("scenario=grid_1x1", f"checkpoint={checkpoint}",
                                                  "checkpoint_max_green_s=60"))
    # was field 'max_green_s', PolicyController's own argument, which evaluate.py has no key for
    assert_names_everything(caught.value, str(checkpoint), "checkpoint_max_green_s", 60.0)


def test_a_checkpoint_whose_meta_names_no_agent_is_named_after_its_file(tmp_path):
    from envs.scenario import load_scenario
    from tests.deploy_fixtures import untrained

    checkpoint = untrained(load_scenario("grid_1x1", horizon=60), "shared", tmp_path / "hand_made.zip",
                           config={"agent": {}})  # was a KeyError: 'name'
    policies = lineup.trained_policies(evaluate_config("scenario=grid_1x1", f"checkpoint={checkpoint}"))
    assert list(policies) == ["hand_made"] and policies["hand_made"][0] == str(checkpoint)


def test_one_seed_shows_no_interval_and_the_reduction_note_only_with_its_column():
    rows = [{"controller": name, "seed": 0, PRIMARY: travel, "travel_time/p50": 1.0, "travel_time/p95": 2.0,
             "throughput": 10.0, "delay": 3.0} for name, travel in (("fixed_time", 128.6), ("sotl", 100.0))]
    one = markdown_table(summary(rows, ["fixed_time", "sotl"]), ["fixed_time", "sotl"], 1)
    assert "| fixed_time | 128.6 |" in one and "[" not in one.split("\n\n")[0]  # no [128.6, 128.6]
    assert "| sotl | 100.0 | 1.0 | 2.0 | 10 | 3.0 | 22.2 |" in one
    assert "One evaluation demand seed: no confidence interval." in one and "Reductions are paired" in one
    alone = markdown_table(summary(rows[1:], ["sotl"]), ["sotl"], 1)
    assert "reduction" not in alone.lower()  # no reduction column, so no note about one
    two = [dict(r, seed=1, **{PRIMARY: r[PRIMARY] + 10}) for r in rows] + rows
    assert "| fixed_time | 133.6 [" in markdown_table(summary(two, ["fixed_time"]), ["fixed_time"], 2)


def test_a_deployed_model_that_cannot_load_is_refused_not_run_as_its_fallback(model_copy):
    """deployed= a file the runtime cannot load (here: a training checkpoint beside the export's
    metadata) would put every intersection on fixed time and report that as the model's row."""
    from envs.errors import ModelError

    onnx_path, _ = model_copy
    onnx_path.write_bytes(b"PK\x03\x04 not an ONNX model")
    cfg = evaluate_config("scenario=grid_1x1", f"deployed={onnx_path}")
    with pytest.raises(ModelError, match="the model cannot run: model file .* checksum") as refused:
        lineup.deployed_policies(cfg, [])
    assert_names_everything(refused.value, str(onnx_path), "deployed", str(onnx_path))


def test_the_original_demand_over_several_seeds_says_what_its_intervals_span(tmp_path):
    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=120", "eval.seeds=2", "eval.progress=false",
                          "eval.demand.mode=original", "controllers=[fixed_time]")
    evaluate.evaluate(cfg, tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert "every seed replays the same flow file" in table
    assert "| fixed_time | " in table  # the two seeds ran the same demand: a zero-width interval
    cfg = evaluate_config("scenario=grid_1x1", "eval.steps=120", "eval.seeds=2", "eval.progress=false",
                          "controllers=[fixed_time]")
    (tmp_path / "poisson").mkdir()
    evaluate.evaluate(cfg, tmp_path / "poisson")
    assert "replays" not in (tmp_path / "poisson" / "table.md").read_text()
