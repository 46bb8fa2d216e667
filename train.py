"""Train PPO signal controllers (multi-agent: one agent per signalised intersection).

    python train.py                                              # grid_4x4, ppo_shared, seed 0
    python train.py scenario=hangzhou_4x4 agent=ppo_shared seed=0
    python train.py agent=ppo_independent train.total_agent_steps=500000 env.copies=8
    python train.py resume=outputs/DATE/TIME/checkpoints/last.zip train.total_agent_steps=4000000
    tensorboard --logdir outputs                                 # curves of every run

Configs: ``configs/train.yaml`` composes ``scenario/``, ``engine/`` (shared with evaluate.py),
``env/``, ``agent/`` (ppo_shared, ppo_independent), ``train/`` and ``eval/``; the schema
(agents/ppo/config.py, whose dataclasses hold every default) rejects a wrong key or type before
anything runs; a bad value exits with status 2 and one ``error: ...`` line. Hydra's run directory
(``outputs/DATE/TIME/``) receives ``.hydra/config.yaml`` (every hyperparameter; written by train.py once
the folder is this run's, agents/ppo/run_record.py), ``tb/``
(TensorBoard), ``progress.csv``, ``curves.png`` (travel time vs agent-steps), ``train.log`` (the
status lines, timestamped) and ``checkpoints/{last,best}.zip`` (``last`` also on Ctrl-C or
SIGTERM once training has begun; before, they end the run saying there is nothing to save); what
is logged under which prefix is in agents/ppo/sb3_trainer.py. A checkpoint runs in a simulator as a
controller: ``agents.ppo.PolicyController(path)``.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

import hydra
from hydra.types import RunMode
from omegaconf import DictConfig

import agents.ppo.config  # noqa: F401  (registers the structured config "train_schema")
from agents.ppo.config import check_config, check_scenario
from agents.ppo.atomic_files import write_text_atomic
from agents.ppo.interrupts import (
    STOPPED_BEFORE_TRAINING, Terminated, forward_sigterm_to_workers, is_sweep_command, sigterm_interrupts,
    training_began,
)
from agents.ppo.null_nodes import check_command_line
from agents.ppo.run_record import write_run_record
from agents.ppo.tuned_preset_checks import check_tuned_presets
from agents.ppo.run_messages import (
    check_resume, check_resume_folder, run_dir_claimed, run_errors, say, seed_for_resume, status_log, sweep_job_line,
    trainer_for_resume,
)
from agents.ppo.sb3_trainer import train as train_sb3
from envs.errors import ConfigError, exit_on_error
from envs.evaluation.report import training_curves


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hydra_config = hydra.core.hydra_config.HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    # a bad config, scenario or checkpoint: one line on stderr, exit status 2 (in a sweep, the job
    # fails alone); status lines go into RUN/train.log too
    with run_errors(sweep_job_line(hydra_config)), status_log(logging.getLogger().handlers), \
            ExitStack() as held:
        given = {item.lstrip("+~").partition("=")[0] for item in hydra_config.overrides.task}
        check_scenario(cfg)  # a scenario path made absolute, as the checkpoints record it
        if cfg.resume is not None:
            cfg.trainer = trainer_for_resume(str(cfg.resume), cfg.trainer, explicit="trainer" in given)
        check_config(cfg)  # every value check, before anything is said or written (the trainer checks again)
        if cfg.trainer == "torchrl":  # imported only when asked for: it loads TorchRL
            from agents.ppo.torchrl_trainer import train_torchrl as train
            from agents.ppo.torchrl_trainer import trainer_options

            trainer_options(cfg)  # its torchrl.* values, checked as the rest
        else:
            train = train_sb3
        earlier = [name for name in ("checkpoints", "tb") if (run_dir / name).exists()]
        sweep = hydra_config.mode == RunMode.MULTIRUN  # the folder given is the sweep's, its runs under it
        key, value, run = ("hydra.sweep.dir", hydra_config.sweep.dir, f"its run {run_dir} ") if sweep else \
            ("hydra.run.dir", str(run_dir), "")
        if earlier and cfg.resume is None:  # its checkpoints replaced, two runs drawn as one TensorBoard curve
            # the hint names the checkpoint there: last.zip was named for a TorchRL run's last.pt too
            last = next((p for p in (run_dir / "checkpoints" / f"last{s}" for s in (".zip", ".pt")) if p.is_file()),
                        None)  # none: that run ended before its first checkpoint, nothing to continue
            raise ConfigError("<config>", key, value,
                              f"{run}holds an earlier run ({', '.join(earlier)}): give a new folder"
                              + (" or remove that one" if last is None else
                                 f", remove that one, or continue it with resume={last}"))
        held.enter_context(run_dir_claimed(run_dir, key, value, run))  # until the run ends: no second one beside it
        try:
            with sigterm_interrupts():  # from the claim on, SIGTERM ends the run as Ctrl-C does
                result = set_up_and_train(cfg, run_dir, train, given)
        except KeyboardInterrupt as stop:
            if not training_began(stop):  # else the trainer saved last and said how to resume
                say(STOPPED_BEFORE_TRAINING)
            sys.exit(143 if isinstance(stop, Terminated) else 130)
        summary = {
            "num_timesteps": result["num_timesteps"],
            "agent_steps_per_s": round(result["agent_steps_per_s"], 1),
            "best_eval_travel_time": result["best_eval_travel_time"],
            "baselines_travel_time": result["baselines"],
            "eval_history": result["eval_history"],
        }
        write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
        if (run_dir / "progress.csv").is_file():
            training_curves(run_dir / "progress.csv", run_dir / "curves.png",
                            f"{cfg.scenario.name}, {cfg.agent.name}, seed {cfg.seed}")
        say(f"checkpoints in {result['checkpoints']}; TensorBoard: tensorboard --logdir {run_dir / 'tb'}")


def set_up_and_train(cfg: DictConfig, run_dir: Path, train, given: set[str]) -> dict:
    """The run in its claimed folder: a resume's checks, what it says before it starts, its record, the
    training (which says when it compiles the engine step: once its own checks have passed)."""
    if cfg.resume is not None:  # first: a refused resume says its error alone
        check_resume(str(cfg.resume))
        check_resume_folder(str(cfg.resume), run_dir)
        cfg.seed = seed_for_resume(str(cfg.resume), cfg.seed, explicit="seed" in given)
    check_tuned_presets(cfg, list(cfg.eval.baselines))  # a baseline tuned on another scenario or engine: said
    reward = {term: weight for term, weight in cfg.env.reward.items() if weight}
    if len(reward) > 1:  # env.reward={pressure:1.0} merges into the default queue term: say what is trained on
        say("reward: " + " + ".join(f"{weight:g} x {term}" for term, weight in reward.items())
            + " (an env.reward override merges into the default; a weight of 0 drops a term)")
    # the folder is this run's and its checks passed: only now its record (Hydra's would have replaced
    # the record of a run this one was refused beside), with what the run goes on with
    write_run_record(run_dir, cfg, hydra.core.hydra_config.HydraConfig.instance().cfg)
    return train(cfg, run_dir)


if __name__ == "__main__":
    with exit_on_error():  # before Hydra composes the config, which fails on such an override with a traceback
        check_command_line(sys.argv[1:], "train")
    if is_sweep_command(sys.argv[1:]):  # a sweep's own process: its jobs run in worker processes
        forward_sigterm_to_workers()
    main()
