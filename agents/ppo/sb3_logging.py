"""The SB3 trainer's run log: TensorBoard (``RUN/tb/``) and ``RUN/progress.csv`` written
atomically (the layout the TorchRL trainer's `agents.ppo.torchrl_logging.RunLog` follows)."""

from __future__ import annotations

from pathlib import Path

from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat

from agents.ppo.atomic_files import earlier_progress, write_csv_atomic


def run_logger(run_dir: Path, resumed_at: int | None = None) -> Logger:
    """`resumed_at`: a resumed run's starting agent-steps; its folder's progress.csv continues."""
    (run_dir / "tb").mkdir(parents=True, exist_ok=True)
    return Logger(str(run_dir), [TensorBoardOutputFormat(str(run_dir / "tb")),
                                 AtomicCSVOutput(run_dir / "progress.csv", resumed_at)])


class AtomicCSVOutput(KVWriter):
    """SB3's progress.csv layout (one row per dump, a column per key, the header widened when
    keys appear), each dump rewriting the whole file atomically: SB3's CSVOutputFormat rewrites
    it in place, so a kill mid-dump could leave it torn."""

    def __init__(self, path: Path, resumed_at: int | None = None) -> None:
        self.path = Path(path)
        self.keys, self.rows = [], []
        if resumed_at is not None:
            self.keys, self.rows = earlier_progress(self.path, resumed_at)

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        row = {key: value for key, value in key_values.items()
               if not (key_excluded.get(key) and "csv" in key_excluded[key])}
        self.keys += sorted(set(row) - set(self.keys))
        self.rows.append(row)
        write_csv_atomic(self.path, self.keys, self.rows)

    def close(self) -> None:
        pass


__all__ = ["AtomicCSVOutput", "run_logger"]
