"""The incident-detection report and results file from hand-built per-copy tallies whose figures
are worked out by hand: the table's scaled figures and intervals, the results entries, the
per-incident CSV's columns, and the 95% interval over copies against the binomial's quantiles."""

from __future__ import annotations

import csv
import io
import json

import pytest

from envs.evaluation.detection_report import write_detection_report
from envs.evaluation.detection_results import result_entries
from envs.evaluation.report import ORACLE, detection_intervals, detection_table
from envs.incidents.detection import CopyTally, IncidentTimes
from envs.incidents.perturbation_specs import IncidentSpec, Perturbation


def _tallies() -> dict[str, list[CopyTally]]:
    """Two copies of an hour. Copy 0: closures on lanes 3 (onset 100 s, evidence 130 s) and 4
    (300 s, 330 s); copy 1: lane 5 (200 s, 260 s). The oracle alarms at each first evidence;
    `rule` raises 3 alarms (2 true) in copy 0, detecting lane 3 at 150 s and lane 4 at 320 s
    (before its evidence), and 2 false alarms in copy 1, missing lane 5."""
    closures = [[(3, 100, 130), (4, 300, 330)], [(5, 200, 260)]]
    oracle = [CopyTally(len(c), len(c), tuple(IncidentTimes(b, lane, start, ev, ev) for lane, start, ev in c), 3600.0)
              for b, c in enumerate(closures)]
    rule = [CopyTally(3, 2, (IncidentTimes(0, 3, 100, 130, 150), IncidentTimes(0, 4, 300, 330, 320)), 3600.0),
            CopyTally(2, 0, (IncidentTimes(1, 5, 200, 260, None),), 3600.0)]
    return {ORACLE: oracle, "rule": rule}


def test_the_detection_table_shows_percentages_counts_and_intervals_over_copies():
    table = detection_table(_tallies(), draws=200)
    # precision 2/5, recall 2/3, (5 - 2) false alarms over 2 h, time to detect (50 + 20) / 2, from
    # evidence 20 (lane 4 was detected before its evidence); resampling the two copies: precision
    # 4/6 (copy 0 twice) to 0 (copy 1 twice), recall 1 to 0, 1 to 2 false alarms an hour
    assert ("| rule | 40.0 [0.0, 66.7] | 66.7 [0.0, 100.0] | 1.50 [1.00, 2.00] | 35.0 [35.0, 35.0] "
            "| 20.0 [20.0, 20.0] | 5 | 2/3 |") in table
    assert f"| {ORACLE} | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] | 0.00 [0.00, 0.00] |" in table


def test_a_detector_without_alarms_shows_a_dash_where_its_figures_are_undefined_not_nan():
    silent = [CopyTally(0, 0, (IncidentTimes(0, 3, 100, 130, None),), 3600.0),
              CopyTally(0, 0, (IncidentTimes(1, 5, 200, 260, None),), 3600.0)]
    table = detection_table({**_tallies(), "silent": silent}, draws=50)
    # precision (0 alarms) and both mean times (nothing detected) are undefined; recall and the
    # false-alarm rate are 0
    assert "| silent | — | 0.0 [0.0, 0.0] | 0.00 [0.00, 0.00] | — | — | 0 | 0/2 |" in table
    assert "nan" not in table


def test_results_entries_hold_the_floor_the_paired_gap_and_the_copy_count():
    three_rows = {**_tallies(), "again": _tallies()["rule"]}  # 3 rows of 2 copies each
    entries = result_entries(three_rows, lambda name: "lane", "uniform", 0.0, "cmd", 3.14159, draws=100)
    rule = next(e for e in entries if e["detector"] == "rule")
    # the floor: mean onset -> evidence over all three closures (30, 30, 60 s), missed ones included;
    # the gap: detection - evidence over the closures both detected and with evidence (+20, -10 s)
    assert rule["oracle_floor_s"] == pytest.approx(40.0) and rule["mean_gap_to_floor_s"] == pytest.approx(5.0)
    assert rule["mean_time_to_detect_s"] == pytest.approx(35.0) and rule["mean_time_from_evidence_s"] == 20.0
    assert (rule["alarms"], rule["true_alarms"], rule["detected"], rule["incidents"], rule["with_evidence"]) == (
        5, 2, 2, 3, 3)
    assert rule["copies"] == 2 and rule["wall_s"] == 3.1 and rule["ci95"]["recall"] == [0.0, 1.0]


