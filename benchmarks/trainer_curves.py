"""Held-out travel time against agent-steps and against wall seconds, for several training runs
(e.g. the two trainers on one scenario), from each run's ``progress.csv``:

    python benchmarks/trainer_curves.py outputs/hz_torchrl outputs/hz_sb3 \
        --labels torchrl sb3 --out docs/results/hangzhou_4x4_trainers.png

Each evaluation row has the agent-steps it was taken at; its wall second is read from the
training rows' ``time/time_elapsed`` at the same agent-steps (linear interpolation: the
evaluations themselves log no clock). One JSON line per evaluation point.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common import emit  # noqa: E402
from envs.errors import ConfigError  # noqa: E402

STEPS, ELAPSED, EVAL = "time/total_timesteps", "time/time_elapsed", "eval/travel_time/mean"
SOURCE = "benchmarks/trainer_curves.py"


def eval_points(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(agent-steps, wall seconds, travel time) of each evaluation of one run."""
    if not (run_dir / "progress.csv").is_file():  # a mistyped folder was a FileNotFoundError traceback
        raise ConfigError(SOURCE, "runs", str(run_dir), "no progress.csv there: give train.py run folders "
                                                        "(hydra.run.dir)")
    with open(run_dir / "progress.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    clock = np.array([(float(r[STEPS]), float(r[ELAPSED])) for r in rows if r.get(ELAPSED) and r.get(STEPS)])
    evals = np.array([(float(r[STEPS]), float(r[EVAL])) for r in rows if r.get(EVAL) and r.get(STEPS)])
    if clock.size == 0 or evals.size == 0:
        raise SystemExit(f"{run_dir / 'progress.csv'}: no '{ELAPSED}' or '{EVAL}' rows")
    # before the first training row the clock is at its set-up: start the line at 0 s
    wall = np.interp(evals[:, 0], np.concatenate([[0.0], clock[:, 0]]), np.concatenate([[0.0], clock[:, 1]]))
    return evals[:, 0], wall, evals[:, 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run directories (hydra.run.dir)")
    parser.add_argument("--labels", nargs="+", help="one per run (default: the directory names)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"--labels: {len(labels)} labels for {len(args.runs)} runs")
    fig, (by_steps, by_wall) = plt.subplots(1, 2, figsize=(10, 4), dpi=110, sharey=True)
    for run, label in zip(args.runs, labels):
        steps, wall, travel = eval_points(run)
        for s, w, t in zip(steps, wall, travel):
            emit({"benchmark": "trainer_curves", "run": str(run), "label": label,
                  "agent_steps": int(s), "wall_s": round(float(w), 1), "travel_time_s": round(float(t), 1)})
        # the untrained policy's first evaluation is several times worse: leave it off the plot
        keep = steps > 0
        by_steps.plot(steps[keep], travel[keep], "-o", label=label, markersize=3)
        by_wall.plot(wall[keep], travel[keep], "-o", label=label, markersize=3)
    by_steps.set_xlabel("agent-steps")
    by_wall.set_xlabel("wall seconds since training started (time/time_elapsed)")
    by_steps.set_ylabel("mean travel time on held-out demand (s)")
    for ax in (by_steps, by_wall):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    plt.close(fig)


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
