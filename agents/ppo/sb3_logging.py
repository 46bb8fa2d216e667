"""The SB3 trainer's run log: TensorBoard (``RUN/tb/``) and ``RUN/progress.csv`` written
atomically (the layout the TorchRL trainer's `agents.ppo.torchrl_logging.RunLog` follows)."""

from __future__ import annotations

from pathlib import Path

from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat

from agents.ppo.atomic_files import write_csv_atomic


def run_logger(run_dir: Path) -> Logger:
    (run_dir / "tb").mkdir(parents=True, exist_ok=True)
    return Logger(str(run_dir), [TensorBoardOutputFormat(str(run_dir / "tb")),
                                 AtomicCSVOutput(run_dir / "progress.csv")])


class AtomicCSVOutput(KVWriter):
    """SB3's progress.csv layout (one row per dump, a column per key, the header widened when
    keys appear), each dump rewriting the whole file atomically: SB3's CSVOutputFormat rewrites
    it in place, so a kill mid-dump could leave it torn."""

    def __init__(self, path: Path) -> None:
        self.path, self.keys, self.rows = Path(path), [], []

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        row = {key: value for key, value in key_values.items()
               if not (key_excluded.get(key) and "csv" in key_excluded[key])}
        self.keys += sorted(set(row) - set(self.keys))
        self.rows.append(row)
        write_csv_atomic(self.path, self.keys, self.rows)

    def close(self) -> None:
        pass


__all__ = ["AtomicCSVOutput", "run_logger"]
