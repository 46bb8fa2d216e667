"""Perturbations for robustness work: incidents in the engine and demand surges.

A `Perturbation` composes (from Hydra's ``configs/perturbation/``, or in code):

- ``incidents`` (`IncidentSpec`): per copy, ``count`` lane incidents on chosen lanes (CityFlow
  lane ids) or on random lanes that end at a signalised intersection, each starting at a time
  drawn from ``start_s`` (a number or a ``[low, high]`` range), lasting ``duration_s``, with
  ``capacity`` 0 (a closure: nothing leaves the lane, upstream lane choice avoids it where the
  route allows) or in (0, 1) (a capacity drop: the lane's speed limit scaled), at the place
  ``position``: ``stop_line`` (the default: the whole lane, acting at its stop line), a fraction
  of the lane's length in [0, 1] from its start, or ``random`` (uniform over the lane's length,
  drawn from the copy's incident stream after its lanes and times, so stop-line draws are
  unchanged). ``rate_per_hour`` (instead of ``count``): a Poisson number of incidents per copy
  (network) with mean rate x the ``start_s`` window's hours, drawn first from the copy's
  incident stream, onsets uniform over the window (a homogeneous Poisson process; lanes by
  ``placement`` as ever) — the city-day's incidents (benchmarks/city_day.py). At a place, a closure
  is a blockage the vehicles behind it queue at while those past it go on, and a capacity drop
  slows the rest of the lane (`envs.engine.incident_rules`). The engine applies them
  (`envs.engine.step`); every copy draws its own. ``placement`` says how random lanes are drawn:
  ``uniform`` (the default) — every lane of the pool alike; ``traffic`` — in proportion to the
  traffic the copy's demand sends through each lane (`lane_traffic`), since real crashes and
  breakdowns happen where vehicles are (exposure): a lane no trip uses is never drawn.
- ``surge`` (`SurgeSpec`): demand multiplied by a time-varying factor ``f(t)`` of the departure
  time: 1 outside ``[start_s, end_s)``; inside, it climbs linearly from 1 to ``scale`` over the
  first ``ramp_s`` seconds, holds ``scale``, and falls back to 1 over the last ``ramp_s`` seconds
  (a trapezoid; ``ramp_s`` 0 is a step, the whole window at ``scale``). Each trip is kept
  ``floor(f) + Bernoulli(f - floor(f))`` times (binomial thinning below 1), replicas departing at
  the same step.
- ``detectors`` (`DetectorFaultSpec`): faults of the lane detectors, which change what agents
  *observe* (the ``lane_count`` / ``lane_halting`` readings), never the traffic or the rewards:
  Gaussian noise (``noise_std`` vehicles; the reading is rounded and never negative, as a
  counter's), dropouts (each reading lost with ``dropout_p``), stuck detectors (each lane's with
  ``stuck_p`` per episode, frozen at its reading at ``stuck_at_s``) and dead intersections (all
  detectors of an intersection, with ``dead_p`` per episode). A lost or dead reading is 0 in RL
  observations and NaN (missing) for the deployment controller (`agents.deploy.simulated`).

Seeds: copy ``index`` of split ``split`` draws from ``SeedSequence(seed, spawn_key=(split seed
of index, stream))`` — evaluation and training perturbations never share a draw, as demand
samples do not (`envs.scenario.splits.split_seed`).

`lane_traffic(network, trips)`: a trip counts once on each road of its route; on every road but
its last it is shared evenly by the lanes that serve its movement onto the next road (the
engine's lane choice picks among exactly those lanes, by room, so in expectation they share
it), and on its last road by all the road's lanes. The copy's own trips are used (its demand
sample after any surge), so the weights are the traffic that copy really carries over the
episode; ``sample_incidents`` then needs them (``trips=``).

Every field is checked when the spec is built: a closure on an unknown lane, a negative
duration, a capacity outside [0, 1), a probability outside [0, 1] or a placement other than
``uniform`` / ``traffic`` is a `ConfigError` naming the field and the value.

Where each part lives: `perturbation_specs` (the specs, `perturbation_from_config`, the seeds),
`demand_perturbations` (incidents and surges on a copy's demand), `detector_faults`
(`DetectorFaults`, the one function that applies detector faults to readings); this module
re-exports them.
"""

from __future__ import annotations

from envs.incidents.demand_perturbations import (
    Incident,
    lane_traffic,
    sample_incidents,
    surge_trips,
    with_incidents,
)
from envs.incidents.detector_faults import DetectorFaults
from envs.incidents.perturbation_specs import (
    PLACEMENTS,
    DetectorFaultSpec,
    IncidentSpec,
    Perturbation,
    SurgeSpec,
    check_incident_lanes,
    perturbation_from_config,
)
from envs.scenario.network import lane_ids

__all__ = [
    "DetectorFaultSpec", "DetectorFaults", "Incident", "IncidentSpec", "PLACEMENTS", "Perturbation", "SurgeSpec",
    "check_incident_lanes", "lane_ids", "lane_traffic", "perturbation_from_config", "sample_incidents",
    "surge_trips", "with_incidents",
]
