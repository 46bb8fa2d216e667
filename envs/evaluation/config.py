"""The defaults of an evaluation: the episodes every controller runs (`EvalEpisodes`, shared by
evaluate.py and training's periodic evaluation), evaluate.py's report options
(`EvaluationConfig`) and its incident-detection task (`DetectionConfig`).

Data only: agents/ppo/config.py registers them, inside the apps' schemas, with Hydra's
ConfigStore, so ``configs/evaluate.yaml`` holds no default of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from envs.incidents.probes import ProbeSpec
from envs.scenario.splits import DemandSpec


@dataclass
class EvalEpisodes:
    """Held-out evaluation episodes: samples 0..seeds-1 of the "eval" split, which training's
    poisson/jitter demands never draw; every controller runs on each."""

    seeds: int = 3
    steps: int = 3600  # simulated seconds per episode
    # envs/scenario/splits.py: poisson | jitter | original (the flow file as written; seeds are then identical)
    demand: DemandSpec = field(default_factory=lambda: DemandSpec(mode="poisson"))


@dataclass
class EvaluationConfig(EvalEpisodes):
    """evaluate.py's ``eval`` group: the episodes, and how they are reported."""

    plots: bool = True  # travel-time bars and CDF, queue over time (detection: precision / recall bars)
    progress: bool = True  # tqdm progress bars on stderr


@dataclass
class LearnedDetectionConfig:
    """The learned incident classifier (agents/incidents/classifiers.py, `LearnedClassifier`)."""

    history: int = 6  # readings per lane in its input window
    hidden: int = 64  # hidden layer width
    epochs: int = 30
    folds: int = 4  # models on all-but-one fold of copies each; calibration out of fold


@dataclass
class DetectionConfig:
    """``task=incident_detection`` (envs/incidents/detection.py, agents/incidents/classifiers.py)."""

    controller: str = "max_pressure"  # the signal controller running while lanes are closed
    # uniform | traffic (lanes drawn in proportion to their traffic); null = perturbation.incidents.placement
    placement: Optional[str] = None
    train_copies: int = 64  # training-split recordings the classifiers are calibrated / trained on
    copies: int = 64  # held-out evaluation copies (eval split): 1 h each, perturbation.incidents closures per copy
    interval_s: int = 10  # seconds between detector readings
    # calibration target per lane class on the training recordings (out-of-fold for the learned one)
    target_precision: float = 0.95
    # blockage_rule, gap_rule, learned_mlp (lane detectors); probe_fusion, learned_fusion (lane detectors and
    # probes); probe_only (probes alone; needs probes.p > 0) — agents/incidents/detection_task.py
    classifiers: List[str] = field(default_factory=lambda: ["blockage_rule", "learned_mlp"])
    learned: LearnedDetectionConfig = field(default_factory=LearnedDetectionConfig)
    # probe vehicles recorded beside the lane detectors (envs/incidents/probes.py); p = 0: none
    probes: ProbeSpec = field(default_factory=ProbeSpec)


__all__ = ["DetectionConfig", "EvalEpisodes", "EvaluationConfig", "LearnedDetectionConfig"]