def test_the_report_writes_one_incident_row_per_closure_with_each_detectors_delay(tmp_path):
    written, said = {}, []

    def write_csv(path, rows):
        written[path.name] = rows

    def write_text(path, text):
        written[path.name] = text

    summary = write_detection_report(
        tmp_path, "grid_1x1", [f"lane_{k}" for k in range(6)], "max_pressure", 3600, 4,
        Perturbation(name="incident", incidents=IncidentSpec()), _tallies(), {ORACLE: "lane"}, None, False,
        write_csv, write_text, said.append)
    keys = ("copy", "lane", "start_s", "first_evidence_s", "oracle_floor_s", "rule_detect_s")
    assert [tuple(row[k] for k in keys) for row in written["incidents.csv"]] == [
        (0, "lane_3", 100, 130, 30, 50), (0, "lane_4", 300, 330, 30, 20), (1, "lane_5", 200, 260, 60, None)]
    per_copy = [(r["classifier"], r["copy"], r["alarms"], r["true_alarms"]) for r in written["metrics.csv"]]
    assert per_copy == [(ORACLE, 0, 2, 2), (ORACLE, 1, 1, 1), ("rule", 0, 3, 2), ("rule", 1, 2, 0)]
    assert set(summary["classifiers"]) == {"rule"} and summary["copies"] == 2 and summary["train_copies"] == 4
    assert summary["oracle"]["oracle_floor_s"] == pytest.approx(40.0)
    assert json.loads(written["summary.json"])["classifiers"]["rule"]["precision"] == pytest.approx(0.4)
    assert written["table.md"].startswith(said[0]) and said[-1] == f"results in {tmp_path}"
    out = io.StringIO()  # what evaluate.py's CSV writer makes of the rows: the missed closure's delay is empty
    csv.DictWriter(out, list(written["incidents.csv"][0])).writerows(written["incidents.csv"])
    assert out.getvalue().splitlines()[2].endswith(",60,")


def test_the_interval_over_copies_is_the_binomials_95_percent_one():
    # 40 copies with one alarm each, half of them true: a resample's precision is Binomial(40, 1/2) / 40,
    # whose 2.5% and 97.5% quantiles are 14 / 40 and 26 / 40 (P(X <= 13) = 0.019, P(X <= 14) = 0.040,
    # P(X <= 25) = 0.960, P(X <= 26) = 0.981); a 90% interval would be 15 / 40 to 25 / 40
    copies = [CopyTally(1, k % 2, (), 3600.0) for k in range(40)]
    low, high = detection_intervals({"half": copies}, draws=4000)["half"]["precision"]
    assert low == pytest.approx(0.35, abs=0.01) and high == pytest.approx(0.65, abs=0.01)


def test_summary_json_is_strict_json_with_null_for_a_detector_that_found_nothing(tmp_path):
    """A detector that detects nothing has no mean time to detect: summary.json held Python's NaN
    token there, which strict JSON readers (JavaScript's JSON.parse, RFC 8259) refuse."""
    written = {}
    tallies = {**_tallies(), "blind": [CopyTally(1, 0, (IncidentTimes(0, 3, 100, 130, None),
                                                        IncidentTimes(0, 4, 300, 330, None)), 3600.0),
                                       CopyTally(0, 0, (IncidentTimes(1, 5, 200, 260, None),), 3600.0)]}
    write_detection_report(
        tmp_path, "grid_1x1", [f"lane_{k}" for k in range(6)], "max_pressure", 3600, 4,
        Perturbation(name="incident", incidents=IncidentSpec()), tallies, {ORACLE: "lane"}, None, False,
        lambda path, rows: None, lambda path, text: written.update({path.name: text}), lambda line: None)

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    blind = json.loads(written["summary.json"], parse_constant=refuse)["classifiers"]["blind"]
    assert blind["mean_time_to_detect_s"] is None and blind["mean_time_from_evidence_s"] is None
    assert blind["recall"] == 0.0 and blind["alarms"] == 1


