"""The incident-detection task's report (evaluate.py ``task=incident_detection``, and each point
of benchmarks/incident_detection.py): ``table.md`` (also printed), per-copy ``metrics.csv``,
per-incident ``incidents.csv`` (onset, first evidence per sensor set, the floor, each
detector's delay), ``summary.json`` (the table's figures with their 95% intervals, ``ci95``) and
``detection.png``, from the held-out tallies (one list
of per-copy tallies per row; the ideal detectors' rows first)."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict
from pathlib import Path

from envs.evaluation.report import DETECTION_COLUMNS, ORACLE, detection_bars, detection_intervals, detection_table
from envs.incidents.detection import combine


def write_detection_report(out_dir: Path, scenario: str, lane_names: list[str], controller: str, steps: int,
                           train_copies: int, perturbation, tallies: dict, oracle_sensors: dict[str, str],
                           probe_p: float | None, plots: bool, write_csv, write_text, say=print) -> dict:
    """Write the report files into `out_dir`; `oracle_sensors` maps the ideal detectors' row names
    to their sensor sets; `write_csv(path, rows)` / `write_text(path, text)` write atomically;
    `say(line)` shows the table and where the results are (evaluate.py: console and its log).
    Returns the summary."""
    incidents, placement = perturbation.incidents, perturbation.incidents.placement
    copies = len(tallies[ORACLE])
    intervals = detection_intervals(tallies, draws=1000, seed=0)  # the table's and summary.json's, drawn once
    # every figure of the table in summary.json: each row's 95% intervals too (null where undefined)
    results = {name: {**combine(t).as_dict(),
                      "ci95": {figure: list(intervals[name][figure]) for figure, _, _, _ in DETECTION_COLUMNS}}
               for name, t in tallies.items()}
    oracle = results[ORACLE]
    sensors = "lane detectors" + ("" if probe_p is None else f" and probe vehicles (p = {probe_p:g})")
    text = detection_table(tallies, intervals=intervals) + (
        f"\n\nHeld-out incident seeds: {copies} copies x {steps} s of {scenario} under {controller}, "
        f"{_closures(incidents, oracle['incidents'], copies)} at position `{incidents.position}`, lanes drawn with "
        f"`{placement}` placement, sensors: {sensors}; {oracle['with_evidence']}/{oracle['incidents']} incidents "
        "showed evidence to the lane detectors while active. `oracle_*`: the ideal detector of a sensor set "
        "(first_evidence: lane detectors; probe: probes; fused: both), an alarm at each incident's first "
        "evidence reading to those sensors (docs/incidents.md) — the floor for any detector of them; each "
        "detector's time from evidence counts from its own sensors' evidence. Precision and recall in %; "
        "[low, high] = 95% bootstrap interval over copies.")
    say(text)
    write_text(out_dir / "table.md", text + "\n")
    write_csv(out_dir / "metrics.csv", [{"scenario": scenario, "placement": placement, "classifier": name, "copy": b,
                                         **combine([t]).as_dict()}
                                        for name, per_copy in tallies.items() for b, t in enumerate(per_copy)])
    detectors = [name for name in tallies if name not in oracle_sensors]
    timings = {name: [i for t in per_copy for i in t.incidents] for name, per_copy in tallies.items()}
    write_csv(out_dir / "incidents.csv", [  # one row per held-out incident
        {"copy": first.copy, "lane": lane_names[first.lane], "start_s": first.start,
         "first_evidence_s": first.evidence_at, "oracle_floor_s": first.to_evidence,
         **{f"{oracle_sensors[name]}_first_evidence_s": timings[name][k].evidence_at
            for name in tallies if name in oracle_sensors and name != ORACLE},
         **{f"{name}_detect_s": timings[name][k].to_detect for name in detectors}}
        for k, first in enumerate(timings[ORACLE])
    ])
    summary = {"task": "incident_detection", "scenario": scenario, "controller": controller, "steps": steps,
               "placement": placement, "probes_p": probe_p,
               "copies": copies, "train_copies": train_copies, "perturbation": asdict(perturbation),
               "oracle": oracle, "oracles": {oracle_sensors[n]: results[n] for n in tallies if n in oracle_sensors},
               "classifiers": {name: results[name] for name in detectors}}
    # strict JSON: a detector that found nothing has no mean time (null, not Python's NaN token)
    write_text(out_dir / "summary.json", json.dumps(_no_nan(summary), indent=2, default=float, allow_nan=False))
    if plots:
        detection_bars(results, out_dir / "detection.png",
                       f"{scenario}: incident detection, {copies} held-out copies, {placement} placement"
                       + ("" if probe_p is None else f", probes p = {probe_p:g}"))
    say(f"results in {out_dir}")
    return summary



def _no_nan(value):
    """`value` with every NaN float (a mean over no detections) as None, at any depth."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value):
        return None  # numpy's floats too
    return value


def _closures(incidents, drawn: int, copies: int) -> str:
    """How many closures each copy had: the count, or a rate's Poisson draws (their total)."""
    if incidents.rate_per_hour is None:
        return f"{incidents.count} closure(s) per copy"
    return f"closures at {incidents.rate_per_hour:g} per hour per copy ({drawn} drawn over the {copies} copies)"


__all__ = ["write_detection_report"]
