"""The run folder's record of what ran: ``RUN/.hydra/`` with ``config.yaml`` (the composed config as
the run goes on with it: a scenario path made absolute, a resumed checkpoint's seed and trainer),
``hydra.yaml`` (Hydra's own settings for the run) and ``overrides.yaml`` (the command-line overrides).

train.py writes it, not Hydra: configs/train.yaml sets ``hydra.output_subdir: null``, because Hydra
writes its record before train.py runs, so a second run refused for a folder that another run holds
(``RUN/.train.pid``) or has filled (``checkpoints/``, ``tb/``) replaced that run's record with its own.
train.py writes the record once the folder is its own and the run's checks have passed; the trainer
rewrites ``config.yaml`` once it has loaded the scenario, where that settles ``env.copies``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from agents.ppo.atomic_files import write_text_atomic

RECORD_DIR = ".hydra"  # where Hydra keeps it by default (hydra.output_subdir), so tools that read it find it


def write_run_record(run_dir: Path, cfg: DictConfig, hydra_root: DictConfig) -> Path:
    """``run_dir/.hydra/{config,hydra,overrides}.yaml`` as Hydra writes them (each replaced whole):
    `cfg` the run's config, `hydra_root` Hydra's config for the run (``{"hydra": ...}``)."""
    folder = Path(run_dir) / RECORD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text_atomic(folder / "hydra.yaml", OmegaConf.to_yaml(hydra_root))
    write_text_atomic(folder / "overrides.yaml", OmegaConf.to_yaml(hydra_root.hydra.overrides.task))
    return folder


def rewrite_run_config(run_dir: Path, cfg: DictConfig) -> None:
    """``run_dir/.hydra/config.yaml`` again, where train.py wrote the record, once a trainer has settled a
    value that needs the scenario loaded (``env.copies`` under ``train.max_agents_per_step``)."""
    path = Path(run_dir) / RECORD_DIR / "config.yaml"
    if path.is_file():
        write_text_atomic(path, OmegaConf.to_yaml(cfg))


__all__ = ["RECORD_DIR", "rewrite_run_config", "write_run_record"]
