"""The incident-detection task's detectors by name: which sensors each reads, calibrating them on
a training recording, and their held-out alarms and tallies beside the ideal detector of each
sensor set (evaluate.py ``task=incident_detection`` and benchmarks/incident_detection.py).

==================  ========  ==============================================================
detector            sensors   what (module)
==================  ========  ==============================================================
``blockage_rule``   lane      persistence rule on the stop line (classifiers.py)
``gap_rule``        lane      empty road ahead of a halted vehicle, or the blockage rule (gap_rule.py)
``learned_mlp``     lane      MLP over lane-detector windows (classifiers.py)
``probe_fusion``    fused     the gap rule with the probe gap added (probe_fusion.py)
``learned_fusion``  fused     the MLP with the probe summary added (learned_fusion.py)
``probe_only``      probe     the MLP over the probe summary alone (learned_fusion.py)
==================  ========  ==============================================================

The ideal detector of a sensor set (`ORACLES`) alarms at each closure's first evidence to those
sensors (envs/incidents/evidence.py): the floor of that set's time to detect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agents.incidents.classifiers import BlockageRule, LaneLayout, LearnedClassifier
from agents.incidents.gap_rule import GapRule
from agents.incidents.learned_fusion import LearnedFusion, ProbeOnly
from agents.incidents.probe_fusion import ProbeFusionRule
from envs.errors import ConfigError
from envs.incidents.detection import Recording, oracle_alarms, tally

DETECTORS = {"blockage_rule": "lane", "gap_rule": "lane", "learned_mlp": "lane", "probe_fusion": "fused",
             "learned_fusion": "fused", "probe_only": "probe"}
LEARNED = {"learned_mlp": LearnedClassifier, "learned_fusion": LearnedFusion, "probe_only": ProbeOnly}
GAP_RULES = {"gap_rule": GapRule, "probe_fusion": ProbeFusionRule}
ORACLES = {"lane": "oracle_first_evidence", "fused": "oracle_fused_evidence", "probe": "oracle_probe_evidence"}


@dataclass(frozen=True)
class LearnedSettings:
    """The learned detectors' shape and training (envs/evaluation/config.py holds the defaults)."""

    history: int = 6
    hidden: int = 64
    epochs: int = 30
    folds: int = 4


def check_detectors(names, probe_p: float, train_copies: int, folds: int) -> None:
    """Config errors before any recording: no name (the training copies were recorded for nothing),
    an unknown name, a probe-only detector without probes, a fold count the training copies cannot hold."""
    if not list(names):
        raise ConfigError("<config>", "detection.classifiers", list(names),
                          f"no detector to calibrate on the training copies; known: {', '.join(DETECTORS)}")
    for k, name in enumerate(names):
        if name not in DETECTORS:
            raise ConfigError("<config>", "detection.classifiers", name, f"known: {', '.join(DETECTORS)}")
        if name in list(names)[:k]:  # the table had one row for both
            raise ConfigError("<config>", "detection.classifiers", name, "listed twice")
        if DETECTORS[name] == "probe" and probe_p <= 0:
            raise ConfigError("<config>", "detection.probes.p", probe_p,
                              f"{name} reads probe reports only: needs a probe share > 0")
    # out-of-fold calibration needs a copy left out of every model, and a model per fold; checked
    # without a learned classifier too, as the other learned.* keys are
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2 or (
            any(name in LEARNED for name in names) and folds > train_copies):
        raise ConfigError("<config>", "detection.learned.folds", folds,
                          f"must be an integer in [2, detection.train_copies = {train_copies}]")


def check_training_incidents(train: Recording, copies: int) -> None:
    """A ConfigError, before the held-out copies are recorded, when the training copies drew no
    incident (a ``rate_per_hour`` whose Poisson draws were all 0): every detector would be
    calibrated on nothing and run with arbitrary thresholds (the rules said only "precision
    undefined")."""
    if not any(train.incidents):
        raise ConfigError("<config>", "detection.train_copies", copies,
                          "the training copies drew no incident (perturbation.incidents.rate_per_hour over its "
                          "start_s window): nothing to calibrate the detectors on; give more copies or a higher rate")


def check_read_options(detection, probe_p: float, steps: int) -> None:
    """Config errors before any recording for options the run would accept and not read: the
    learned detectors' shape and training without a learned detector, the probes' settings
    without probes recorded; and a reading interval longer than the recorded episode (no
    reading at all: the run crashed at its end)."""
    from envs.evaluation.config import LearnedDetectionConfig
    from envs.incidents.probes import ProbeSpec

    if int(detection.interval_s) > int(steps):
        raise ConfigError("<config>", "detection.interval_s", int(detection.interval_s),
                          f"longer than the recorded episode (eval.steps = {steps} s): not one reading")
    unread = []
    if not any(name in LEARNED for name in detection.classifiers):
        unread += [("learned", key, "no learned detector is listed") for key in ("history", "hidden", "epochs")
                   if detection.learned[key] != getattr(LearnedDetectionConfig, key)]
    if not records_probes(detection.classifiers, probe_p):
        unread += [("probes", key, "no probes are recorded (probes.p = 0, no detector reads them)")
                   for key in ("interval_s", "gps_noise_m", "speed_noise", "dropout_p", "seed")
                   if detection.probes[key] != getattr(ProbeSpec, key)]
    if unread:
        group, key, why = unread[0]
        raise ConfigError("<config>", f"detection.{group}.{key}", detection[group][key], f"nothing reads it: {why}")


