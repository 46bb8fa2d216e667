"""Which observation features detector faults reach (`envs.incidents.detector_faults`): the
per-lane detector readings go through `envs.rl.features.detected`, and so do the features built
from them (pressure from lane counts; the per-movement counts split each lane's reading over its
vehicles' movements, `envs.incidents.movement_split`, as the classical rules read them); the
signal's own state is known to the controller; the probe features read probes. `segment_counts`
reads where along its lane each vehicle is, which no modelled detector reports: a policy observing
it under faulty detectors would train or be evaluated on true counts while its robustness is
reported, so it is refused, naming the feature. A ``neighbour_mean:`` feature is reached when
the feature it wraps is."""

from __future__ import annotations

from envs.errors import ConfigError
from envs.rl.probe_features import reads_probes

DETECTOR_FEATURES = ("lane_count", "lane_halting", "approach_moving", "approach_halting")  # read as deployed
# computed from the detectors' readings (`envs.rl.features`, `envs.rl.movement_features`)
FROM_DETECTOR_FEATURES = ("pressure", "movement_approach_moving", "movement_approach_halting", "movement_queue",
                          "efficient_pressure", "effective_running")
SIGNAL_FEATURES = ("phase_onehot", "time_in_phase", "green_time", "movement_red_time", "intersection_id")


def features_faults_miss(names) -> list[str]:
    """The features of `names` that detector faults do not reach."""
    reached = DETECTOR_FEATURES + FROM_DETECTOR_FEATURES + SIGNAL_FEATURES
    return [name for name in names if name.rpartition(":")[2] not in reached and not reads_probes(name)]


def check_faults_reach(names, detectors, source: str, field: str = "observations") -> None:
    """ConfigError when `detectors` (a fault spec, or None) are on and a feature of `names` reads the
    engine's state instead of the detectors."""
    on = detectors is not None and not getattr(detectors, "is_clean", False)
    missed = features_faults_miss(names) if on else []
    if missed:
        raise ConfigError(source, field, missed, "detector faults do not reach these features (they read the "
                          f"engine's state): observe the detector features instead "
                          f"({', '.join(DETECTOR_FEATURES + FROM_DETECTOR_FEATURES)}), or run without detector faults")


__all__ = ["DETECTOR_FEATURES", "FROM_DETECTOR_FEATURES", "SIGNAL_FEATURES", "check_faults_reach",
           "features_faults_miss"]
