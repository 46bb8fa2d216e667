"""Does the lane-only gap (agents/incidents/gaps.py `lane_gap`) tell a mid-lane closure from
ordinary traffic? A check on TRAINING copies only, recorded exactly as the sweep
(benchmarks/incident_detection.py) records them:

    GRIDLIGHT_DATA_DIR=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/lane_gap_check.py \\
        --scenario hangzhou_4x4 --train-copies 32 --placements uniform,traffic

Per placement and outflow condition (the gap counted only while nothing crossed the stop line,
or always) it prints one JSON line with how often the gap is positive on (lane, reading) pairs
with an active closure and on all others, how long the gap stays positive in a row on each, and
how many of the positive readings away from closures are on entry lanes (roads from outside
the network, `LaneLayout.entry`), and the precision / recall / mean time to detect of the bare
gap alarm (gap >= gap_m for `persist`
readings, held until the lane discharges) over a grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import evaluate  # noqa: E402
from agents.incidents.classifiers import _run_length, hold_until_discharge, lane_layout  # noqa: E402
from agents.incidents.gap_rule import gap_alarms  # noqa: E402
from agents.incidents.gaps import lane_gap  # noqa: E402
from benchmarks.common import emit, log  # noqa: E402
from benchmarks.incident_detection import check_sweep_args, compose_config, parse_args as sweep_args  # noqa: E402
from envs.incidents.detection import record_sweep, score  # noqa: E402

PERSISTS = (1, 2, 3)
GAPS_M = (10.0, 30.0, 50.0, 100.0)
RUN_BINS = 5  # run lengths 1..4 and 5 or more


def run_histogram(positive: np.ndarray, where: np.ndarray) -> list[int]:
    """Readings of `where` with the gap positive, by how many readings in a row it has been so."""
    runs = np.stack([_run_length(copy) for copy in positive])[where & positive]
    return np.bincount(np.minimum(runs, RUN_BINS), minlength=RUN_BINS + 1)[1:].tolist()


def check(recording, entry, placement: str, quiet_only: bool) -> dict:
    gap = lane_gap(recording.readings, quiet_only)
    truth, positive = recording.truth, gap > 0
    away = positive & ~truth
    grid = []
    for persist in PERSISTS:
        for gap_m in GAPS_M:
            s = score(recording, hold_until_discharge(gap_alarms(gap, persist, gap_m), recording.readings))
            grid.append({"persist": persist, "gap_m": gap_m, "alarms": s.alarms, "precision": s.precision,
                         "recall": s.recall, "mean_time_to_detect_s": s.mean_time_to_detect_s})
    return {"benchmark": "lane_gap_check", "placement": placement, "split": recording.split,
            "copies": int(recording.readings.shape[0]), "incidents": sum(len(i) for i in recording.incidents),
            "quiet_only": quiet_only,
            "closure_readings": int(truth.sum()), "closure_readings_gap_positive": int(positive[truth].sum()),
            "other_readings": int((~truth).sum()), "other_readings_gap_positive": int(away.sum()),
            "entry_lanes": int(entry.sum()), "lanes": int(entry.size),
            "other_readings_gap_positive_on_entry_lanes": int(away[..., entry].sum()),
            "closure_readings_gap_positive_on_entry_lanes": int((positive & truth)[..., entry].sum()),
            "run_lengths_closure_1_2_3_4_5plus": run_histogram(positive, truth),
            "run_lengths_other_1_2_3_4_5plus": run_histogram(positive, ~truth),
            "oracle_floor_s": score(recording, np.zeros_like(truth)).oracle_floor_s, "grid": grid}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--scenario", default="hangzhou_4x4")
    parser.add_argument("--train-copies", type=int, default=32)
    parser.add_argument("--placements", default="uniform,traffic")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # before any recording, each bad flag named (a scenario Hydra cannot compose was its traceback)
    check_sweep_args(sweep_args(["--scenario", args.scenario, "--train-copies", str(args.train_copies),
                                 "--placements", args.placements]), "benchmarks/lane_gap_check.py")
    for placement in args.placements.split(","):
        sweep = sweep_args(["--scenario", args.scenario, "--train-copies", str(args.train_copies)])
        cfg = compose_config(sweep, placement)
        start = time.perf_counter()
        scenario, perturbation = evaluate.detection_scenario(cfg)
        det = cfg.detection
        train = record_sweep(scenario, evaluate.build_controller(det.controller, cfg), perturbation, "train",
                             list(range(args.train_copies)), int(cfg.eval.steps), int(det.interval_s),
                             evaluate.demand_spec(cfg.eval.demand, "eval.demand"), None,
                             evaluate.engine_params(cfg), [])[0]
        log(f"{placement}: recorded {args.train_copies} training copies in {time.perf_counter() - start:.0f} s")
        entry = lane_layout(scenario.network, train.lanes).entry
        for quiet_only in (True, False):
            emit(check(train, entry, placement, quiet_only))


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
