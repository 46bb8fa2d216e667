"""The SB3 trainer's run log: TensorBoard (``RUN/tb/``) and ``RUN/progress.csv`` written
atomically (the layout the TorchRL trainer's `agents.ppo.torchrl_logging.RunLog` follows)."""

from __future__ import annotations

from pathlib import Path

from stable_baselines3.common.logger import KVWriter, Logger, TensorBoardOutputFormat
from torch.utils.tensorboard import SummaryWriter

from agents.ppo.atomic_files import defined_scalars, earlier_progress, last_row_step, purge_step, write_csv_atomic


def run_logger(run_dir: Path, resumed_at: int | None = None) -> Logger:
    """`resumed_at`: a resumed run's starting agent-steps; its folder's progress.csv continues."""
    (run_dir / "tb").mkdir(parents=True, exist_ok=True)
    return Logger(str(run_dir), [PurgingTensorBoardOutput(str(run_dir / "tb"), purge_step(resumed_at)),
                                 AtomicCSVOutput(run_dir / "progress.csv", resumed_at)])


def silent_logger() -> Logger:
    """A logger that writes nothing, for `learn()` outside a training run (benchmarks, tests):
    without one, SB3 makes an empty ``/tmp/SB3-<date-time>`` folder on every `learn()` call."""
    return Logger(folder=None, output_formats=[])


class PurgingTensorBoardOutput(TensorBoardOutputFormat):
    """SB3's TensorBoard output, its writer opened with a purge step (SB3's takes none)."""

    def __init__(self, folder: str, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        # an undefined figure (NaN) is no point, as it is an empty progress.csv cell
        values = defined_scalars(key_values)
        super().write(values, {key: key_excluded[key] for key in values}, step)


class AtomicCSVOutput(KVWriter):
    """SB3's progress.csv layout (a row per step, a column per key, the header widened when keys
    appear), each dump rewriting the whole file atomically: SB3's CSVOutputFormat rewrites it in
    place, so a kill mid-dump could leave it torn. Dumps at the step of the row before go into that
    row (SB3's before the update, the callback's after it: one row per rollout, as the TorchRL
    trainer writes)."""

    def __init__(self, path: Path, resumed_at: int | None = None) -> None:
        self.path = Path(path)
        self.keys, self.rows = [], []
        self.last_step: int | None = None
        if resumed_at is not None:
            self.keys, self.rows = earlier_progress(self.path, resumed_at)
            self.last_step = last_row_step(self.rows)

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        row = {key: value for key, value in key_values.items()
               if not (key_excluded.get(key) and "csv" in key_excluded[key])}
        self.keys += sorted(set(row) - set(self.keys))
        if self.rows and step == self.last_step:
            self.rows[-1].update(row)
        else:
            self.rows.append(row)
        self.last_step = step
        write_csv_atomic(self.path, self.keys, self.rows)

    def close(self) -> None:
        pass


__all__ = ["AtomicCSVOutput", "PurgingTensorBoardOutput", "run_logger", "silent_logger"]
