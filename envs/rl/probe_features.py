"""Probe-vehicle observation features, registered into `envs.rl.features`' registry (which
imports this module). They read the latest probe reports of each copy (`ProbeSensor.latest`,
`envs.incidents.probes`: every ``probes.interval_s`` seconds; zeros before a copy's first report
and with ``probes.p`` = 0), per incoming lane, laid out as ``lane_count``:

=====================  ==================================================  ======================
feature                raw value (per incoming lane)                       normalised by
=====================  ==================================================  ======================
``probe_reports``      probe reports on the lane                           lane storage:
                                                                           length / 7.5 m
``probe_halted``       of those, halted (reported speed < 0.1 m/s)         lane storage
``probe_queue_gap``    distance from the stop line of the halted probe     the lane's length
                       nearest it (0 without one), clipped onto the lane
                       [0, length]: large when a queue stands mid-lane
                       (behind a blockage), small at a red light
=====================  ==================================================  ======================

The environment must be given probes (``env.probes``, a `ProbeSpec`); without them these
features are refused when the environment is built (a silent zero would look like a sensor).
"""

from __future__ import annotations

import torch

from envs.errors import ConfigError
from envs.rl.features import FeatureContext, _lane_bound, _lanes_value, register_observation

PROBE_FEATURES = ("probe_reports", "probe_halted", "probe_queue_gap")


def check_probe_observations(names, probe_p: float, source: str, unread_ok: bool = False) -> None:
    """ConfigError for probe features without probes (they would read a silent zero) and, unless
    `unread_ok` (an env recording probes for a detector), for probes no feature reads (simulated for
    nothing)."""
    reading = [name for name in names if reads_probes(name)]
    if reading and not probe_p > 0:
        raise ConfigError(source, "observations", reading[0],
                          "reads probe-vehicle reports: set probes.p > 0 (e.g. env.probes.p=0.05)")
    if probe_p > 0 and not reading and not unread_ok:
        raise ConfigError(source, "probes.p", probe_p, "no observation reads probe reports (the probe_* features): "
                          "the probes would be simulated for nothing")


def reads_probes(name: str) -> bool:
    """Whether observation feature `name` reads probe reports, itself or wrapped
    (``neighbour_mean:probe_halted``)."""
    return name.rpartition(":")[2] in PROBE_FEATURES


def _latest(ctx: FeatureContext):
    if ctx.probes is None:  # the environment refuses these features earlier; this is a direct caller
        raise ConfigError("<env>", "probes", None, "probe features need FeatureContext.probes (a ProbeSensor)")
    return ctx.probes.latest


@register_observation(
    "probe_reports", lambda lay: lay.max_in_lanes, lambda ctx, norm: (0.0, _lane_bound(ctx, norm)),
    doc="probe-vehicle reports per incoming lane (latest report time)",
)
def _obs_probe_reports(ctx, normalise):
    return _lanes_value(ctx, _latest(ctx).reports, normalise)


@register_observation(
    "probe_halted", lambda lay: lay.max_in_lanes, lambda ctx, norm: (0.0, _lane_bound(ctx, norm)),
    doc="halted probe vehicles per incoming lane (latest report time)",
)
def _obs_probe_halted(ctx, normalise):
    return _lanes_value(ctx, _latest(ctx).halted, normalise)


def _gap_bounds(ctx: FeatureContext, normalise: bool) -> tuple[float, float]:
    return 0.0, 1.0 if normalise else float(ctx.network.lane_length.max())


@register_observation(
    "probe_queue_gap", lambda lay: lay.max_in_lanes, _gap_bounds,
    doc="distance from the stop line of the nearest halted probe, per incoming lane (0: none)",
)
def _obs_probe_queue_gap(ctx, normalise):
    length = ctx.network.lane_length
    gap = torch.minimum(_latest(ctx).halted_nearest_m.clamp(min=0.0), length.unsqueeze(0))
    if normalise:
        gap = gap / length.clamp(min=1e-6)
    return _lanes_value(ctx, gap, False)
