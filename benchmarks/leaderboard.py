"""The learning-quality leaderboard: learned policies (several training seeds) against every
classical controller, tuned ones included, on held-out demand; writes ``docs/results/leaderboard.json``.

    python benchmarks/leaderboard.py --scenario hangzhou_4x4
    python benchmarks/leaderboard.py --scenario grid_16x8 --train-seeds 0 1 2 --steps 3000000

Per scenario: ``train.py`` runs once per training seed with its defaults (``train=fast``, the
given ``--steps``; the wall time of each run is recorded), then ``evaluate.py`` runs the
checkpoints beside the classical controllers on the same ``--eval-seeds`` evaluation demands, in
one batched simulation, with ``<controller>_tuned`` for each controller that has a tuned preset
(``configs/controller/<controller>_tuned_<scenario>.yaml``, from ``python -m agents.classical.tune``).
A training run or evaluation whose output is already in ``--runs-dir`` is reused, so an
interrupted leaderboard continues where it stopped; one of another command there (other seeds,
steps, controllers, overrides) is refused, naming its folder, and so is a training run whose checkpoint
records other settings than today's train.py gives its command (an earlier version's defaults), naming
each. ``--train-override`` and ``--eval-override`` add to the commands; a key the script owns (the
scenario, agent, seed, steps, evaluation seeds, controllers, checkpoints, deployed models, evaluation
perturbation, run folder) is refused, naming the flag to use or why.

What it reports, per controller: mean travel time over the evaluation seeds with its 95%
bootstrap CI over seeds (for the learned policy: per evaluation seed the mean over training seeds,
so the CI is over demand, and each training seed's own mean beside it), delay, the command and
the wall time. Per scenario: the best classical controller, the learned policy's paired reduction
against it (per evaluation seed, averaged over training seeds, with its CI), whether the target
reduction (``--target-percent``, 5) is met, and the *free-flow part* of travel time: travel time
minus delay (see docs/evaluation.md's metrics), the time the trips would take at the speed limit
(plus the second each enters and its last step counted whole, which no controller removes either).
No controller can go below it, so ``100 * delay / travel time`` of the best classical controller is
the largest reduction any controller could reach. One JSON line per scenario on stdout.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import ROOT, at_least, check_trained_as_today, emit, fast_train_overrides, machine_info, run_logged

from agents.classical.tuned_presets import preset_path  # noqa: E402
from agents.classical.tuning import SEARCH_SPACES  # noqa: E402
from envs.errors import ConfigError  # noqa: E402
from envs.evaluation.stats import bootstrap_mean, reduction_percent  # noqa: E402

SOURCE = "benchmarks/leaderboard.py"
CLASSICAL = ("fixed_time", "fixed_time_webster", "max_pressure", "sotl", "efficient_mp", "advanced_mp")
PRIMARY, DELAY = "travel_time/mean", "delay"
# the keys of train.py's and evaluate.py's command lines that the script owns, and why: an override
# of one won in Hydra while the board reported the flag's value, or its rows were misread
TRAIN_KEYS = {"scenario": "give --scenario", "agent": "give --agent", "seed": "give --train-seeds",
              "train.total_agent_steps": "give --steps", "eval.seeds": "give --eval-seeds",
              "hydra.run.dir": "give --runs-dir"}
EVAL_KEYS = {"scenario": "give --scenario", "eval.seeds": "give --eval-seeds", "hydra.run.dir": "give --runs-dir",
             "controllers": "it runs every classical controller and tuned preset",
             "checkpoint": "it evaluates its own training runs",
             "deployed": "its row would be averaged in as one more training seed",
             "perturbation": "the board reads the clean rows, under a command that says perturbed"}


def reusable(record_path: Path, command: str, *outputs: Path) -> dict | None:
    """The record of a finished run of `command` in its folder (an interrupted leaderboard goes on
    from it), None where there is none. A finished run of another command (other seeds, steps,
    controllers or overrides) is refused: its figures would be reported under this run's settings."""
    if not (record_path.exists() and all(path.exists() for path in outputs)):
        return None
    record = json.loads(record_path.read_text())
    if record.get("command") != command:
        raise SystemExit(f"error: {record_path.parent} holds a run of `{record.get('command')}`, not of `{command}`: "
                         "remove that folder or give another --runs-dir")
    return record


