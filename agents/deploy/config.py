"""export.py's structured config: `ExportConfig` holds every default of an export (registered
with Hydra's ConfigStore as ``export_schema``, first in ``configs/export.yaml``'s defaults),
and `agents.deploy.export.export_policy` takes its keyword defaults from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class ExportCheck:
    """After writing, the ONNX model's actions against the torch policy's on recorded decisions."""

    seconds: int = 600  # simulated seconds of decisions to compare ONNX with torch on (0 = skip)
    copies: int = 2  # evaluation demand seeds run side by side for the check


@dataclass
class ExportEngine:
    """Where the check's simulator and torch policy run (the export itself is on the CPU)."""

    device: str = "cpu"  # cpu | cuda | cuda:N; a device this machine lacks is an error naming engine.device


@dataclass
class ExportConfig:
    checkpoint: str = MISSING  # a train.py checkpoint (.zip from trainer=sb3, .pt from trainer=torchrl)
    out: Optional[str] = None  # directory for the files; null = beside the checkpoint
    name: Optional[str] = None  # file stem inside out, never a path (/, \, .., absolute or empty refused);
    # null = the checkpoint's (best.zip -> best.onnx, best.json)
    opset: int = 18  # ONNX opset of the exported graph (18 or newer: what the exporter writes)
    overwrite: bool = False  # replace an existing <out>/<name>.onnx / .json (otherwise an error, before any work)
    max_green_s: float = 120.0  # the policy runtime never shows one green longer than this
    # a phase with vehicles waiting is never red longer than this (the runtime's max-red guard); null = off
    # (docs/deployment.md, "The runtime", says why it is off by default)
    max_red_s: Optional[float] = None
    data_dir: Optional[str] = None  # where the checkpoint's dataset is found (null = as at training); refused for
    # a generated scenario or one given by path, which read no dataset
    check: ExportCheck = field(default_factory=ExportCheck)
    engine: ExportEngine = field(default_factory=ExportEngine)


ConfigStore.instance().store(name="export_schema", node=ExportConfig)

__all__ = ["ExportCheck", "ExportConfig", "ExportEngine"]
