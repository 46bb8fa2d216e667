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
(``outputs/DATE/TIME/``) receives ``.hydra/config.yaml`` (every hyperparameter), ``tb/``
(TensorBoard), ``progress.csv``, ``curves.png`` (travel time vs agent-steps) and
``checkpoints/{last,best}.zip``; what is logged under which
prefix is in agents/ppo/sb3_trainer.py. A checkpoint runs in a simulator as a controller:
``agents.ppo.PolicyController(path)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

import agents.ppo.config  # noqa: F401  (registers the structured config "train_schema")
from agents.ppo.atomic_files import write_text_atomic
from agents.ppo.sb3_trainer import train as train_sb3
from envs.errors import exit_on_error
from envs.evaluation.report import training_curves


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_error():  # a bad config, scenario or checkpoint: one line on stderr, exit status 2
        run_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
        if cfg.trainer == "torchrl":  # imported only when asked for: it loads TorchRL
            from agents.ppo.torchrl_trainer import train_torchrl as train
        else:
            train = train_sb3
        result = train(cfg, run_dir)
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
        print(f"checkpoints in {result['checkpoints']}; TensorBoard: tensorboard --logdir {run_dir / 'tb'}")


if __name__ == "__main__":
    main()
