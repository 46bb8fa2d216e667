"""Which observation, action and reward choices move the learned policy's travel time, and by how much.

    python benchmarks/learning_ablation.py --scenario hangzhou_4x4
    python benchmarks/learning_ablation.py --scenario jinan_3x4 --variants base movement_5s

Each variant is one ``train.py`` run (``train=fast``, ``--steps`` agent-steps, training seed
``--seed``) whose final held-out evaluation (``eval.seeds`` demands of the eval split, the same
for every variant) is its score; ``VARIANTS`` lists the overrides, each a change against the
previous configuration or against ``base``. A run already in ``--runs-dir`` is reused when its
recorded overrides (``.hydra/overrides.yaml``) are the ones the variant asks for and its checkpoint
records the settings today's train.py gives them (not an earlier version's defaults); otherwise it is
refused rather than mixed in. One JSON line per variant (travel time, change against ``base`` in
s and %, wall seconds); ``--out`` collects them.

One training seed per variant: differences under ~1 s are within what another training seed
moves (docs/training.md, "More training seeds"). The score is on the evaluation demands that
benchmarks/leaderboard.py reports on (samples 0..eval.seeds-1 of the eval split): a configuration
picked here is chosen on them, so the leaderboard's learned rows are not held out from that choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from common import ROOT, check_trained_as_today, emit, fast_train_overrides, machine_info, run_logged

LANE_FEATURES = "phase_onehot,time_in_phase,lane_count,lane_halting"
MOVEMENT_FEATURES = ("phase_onehot,time_in_phase,movement_approach_moving,movement_approach_halting,"
                     "movement_queue,efficient_pressure")
# name -> (what it changes, overrides); each reads against `base` unless it says otherwise
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("the pre-issue configuration: lane counts and halting, 10 s decisions, next-phase action, "
             "queue reward", ["env.decision_interval_s=10", f"env.observations=[{LANE_FEATURES}]"]),
    "decision_5s": ("5 s decisions, lane features",
                    ["env.decision_interval_s=5", f"env.observations=[{LANE_FEATURES}]"]),
    "approach_5s": ("5 s decisions; lane features plus moving/halting vehicles within 100 m per lane (what "
                    "detectors can see)", ["env.decision_interval_s=5", f"env.observations=[{LANE_FEATURES},"
                                           "approach_moving,approach_halting]"]),
    "movement_5s": ("5 s decisions; approach moving/halting, queue and efficient pressure per movement",
                    ["env.decision_interval_s=5", f"env.observations=[{MOVEMENT_FEATURES}]"]),
    "movement_5s_delay_reward": ("movement_5s with the delay reward instead of queue",
                                 ["env.decision_interval_s=5", f"env.observations=[{MOVEMENT_FEATURES}]",
                                  "+env.reward.delay=1", "env.reward.queue=0"]),
    "movement_5s_gamma_098": ("movement_5s with gamma 0.98 (a ~250 s horizon) instead of 0.95",
                              ["env.decision_interval_s=5", f"env.observations=[{MOVEMENT_FEATURES}]",
                               "agent.gamma=0.98"]),
    "movement_5s_neighbours": ("movement_5s plus the neighbours' mean approaching vehicles",
                               ["env.decision_interval_s=5",
                                f"env.observations=[{MOVEMENT_FEATURES},neighbour_mean:movement_approach_moving]"]),
    "movement_5s_keep_or_switch": ("movement_5s with the keep-or-switch action",
                                   ["env.decision_interval_s=5", f"env.observations=[{MOVEMENT_FEATURES}]",
                                    "env.action_mode=keep_or_switch"]),
    "movement_2s": ("movement_5s deciding every 2 s (gamma 0.98 per 2 s decision: a ~100 s horizon, as 0.95 per 5 s)",
                    ["env.decision_interval_s=2", f"env.observations=[{MOVEMENT_FEATURES}]", "agent.gamma=0.98"]),
    "movement_2s_keep_or_switch": ("keep-or-switch every 2 s (gamma 0.98)",
                                   ["env.decision_interval_s=2", f"env.observations=[{MOVEMENT_FEATURES}]",
                                    "env.action_mode=keep_or_switch", "agent.gamma=0.98"]),
}


def run_variant(args, name: str, overrides: list[str]) -> dict:
    run_dir = args.runs_dir / args.scenario / name
    fixed = fast_train_overrides(args.scenario, "ppo_shared", args.seed, args.steps, args.eval_seeds)
    wanted = [*fixed, *overrides, *([f"train.threads={args.threads}"] if args.threads else [])]
    recorded = run_dir / ".hydra" / "overrides.yaml"
    wall, ran = None, wanted
    if (run_dir / "summary.json").exists():
        # torch's thread count is a speed knob: a run with another one is the same experiment
        had = [o for o in yaml.safe_load(recorded.read_text()) if not o.startswith(("hydra.", "train.threads="))]
        if sorted(had) != sorted(o for o in wanted if not o.startswith("train.threads=")):
            raise SystemExit(f"{run_dir}: an existing run with other overrides ({had}); move it away or "
                             f"use another --runs-dir")
        ran = [o for o in yaml.safe_load(recorded.read_text()) if not o.startswith("hydra.")]  # as it ran
        check_trained_as_today(run_dir, ran)  # the same overrides under an earlier version's defaults
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "train.py", *wanted, f"hydra.run.dir={run_dir}"]
        wall = round(run_logged(command, run_dir.parent / f"{name}.log"), 1)
    summary = json.loads((run_dir / "summary.json").read_text())
    final = summary["eval_history"][-1]
    return {"variant": name, "travel_time_s": round(final["travel_time/mean"], 2),
            "agent_steps": final["agent_steps"], "wall_s": wall if wall is not None else final["wall_s"],
            "command": "python train.py " + " ".join(ran)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="hangzhou_4x4")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3_000_000)
    parser.add_argument("--eval-seeds", type=int, default=5)
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "outputs" / "ablation")
    parser.add_argument("--out", type=Path, help="also write the records here (JSON)")
    parser.add_argument("--threads", type=int, help="train.threads for every run (1 on a shared machine: "
                        "two torch threads with a busy core wait on each other at every op)")
    args = parser.parse_args()
    names = args.variants if "base" in args.variants else ["base", *args.variants]
    records = []
    for name in names:
        record = {"benchmark": "learning_ablation", "scenario": args.scenario, "what": VARIANTS[name][0],
                  **run_variant(args, name, VARIANTS[name][1])}
        base = records[0]["travel_time_s"] if records else record["travel_time_s"]
        record["vs_base_s"] = round(record["travel_time_s"] - base, 2)
        record["vs_base_percent"] = round(100.0 * (record["travel_time_s"] - base) / base, 2)
        records.append(record)
        emit(record)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine_info(), "records": records}, indent=1) + "\n")


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