def train(args, seed: int, run_dir: Path) -> dict:
    """One training run (reused when a finished run of the same command is there): its
    checkpoint, command, wall."""
    overrides = [*fast_train_overrides(args.scenario, args.agent, seed, args.steps, args.eval_seeds),
                 *args.train_override, f"hydra.run.dir={run_dir}"]
    record_path = run_dir / "leaderboard_train.json"
    record = reusable(record_path, "python train.py " + " ".join(overrides[:-1]), run_dir / "checkpoints" / "last.zip")
    if record is not None:
        check_trained_as_today(run_dir, overrides[:-1])
        return record
    run_dir.mkdir(parents=True, exist_ok=True)
    wall = run_logged([sys.executable, "train.py", *overrides], run_dir.parent / f"train_s{seed}.log")
    summary = json.loads((run_dir / "summary.json").read_text())
    record = {"seed": seed, "checkpoint": str(run_dir / "checkpoints" / "last.zip"),
              "command": "python train.py " + " ".join(overrides[:-1]), "wall_s": round(wall, 1),
              "agent_steps": summary["num_timesteps"], "agent_steps_per_s": summary["agent_steps_per_s"]}
    record_path.write_text(json.dumps(record, indent=1))
    return record


def evaluate(args, controllers: list[str], checkpoints: list[str], extra: list[str], out_dir: Path) -> dict:
    """One evaluate.py run (reused when a finished run of the same command is there): per
    controller, per-seed arrays."""
    overrides = [f"scenario={args.scenario}", f"controllers=[{','.join(controllers)}]",
                 f"eval.seeds={args.eval_seeds}", *extra]
    if checkpoints:
        overrides.append(f"checkpoint=[{','.join(checkpoints)}]")
    record_path, command = out_dir / "leaderboard_eval.json", "python evaluate.py " + " ".join(overrides)
    if reusable(record_path, command, out_dir / "metrics.csv", out_dir / "summary.json") is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        wall = run_logged([sys.executable, "evaluate.py", *overrides, f"hydra.run.dir={out_dir}"],
                          out_dir.parent / f"{out_dir.name}.log")
        record_path.write_text(json.dumps({"command": command, "wall_s": round(wall, 1)}, indent=1))
    record = json.loads(record_path.read_text())
    names = json.loads((out_dir / "summary.json").read_text())["controllers"]
    per_seed: dict[str, dict[str, list[float]]] = {name: {PRIMARY: [], DELAY: []} for name in names}
    with open(out_dir / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["condition"] == "clean":  # rows come seed by seed in order
                for key in (PRIMARY, DELAY):
                    per_seed[row["controller"]][key].append(float(row[key]))
    return {"names": names, "per_seed": per_seed, **record}


def entry(values: np.ndarray, delay: np.ndarray, command: str, wall_s: float, **more) -> dict:
    tt = bootstrap_mean(values)
    return {"travel_time_s": round(tt.mean, 2), "ci95": [round(tt.low, 2), round(tt.high, 2)],
            "per_eval_seed": [round(float(v), 2) for v in values], "delay_s": round(float(delay.mean()), 2),
            "command": command, "wall_s": wall_s, **more}


def scenario_board(args) -> dict:
    runs = args.runs_dir / args.scenario
    trained = [train(args, seed, runs / f"{args.agent}_s{seed}") for seed in args.train_seeds]
    checkpoints = [t["checkpoint"] for t in trained]
    tuned = [f"{c}_tuned" for c in SEARCH_SPACES if preset_path(c, args.scenario).is_file()]
    classical = [*CLASSICAL, *tuned]
    board = evaluate(args, classical, checkpoints, args.eval_override, runs / "eval")

    controllers: dict[str, dict] = {}
    for name in classical:
        seeds = board["per_seed"][name]
        controllers[name] = entry(np.array(seeds[PRIMARY]), np.array(seeds[DELAY]), board["command"], board["wall_s"])
    best_classical = min(controllers, key=lambda n: controllers[n]["travel_time_s"])
    best_values = np.array(controllers[best_classical]["per_eval_seed"])

    learned_names = board["names"][len(classical):]
    learned_tt = np.array([board["per_seed"][n][PRIMARY] for n in learned_names])  # [training seed, eval seed]
    learned_delay = np.array([board["per_seed"][n][DELAY] for n in learned_names])
    reduction = np.mean([reduction_percent(best_values, row) for row in learned_tt], axis=0)
    cut = bootstrap_mean(reduction)
    learned = f"{args.agent} (learned)"
    controllers[learned] = entry(
        learned_tt.mean(0), learned_delay, "; ".join(t["command"] for t in trained),
        [t["wall_s"] for t in trained],
        per_training_seed={str(t["seed"]): round(float(row.mean()), 2) for t, row in zip(trained, learned_tt)},
        evaluated_by=board["command"], agent_steps=[t["agent_steps"] for t in trained],
    )
    best = controllers[best_classical]
    free_flow = best["travel_time_s"] - best["delay_s"]
    return {
        "controllers": controllers,
        "best_classical": best_classical,
        "learned_vs_best_classical_percent": {"mean": round(cut.mean, 2),
                                              "ci95": [round(cut.low, 2), round(cut.high, 2)]},
        "target_percent": args.target_percent,
        "target_met": bool(cut.mean >= args.target_percent),
        "free_flow_s": round(free_flow, 2),
        "largest_possible_reduction_percent": round(100.0 * best["delay_s"] / best["travel_time_s"], 2),
        "training_seeds": list(args.train_seeds),
        "eval_seeds": args.eval_seeds,
    }


def markdown_table(boards: dict) -> str:
    """The docs' table: per scenario the best classical controller, the learned policy, the paired
    reduction and the free-flow bound."""
    lines = ["| scenario | best classical (s) | learned: mean [CI] (each training seed) (s) "
             "| reduction vs best classical (%) | free-flow part (s) | largest possible reduction (%) "
             "| training wall (s) |",
             "|---|---|---|---:|---:|---:|---|"]
    for scenario, board in boards.items():
        best = board["controllers"][board["best_classical"]]
        learned = next(v for k, v in board["controllers"].items() if k.endswith("(learned)"))
        cut = board["learned_vs_best_classical_percent"]
        seeds = " / ".join(f"{v:.1f}" for v in learned["per_training_seed"].values())
        lines.append(
            f"| `{scenario}` | {board['best_classical']} {best['travel_time_s']:.1f} [{best['ci95'][0]:.1f}, "
            f"{best['ci95'][1]:.1f}] | {learned['travel_time_s']:.1f} [{learned['ci95'][0]:.1f}, "
            f"{learned['ci95'][1]:.1f}] ({seeds}) | {cut['mean']:.1f} [{cut['ci95'][0]:.1f}, {cut['ci95'][1]:.1f}] "
            f"| {board['free_flow_s']:.1f} | {board['largest_possible_reduction_percent']:.1f} "
            f"| {' / '.join(f'{w:.0f}' for w in learned['wall_s'])} |")
    return "\n".join(lines)


def recorded_boards(out: Path) -> dict:
    """The boards already in `out` (none: empty), or a ConfigError naming --out: checked before the first
    training run too, as a folder, a file that is not a JSON object or a parent that is a file ended the
    leaderboard with a traceback once every run was done, its board written nowhere."""
    if out.is_dir() or out.parent.is_file():
        raise ConfigError(SOURCE, "--out", str(out), "is a folder, or inside a file: give the .json file to write")
    if not out.exists():
        return {}
    try:
        boards = json.loads(out.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(SOURCE, "--out", str(out), f"cannot be read as the leaderboard's JSON: {error}") from None
    if not isinstance(boards, dict):
        raise ConfigError(SOURCE, "--out", str(out), "holds no leaderboard (a JSON object of boards by scenario)")
    return boards


def check_flags(args) -> None:
    """The run's flags, before the first training run (hours): a bad count failed only inside train.py,
    as "failed (2) ... see LOG"; a repeated training seed reused its run and counted twice in the
    learned mean; a NaN target was never met; --table beside --scenario was ignored; an override of a
    key the script sets (seed=3, eval.seeds=3) won in Hydra while the board recorded the flag's value."""
    if args.table:
        raise ConfigError(SOURCE, "--table", True, f"prints the boards recorded in --out without running; with "
                          f"--scenario {args.scenario} it would be ignored: give one or the other")
    if args.eval_seeds < 2:  # one seed's bootstrap interval has zero width: it was recorded as [mean, mean]
        raise ConfigError(SOURCE, "--eval-seeds", args.eval_seeds, "must be an integer >= 2: the board's 95% "
                          "intervals are over evaluation seeds (evaluate.py shows none for one seed)")
    at_least(args.steps, 1, SOURCE, "--steps")
    for seed in args.train_seeds:
        at_least(seed, 0, SOURCE, "--train-seeds")  # train.py's seed
    if len(set(args.train_seeds)) != len(args.train_seeds):
        raise ConfigError(SOURCE, "--train-seeds", args.train_seeds, "name each training seed once: a repeated "
                          "seed reuses its run, so its checkpoint would count twice in the learned mean")
    if not math.isfinite(args.target_percent):
        raise ConfigError(SOURCE, "--target-percent", args.target_percent, "must be a finite number")
    recorded_boards(args.out)
    for flag, overrides, owned in (("--train-override", args.train_override, TRAIN_KEYS),
                                   ("--eval-override", args.eval_override, EVAL_KEYS)):
        for override in overrides:
            key = override.split("=", 1)[0].lstrip("+~")
            if key in owned:
                raise ConfigError(SOURCE, flag, override, f"{key} is the leaderboard's own: {owned[key]}")


def commit(root: Path = ROOT) -> str:
    """HEAD's short hash, with ``-dirty`` when tracked files differ from it: the figures come from the
    working tree, and a bare hash attributed uncommitted code to that commit."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=root, capture_output=True).returncode == 1
    return (done.stdout.strip() + ("-dirty" if changed else "")) if done.stdout.strip() else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", help="the scenario to (re)compute; without it, --table is required")
    parser.add_argument("--table", action="store_true", help="print --out's boards as the docs' markdown table")
    parser.add_argument("--agent", default="ppo_shared")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3_000_000, help="agent-steps per training run")
    parser.add_argument("--train-override", action="append", default=[], help="extra train.py override")
    parser.add_argument("--eval-override", action="append",
                        help="evaluate.py override, repeatable (default: engine.compile=true)")
    parser.add_argument("--target-percent", type=float, default=5.0)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "leaderboard")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "leaderboard.json")
    args = parser.parse_args()
    args.eval_override = args.eval_override or ["engine.compile=true"]
    if args.scenario is None:
        if not args.table:
            parser.error("give --scenario (to run it) or --table (to print the recorded boards)")
        if not args.out.is_file():  # was a FileNotFoundError traceback
            raise ConfigError(SOURCE, "--out", str(args.out), "no such file: the boards --table "
                              "prints are the ones a run with --scenario wrote there")
        print(markdown_table(recorded_boards(args.out)))
        return

    check_flags(args)
    board = scenario_board(args)
    board.update(date=datetime.date.today().isoformat(), commit=commit(), machine=machine_info())
    existing = recorded_boards(args.out)
    existing[args.scenario] = board
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(sorted(existing.items())), indent=1) + "\n")
    emit({"benchmark": "leaderboard", "scenario": args.scenario, **{k: board[k] for k in (
        "best_classical", "learned_vs_best_classical_percent", "target_met", "free_flow_s",
        "largest_possible_reduction_percent")}})


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
