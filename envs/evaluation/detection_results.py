"""The incident-detection results file (``docs/results/incident_detection.json``, written by
benchmarks/incident_detection.py): one entry per detector, placement and probe share p, with
every figure of the detection table and its 95% bootstrap interval over held-out copies.

Entry fields (`ENTRY_FIELDS`): ``detector``, ``sensors`` (lane | probe | fused: whose first
evidence its delays count from), ``placement``, ``p``, ``precision``, ``recall``,
``false_alarms_per_hour``, ``mean_time_to_detect_s`` (from onset), ``mean_time_from_evidence_s``,
``oracle_floor_s`` (the ideal detector's mean time to detect with the same sensors, over the
closures with evidence), ``mean_gap_to_floor_s`` (the detector's time to detect minus the floor's,
per closure both detected and with evidence, averaged: the two means are over different closures),
``ci95``
(``{figure: [low, high]}`` for the five figures), ``alarms``, ``true_alarms``, ``detected``,
``incidents``, ``with_evidence``, ``copies``, ``command`` (what re-runs it) and ``wall_s`` (the
wall time of the sweep point it belongs to). A detector that could not run at a sweep point is
an entry with ``skipped`` (the reason) and no figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from envs.evaluation.report import DETECTION_COLUMNS, detection_intervals

FIGURES = tuple(figure for figure, _, _, _ in DETECTION_COLUMNS)
ENTRY_FIELDS = ("detector", "sensors", "placement", "p", *FIGURES, "oracle_floor_s", "mean_gap_to_floor_s", "ci95",
                "alarms", "true_alarms", "detected", "incidents", "with_evidence", "copies", "command", "wall_s")


def _number(value: float) -> float | None:
    """JSON has no NaN: a figure without a value (no alarm, nothing detected) is null."""
    return None if value is None or not math.isfinite(value) else float(value)


def result_entries(tallies: dict[str, list], sensors_of, placement: str, p: float, command: str, wall_s: float,
                   draws: int = 1000, seed: int = 0) -> list[dict]:
    """One entry per row of `tallies` (name -> per-copy tallies, as the detection table's);
    `sensors_of(name)` names the row's sensor set. The ideal detector of the row's sensors gives
    ``oracle_floor_s``."""
    entries = []
    for name, row in detection_intervals(tallies, draws, seed).items():
        scores = row["scores"]
        entries.append({
            "detector": name, "sensors": sensors_of(name), "placement": placement, "p": float(p),
            **{figure: _number(getattr(scores, figure)) for figure in FIGURES},
            "oracle_floor_s": _number(scores.oracle_floor_s),
            "mean_gap_to_floor_s": _number(scores.mean_gap_to_floor_s),
            "ci95": {figure: [_number(low), _number(high)] for figure, (low, high) in
                     ((f, row[f]) for f in FIGURES)},
            "alarms": scores.alarms, "true_alarms": scores.true_alarms, "detected": scores.detected,
            "incidents": scores.incidents, "with_evidence": scores.with_evidence,
            "copies": len(tallies[name]), "command": command, "wall_s": round(float(wall_s), 1),
        })
    return entries


def skipped_entry(detector: str, sensors: str, placement: str, p: float, reason: str, command: str) -> dict:
    return {"detector": detector, "sensors": sensors, "placement": placement, "p": float(p), "skipped": reason,
            "command": command}


def missing_fields(entries: list[dict]) -> tuple[str, list[str]] | None:
    """The first entry lacking an `ENTRY_FIELDS` field (its detector and what it lacks), or None."""
    for entry in entries:
        missing = [f for f in ENTRY_FIELDS if f not in entry] if "skipped" not in entry else []
        if missing:
            return entry.get("detector"), missing
    return None


def write_results(path: Path, entries: list[dict], meta: dict) -> dict:
    """Write ``{"meta": meta, "results": entries}`` as JSON (NaN-free); returns it."""
    lacking = missing_fields(entries)
    if lacking:
        raise ValueError(f"result entry {lacking[0]!r} lacks {lacking[1]}")
    out = {"meta": meta, "results": entries}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(out, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return out


__all__ = ["ENTRY_FIELDS", "FIGURES", "missing_fields", "result_entries", "skipped_entry", "write_results"]
