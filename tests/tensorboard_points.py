"""What a training run wrote to TensorBoard, read back for the tests."""

from __future__ import annotations

from pathlib import Path


def scalar_events(tb_dir: str | Path) -> dict[str, list]:
    """Per scalar tag in the event files under `tb_dir`: its events in the order written, repeats
    kept (each has `.step` and `.value`, a float32 as TensorBoard keeps it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir))
    events.Reload()
    return {tag: list(events.Scalars(tag)) for tag in events.Tags()["scalars"]}
