"""What evaluate.py hands its plots and writes beside the table, checked against its own
metrics.csv rows: the plotted trips are the departed trips of the table's condition, the plotted
queue averages to the rows' queue/halting, and the plots draw what their labels say."""

from __future__ import annotations

import csv
import json

import matplotlib.axes
import numpy as np
import pytest

import evaluate
from envs.evaluation import report
from envs.evaluation.metrics import METRIC_NAMES
from envs.evaluation.stats import Estimate
from tests.test_evaluate import evaluate_config

SURGE = ("perturbation=surge", "perturbation.surge.start_s=0", "perturbation.surge.end_s=120",
         "perturbation.surge.scale=3.0")


def test_the_plots_show_the_departed_trips_and_queues_of_the_tables_condition(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(evaluate, "signal_plots", lambda *args: seen.update(zip(
        ("out_dir", "stats", "controllers", "travel", "queue", "title"), args)))
    evaluate.evaluate(evaluate_config("scenario=grid_1x1", "eval.steps=120", "eval.seeds=2", "eval.progress=false",
                                      "controllers=[fixed_time,max_pressure]", *SURGE), tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["scenario", "controller", "seed", "condition", *METRIC_NAMES]
        rows = list(reader)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert (written["scenario"], written["seeds"], written["steps"]) == ("grid_1x1", 2, 120)
    assert written["controllers"] == ["fixed_time", "max_pressure"] and written["demand"]["mode"] == "poisson"
    for name in ("fixed_time", "max_pressure"):
        surged = sorted((r for r in rows if r["controller"] == name and r["condition"] == "surge"),
                        key=lambda r: int(r["seed"]))
        clean = [r for r in rows if r["controller"] == name and r["condition"] == "clean"]
        departed = [float(r["vehicles/departed"]) for r in surged]
        assert sum(departed) > sum(float(r["vehicles/departed"]) for r in clean)  # a 3x surge: more trips
        travel = seen["travel"][name]  # every departed trip of the surged seeds, no other
        assert travel.size == sum(departed)
        assert travel.sum() == pytest.approx(sum(float(r["travel_time/mean"]) * n for r, n in zip(surged, departed)),
                                             rel=1e-5)
        queue = seen["queue"][name]  # [steps, seeds]: its time-average is the rows' queue/halting
        assert queue.shape == (120, 2)
        np.testing.assert_allclose(queue.mean(0), [float(r["queue/halting"]) for r in surged], rtol=1e-5)
    assert seen["title"].endswith(", surge")


def test_the_bars_error_bars_span_the_interval_and_the_cdf_ends_at_one(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(matplotlib.axes.Axes, "bar", lambda ax, *args, **kwargs: drawn.append((args, kwargs)))
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda ax, *args, **kwargs: drawn.append((args, kwargs)))
    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between", lambda ax, *args, **kwargs: drawn.append((args, kwargs)))
    monkeypatch.setattr(matplotlib.axes.Axes, "legend", lambda ax, *args, **kwargs: None)
    stats = {"a": {report.PRIMARY: Estimate(100.0, 90.0, 115.0)}, "b": {report.PRIMARY: Estimate(50.0, 45.0, 52.0)}}
    report.bar_chart(stats, ["a", "b"], tmp_path / "bars.png", "t")
    (names, means), kwargs = drawn.pop()
    assert list(names) == ["a", "b"] and list(means) == [100.0, 50.0]
    assert kwargs["yerr"] == [[10.0, 5.0], [15.0, 2.0]]  # from the mean down to low, up to high
    report.travel_time_cdf({"a": np.array([30.0, 10.0, 20.0, 40.0])}, tmp_path / "cdf.png", "t")
    (x, y), _ = drawn.pop()
    assert x.tolist() == [10.0, 20.0, 30.0, 40.0] and y.tolist() == [0.25, 0.5, 0.75, 1.0]
    queue = np.array([[0, 2], [4, 8], [1, 1]])  # [steps, seeds]
    report.queue_over_time({"a": queue}, tmp_path / "queue.png", "t")
    (t, low, high), _ = drawn.pop()
    (t_line, mean), _ = drawn.pop()
    assert t_line.tolist() == [1, 2, 3] and mean.tolist() == [1.0, 6.0, 1.0]
    assert low.tolist() == [0, 4, 1] and high.tolist() == [2, 8, 1]


def test_under_detector_faults_the_clean_rows_are_those_of_a_clean_run(tmp_path):
    # faults reach the perturbed copies only: the clean rows, against which the degradation is taken,
    # are what max_pressure does with true detectors
    base = ("scenario=grid_1x1", "eval.steps=120", "eval.seeds=2", "eval.progress=false", "eval.plots=false",
            "controllers=[max_pressure]")
    rows = {}
    for name, extra in (("faults", ("perturbation=detector_faults",)), ("clean", ())):
        (tmp_path / name).mkdir()
        evaluate.evaluate(evaluate_config(*base, *extra), tmp_path / name)
        with open(tmp_path / name / "metrics.csv", newline="") as handle:
            rows[name] = [r for r in csv.DictReader(handle)]
    assert {r["condition"] for r in rows["faults"]} == {"clean", "detector_faults"}
    assert [r for r in rows["faults"] if r["condition"] == "clean"] == rows["clean"]


@pytest.mark.parametrize("perturbation", [SURGE, ()])
def test_the_gif_shows_the_tables_condition(perturbation, tmp_path, monkeypatch, capsys):
    """Under a perturbation it drew copy 0, the clean run, beside a table and plots of the perturbed one."""
    import envs.rl.render

    drawn = []
    monkeypatch.setattr(envs.rl.render, "render_frame", lambda view, copy: drawn.append(copy) or np.zeros((4, 4, 3)))
    monkeypatch.setattr(envs.rl.render, "write_gif", lambda frames, path, fps: None)
    evaluate.evaluate(evaluate_config("scenario=grid_1x1", "eval.steps=120", "eval.seeds=2", "eval.progress=false",
                                      "eval.plots=false", "controllers=[fixed_time,max_pressure]", "render=true",
                                      "render_every_s=60", *perturbation), tmp_path)
    shown = 2 * 2 if perturbation else 0  # (condition 1 x 2 controllers + controller 0) x 2 seeds + seed 0
    assert drawn == [shown, shown]
    said = capsys.readouterr().out
    assert ("episode of fixed_time (seed 0, surge):" if perturbation else "episode of fixed_time (seed 0):") in said


def test_an_undefined_metric_is_an_empty_cell_in_metrics_csv_not_nan(tmp_path):
    # 30 s of grid_1x1: trips depart, none finishes, so travel_time/finished_mean is undefined (NaN);
    # metrics.csv wrote 'nan' where summary.json writes null, against the CSV convention of an empty cell
    evaluate.evaluate(evaluate_config("scenario=grid_1x1", "eval.steps=30", "eval.seeds=1", "eval.progress=false",
                                      "eval.plots=false", "controllers=[fixed_time]"), tmp_path)
    text = (tmp_path / "metrics.csv").read_text()
    assert "nan" not in text.lower(), text
    (row,) = csv.DictReader(text.splitlines())
    assert row["travel_time/finished_mean"] == "" and float(row["travel_time/mean"]) > 0