def test_summary_json_holds_the_tables_intervals_as_well_as_its_figures(tmp_path):
    """docs/incidents.md: summary.json holds every figure of the table; it held the point figures
    but not their 95% intervals, which only the printed table showed."""
    written = {}
    write_detection_report(
        tmp_path, "grid_1x1", [f"lane_{k}" for k in range(6)], "max_pressure", 3600, 4,
        Perturbation(name="incident", incidents=IncidentSpec()), _tallies(), {ORACLE: "lane"}, None, False,
        lambda path, rows: None, lambda path, text: written.update({path.name: text}), lambda line: None)
    summary = json.loads(written["summary.json"])
    rule, oracle = summary["classifiers"]["rule"], summary["oracle"]
    row = next(line for line in written["table.md"].splitlines() if line.startswith("| rule |"))
    low, high = rule["ci95"]["precision"]
    assert f"{100 * rule['precision']:.1f} [{100 * low:.1f}, {100 * high:.1f}]" in row
    low, high = rule["ci95"]["false_alarms_per_hour"]
    assert f"{rule['false_alarms_per_hour']:.2f} [{low:.2f}, {high:.2f}]" in row
    assert rule["ci95"]["recall"] == [0.0, 1.0] and oracle["ci95"]["mean_time_from_evidence_s"] == [0.0, 0.0]
    assert set(rule["ci95"]) == {"precision", "recall", "false_alarms_per_hour", "mean_time_to_detect_s",
                                 "mean_time_from_evidence_s"}


def test_the_detection_plots_names_do_not_overlap(tmp_path, monkeypatch):
    # every detector beside the three ideal ones: "oracle\nfirst_evidence", "oracle\nfused_evidence" and
    # "oracle\nprobe_evidence" overran each other under their bars
    import matplotlib.pyplot as plt

    from envs.evaluation.report import detection_bars

    names = ["oracle_first_evidence", "oracle_fused_evidence", "oracle_probe_evidence", "blockage_rule", "gap_rule",
             "learned_mlp", "probe_fusion", "learned_fusion", "probe_only"]
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    detection_bars({n: {"precision": 0.9, "recall": 0.8, "mean_time_to_detect_s": 70.0} for n in names},
                   tmp_path / "detection.png", "title")
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [label.get_window_extent(renderer) for label in ax.get_xticklabels()]
        assert [label.get_text().replace("\n", "_") for label in ax.get_xticklabels()] == names
        assert not any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])
    close(fig)


def test_metrics_csv_leaves_a_figure_empty_where_summary_json_has_null(tmp_path):
    """Per copy, `rule` misses copy 1's closure: no mean time to detect there. summary.json says
    null; metrics.csv, written by evaluate.py's writer, said 'nan' (an empty cell is the CSV's null)."""
    import evaluate

    write_detection_report(
        tmp_path, "grid_1x1", [f"lane_{k}" for k in range(6)], "max_pressure", 3600, 4,
        Perturbation(name="incident", incidents=IncidentSpec()), _tallies(), {ORACLE: "lane"}, None, False,
        evaluate._write_csv, lambda path, text: path.write_text(text), lambda line: None)
    text = (tmp_path / "metrics.csv").read_text()
    assert "nan" not in text.lower(), text
    rows = {(r["classifier"], r["copy"]): r for r in csv.DictReader(io.StringIO(text))}
    assert rows[("rule", "1")]["mean_time_to_detect_s"] == "" and rows[("rule", "1")]["precision"] == "0.0"
    assert float(rows[("rule", "0")]["mean_time_to_detect_s"]) == pytest.approx(35.0)
