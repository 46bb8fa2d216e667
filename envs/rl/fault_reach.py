"""Which observation features detector faults reach (`envs.incidents.detector_faults`): the
per-lane detector readings go through `envs.rl.features.detected`; the signal's own state is
known to the controller; the probe features read probes. Every other feature (pressure,
segment_counts, the per-movement queues and pressures, effective_running) reads the engine's
state, which faults never touch, so a policy observing one under faulty detectors would train or
be evaluated on true counts while its robustness is reported: refused, naming the features."""

from __future__ import annotations

from envs.errors import ConfigError
from envs.rl.probe_features import reads_probes

DETECTOR_FEATURES = ("lane_count", "lane_halting", "approach_moving", "approach_halting")
SIGNAL_FEATURES = ("phase_onehot", "time_in_phase", "green_time", "movement_red_time", "intersection_id")


def features_faults_miss(names) -> list[str]:
    """The features of `names` that detector faults do not reach."""
    return [name for name in names
            if name not in DETECTOR_FEATURES and name not in SIGNAL_FEATURES and not reads_probes(name)]


def check_faults_reach(names, detectors, source: str, field: str = "observations") -> None:
    """ConfigError when `detectors` (a fault spec, or None) are on and a feature of `names` reads the
    engine's state instead of the detectors."""
    on = detectors is not None and not getattr(detectors, "is_clean", False)
    missed = features_faults_miss(names) if on else []
    if missed:
        raise ConfigError(source, field, missed, "detector faults do not reach these features (they read the "
                          f"engine's state): observe {', '.join(DETECTOR_FEATURES)} instead, or run without "
                          "detector faults")


__all__ = ["DETECTOR_FEATURES", "SIGNAL_FEATURES", "check_faults_reach", "features_faults_miss"]