def records_probes(names, probe_p: float) -> bool:
    """Whether the detection task records probes: a probe share set, or a detector that reads them."""
    return probe_p > 0 or any(DETECTORS[name] != "lane" for name in names)


def calibrate(name: str, train: Recording, layout: LaneLayout, precision: float, learned: LearnedSettings,
              log=print, progress=None):
    """Detector `name` calibrated / trained on the training recording `train`; returns
    ``(detector, chosen)`` (its parameters and training figures)."""
    if name == "blockage_rule":
        detector = BlockageRule()
        return detector, detector.calibrate(train, layout, precision=precision)
    if name in GAP_RULES:
        detector = GAP_RULES[name]()
        return detector, detector.calibrate(train, layout, precision=precision)
    detector = LEARNED[name](history=learned.history, hidden=learned.hidden, folds=learned.folds, seed=0)
    try:
        chosen = detector.fit(train, layout, epochs=learned.epochs, precision=precision, log=log, progress=progress)
    except ConfigError as error:  # no incident left a trace it reads
        if error.field != "recording.copies":
            raise
        raise ConfigError("<config>", "detection.train_copies", len(train.readings),
                          f"{name}: {error.reason}") from error
    return detector, chosen


def describe(name: str, chosen: dict, target: float | None = None) -> str:
    """One line of what calibration chose; says so where its training precision misses `target`
    (no candidate reached it: the detector runs, but its alarms are less reliable than asked)."""
    if name == "blockage_rule":
        what = f"green_s = {chosen['green_s']:g}, permissive_green_s = {chosen['permissive_green_s']:g}"
    elif name in GAP_RULES:
        what = (f"persist = {chosen['persist']}, gap_m = {chosen['gap_m']:g}, entry lanes {chosen['entry_persist']} / "
                f"{chosen['entry_gap_m']:g}, blockage rule {'on' if chosen['use_blockage'] else 'off'}"
                f"{', localised' if chosen.get('localised') else ''}")
    else:
        what = f"thresholds {chosen['probability']:.3f}, permissive lanes {chosen['permissive_probability']:.3f}"
    reached = chosen["precision"]
    if math.isnan(reached):
        return f"{name}: {what} (no alarm on the training incidents: precision undefined)"
    short = "" if target is None or reached >= target else f", below the target {target:g}"
    return f"{name}: {what} (training precision {reached:.3f}{short})"


def alarms(detector, recording: Recording, layout: LaneLayout) -> np.ndarray:
    """``[B, T, N]`` the detector's alarms on every copy of `recording`."""
    if detector.sensors == "lane":
        return np.stack([detector.detect(copy, layout) for copy in recording.readings])
    if recording.probes is None:
        raise ConfigError("<config>", "detection.probes", None, f"{detector.name} needs a recording with probes")
    return np.stack([detector.detect(copy, layout, recording.probes[b]) for b, copy in enumerate(recording.readings)])


def held_out_tallies(recording: Recording, detectors: dict, layout: LaneLayout) -> dict[str, list]:
    """Per row name, the per-copy tallies on the held-out `recording`: first the ideal detector of
    each sensor set the detectors read (lane detectors' always), then the detectors, each scored
    from the first evidence to its own sensors."""
    sets = ["lane"] + [s for s in ("fused", "probe") if any(DETECTORS[n] == s for n in detectors)]
    copies = range(recording.readings.shape[0])
    out = {}
    for sensors in sets:
        ideal = oracle_alarms(recording, sensors)
        out[ORACLES[sensors]] = [tally(recording, ideal[b], b, sensors) for b in copies]
    for name, detector in detectors.items():
        raised = alarms(detector, recording, layout)
        out[name] = [tally(recording, raised[b], b, DETECTORS[name]) for b in copies]
    return out


def sensors_of(row: str) -> str:
    """The sensor set of a row of `held_out_tallies` (a detector or an ideal detector)."""
    return DETECTORS.get(row) or next(s for s, oracle in ORACLES.items() if oracle == row)


__all__ = ["DETECTORS", "GAP_RULES", "LEARNED", "ORACLES", "LearnedSettings", "alarms", "calibrate", "check_detectors",
           "check_training_incidents", "describe", "held_out_tallies", "sensors_of"]
