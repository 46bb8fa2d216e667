"""A city-day of incidents: a 24-hour demand on a city network, lane closures at a rate a day,
probe vehicles, and the probe-fusion detector's day. JSON lines on stdout, progress on stderr.

    python benchmarks/city_day.py --scenario grid_16x8 --copies 1 --hours 24 --probe-p 0.05

1. **Calibration** on a *training* run: a shorter simulation (``--train-hours`` from
   ``--train-start-hour``, default the 07:00-09:00 morning peak) of the training split's day
   demand, its own incidents and probes (training seeds), max pressure running the signals;
   `ProbeFusionRule.calibrate` (agents/incidents/probe_fusion.py) picks its thresholds there. It
   never sees the day it scores.
2. **The day**: B copies (``--copies``) of the evaluation split's day demand
   (`envs.scenario.day_demand`: the scenario's one-hour OD pattern over the 24-hour profile;
   the copies share that demand sample and each draws its own incidents and probe vehicles from
   its eval seed), simulated batched with `envs.incidents.detection.record` (lane readings and
   probe summaries every ``--interval-s``), then the calibrated rule over every copy's day.
3. **Scores** (`envs.incidents.detection.score`): incidents, detected, missed, false alarms,
   accuracy as City Brain reports it (the share of the detector's reports that were real
   incidents: precision), recall, mean time to detect from onset, the oracle floor; wall time
   to simulate (engine, controller and recording) and to detect. A score that is 0/0 (recall on a
   day without incidents, accuracy without reports) is null, and ``scores_note`` (also on stderr)
   says which.

Incidents (``--rate-per-hour``, default 25 per network per hour, so a day holds 600 on average,
500+ with probability > 0.9999): `IncidentSpec.rate_per_hour`, a Poisson number over the day
with onsets uniform in time, on lanes drawn by traffic (``--placement``), at a random place
along the lane (``--position``), closed for ``--duration-s``. The calibration run draws its own at
``--train-rate-per-hour`` (default ``--rate-per-hour``), which must be > 0, and a run that drew
none is refused: the rule would be calibrated on nothing (a day without incidents, ``--rate-per-hour
0``, measures false alarms with ``--train-rate-per-hour`` set). ``--probe-p`` must be in (0, 1]: at 0
the probe-fusion rule reads no probe and is the lane-only gap rule, which this script would report
under the probe-fusion name.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace

import numpy as np

from common import emit, log, machine_info, make_controller

from agents.classical import CONTROLLERS
from agents.incidents.classifiers import lane_layout
from agents.incidents.probe_fusion import ProbeFusionRule
from envs.errors import ConfigError, exit_on_error
from envs.incidents.detection import record, score
from envs.incidents.perturbations import IncidentSpec, Perturbation
from envs.incidents.probes import ProbeSpec
from envs.scenario import load_scenario, reads_no_dataset, unread_seed
from envs.scenario.day_demand import DaySpec, day_trips
from envs.scenario.splits import DemandSpec


SOURCE = "benchmarks/city_day.py"


def day_scenario(scenario, spec: DaySpec, split: str, index: int):
    """`scenario` whose own trips are day sample `index` of `split` (what `record` replays)."""
    trips = day_trips(scenario, spec, split, index)
    return replace(scenario, trips=trips, info={**scenario.info, "horizon": spec.steps}), trips.num_trips


def incidents(args, steps: int, rate_per_hour: float) -> Perturbation:
    spec = IncidentSpec(rate_per_hour=rate_per_hour, start_s=[0, steps - 1], duration_s=args.duration_s,
                        placement=args.placement, position=args.position)
    return Perturbation(name="city_day", seed=args.incident_seed, incidents=spec)


class Progress:
    """Progress on stderr once per simulated hour."""

    def __init__(self, what: str, steps: int) -> None:
        self.what, self.steps, self.done, self.start = what, steps, 0, time.perf_counter()

    def __call__(self, n: int) -> None:
        self.done += n
        if self.done % 3600 == 0 or self.done == self.steps:
            log(f"{self.what}: {self.done / 3600:g} of {self.steps / 3600:g} simulated hours, "
                f"{time.perf_counter() - self.start:.0f} s")


def train_rate(args) -> tuple[str, float]:
    """(flag, value) of the calibration run's incident rate: --train-rate-per-hour, else --rate-per-hour."""
    if args.train_rate_per_hour is None:
        return "--rate-per-hour", args.rate_per_hour
    return "--train-rate-per-hour", args.train_rate_per_hour


def record_run(args, scenario, day: DaySpec, split: str, copies: int, probes: ProbeSpec, label: str):
    """`copies` copies of `scenario` (a day scenario) under the controller, with incidents and
    probes, recorded for detection; the demand is the day scenario's own trips."""
    rate = train_rate(args)[1] if split == "train" else args.rate_per_hour
    return record(scenario, make_controller(args.controller), incidents(args, day.steps, rate), split,
                  list(range(copies)), steps=day.steps, interval_s=args.interval_s,
                  demand=DemandSpec("original"), probes=probes, progress=Progress(label, day.steps))


def run(args) -> dict:
    base = load_scenario(args.scenario, seed=args.scenario_seed, data_dir=args.data_dir, device=args.device)
    probes = ProbeSpec(p=args.probe_p)

    train_day = day_spec(args, "train_")
    train_sc, train_trips = day_scenario(base, train_day, "train", 0)
    log(f"training run: {args.train_copies} copies x {args.train_hours:g} h from {args.train_start_hour:g}:00, "
        f"{train_trips} trips")
    started = time.perf_counter()
    training = record_run(args, train_sc, train_day, "train", args.train_copies, probes, "training run")
    layout = lane_layout(base.network, training.lanes)
    rule = ProbeFusionRule()
    try:
        calibration = rule.calibrate(training, layout, args.precision)
    except ConfigError as error:  # no training incident: named by the flags that size the calibration run
        if error.field != "recording.incidents":
            raise
        flag, rate = train_rate(args)
        raise ConfigError(SOURCE, "--train-hours", args.train_hours,
                          f"the calibration run ({args.train_copies} x {args.train_hours:g} h at {rate:g} "
                          "incidents/h) drew no incident: nothing to calibrate the detector on; give more "
                          f"--train-hours or --train-copies, or a higher {flag}") from None
    train_wall = time.perf_counter() - started
    log(f"calibrated on {calibration['incidents']} training incidents: persist {rule.persist}, gap {rule.gap_m} m "
        f"(entry lanes {rule.entry_persist}, {rule.entry_gap_m} m), "
        f"blockage rule {'on' if rule.use_blockage else 'off'}")

    day = day_spec(args, "")
    day_sc, day_trip_count = day_scenario(base, day, "eval", 0)
    log(f"the day: {args.copies} copies x {args.hours:g} h of {args.scenario} "
        f"({base.network.num_intersections} signals), {day_trip_count} trips")
    started = time.perf_counter()
    recording = record_run(args, day_sc, day, "eval", args.copies, probes, "the day")
    simulate_wall = time.perf_counter() - started
    started = time.perf_counter()
    alarms = np.stack([rule.detect(recording.readings[b], layout, recording.probes[b])
                       for b in range(args.copies)])
    detect_wall = time.perf_counter() - started
    scores = score(recording, alarms)
    note = undefined_scores(scores.incidents, scores.alarms)
    if note:
        log(note)
    drawn = [len(x) for x in recording.incidents]
    return {
        "benchmark": "city_day", "scenario": args.scenario, "signals": base.network.num_intersections,
        "copies": args.copies, "hours": args.hours, "start_hour": args.start_hour, "trips_per_copy": day_trip_count,
        "scenario_seed": args.scenario_seed, "peak_scale": args.peak_scale, "incident_seed": args.incident_seed,
        "probe_p": args.probe_p, "rate_per_hour": args.rate_per_hour, "duration_s": args.duration_s,
        "position": args.position, "placement": args.placement, "controller": args.controller,
        "interval_s": args.interval_s, "device": args.device,
        "incidents": scores.incidents, "incidents_per_copy": drawn, "detected": scores.detected,
        "missed": scores.incidents - scores.detected, "reports": scores.alarms,
        "false_alarms": scores.alarms - scores.true_alarms, "accuracy": scores.precision,
        "recall": scores.recall, "scores_note": note, "mean_time_to_detect_s": scores.mean_time_to_detect_s,
        "oracle_floor_s": scores.oracle_floor_s, "with_lane_evidence": scores.with_evidence,
        "mean_gap_to_floor_s": scores.mean_gap_to_floor_s,
        "false_alarms_per_hour": scores.false_alarms_per_hour,
        "simulate_wall_s": simulate_wall, "detect_wall_s": detect_wall, "calibration_wall_s": train_wall,
        "calibration": {"split": training.split, "copies": args.train_copies, "hours": args.train_hours,
                        "start_hour": args.train_start_hour, "rate_per_hour": train_rate(args)[1],
                        "target_precision": args.precision,
                        **{k: v for k, v in calibration.items() if not isinstance(v, (list, dict))}},
        "machine": machine_info(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "python benchmarks/city_day.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }


def undefined_scores(incidents: int, reports: int) -> str | None:
    """The sentence for scores that are 0/0 (null in the JSON), None when both are defined."""
    if incidents == 0 and reports == 0:
        return "no incidents: precision/recall undefined (no incidents and no reports)"
    if incidents == 0:
        return f"no incidents: recall undefined; all {reports} reports are false alarms"
    if reports == 0:
        return "no reports: precision (accuracy) undefined"
    return None


def day_spec(args, prefix: str) -> DaySpec:
    """The day (`prefix` "") or the calibration run (`prefix` "train_") of the options, a bad value
    named by the flag that gave it: DaySpec names its own fields (``day.hours``), which this
    script has no option called."""
    flags = {"start_hour": prefix + "start_hour", "hours": prefix + "hours", "peak_scale": "peak_scale"}
    try:
        return DaySpec(**{field: getattr(args, dest) for field, dest in flags.items()})
    except ConfigError as error:
        dest = flags[error.field.removeprefix("day.")]
        raise ConfigError(SOURCE, "--" + dest.replace("_", "-"), error.value, error.reason) from None


def check_args(args) -> None:
    """Refuse, before any work, what failed late or silently: a 0 ``--interval-s`` divided by zero
    after the training run; a ``--precision`` outside [0, 1] (NaN too) could never be reached, so
    calibration fell back to its best F1 unasked."""
    for flag, value in (("--copies", args.copies), ("--train-copies", args.train_copies),
                        ("--interval-s", args.interval_s)):
        if not value >= 1:
            raise ConfigError(SOURCE, flag, value, "must be >= 1")
    if not 0 <= args.precision <= 1:
        raise ConfigError(SOURCE, "--precision", args.precision, "must be in [0, 1]")
    for prefix in ("train_", ""):
        day_spec(args, prefix)
    unread = unread_seed(args.scenario, args.scenario_seed)
    if unread:  # ignored, while its JSON line said seed 3
        raise ConfigError(SOURCE, "--scenario-seed", args.scenario_seed, unread)
    no_dataset = reads_no_dataset(args.scenario)
    if args.data_dir is not None and no_dataset:  # ignored
        raise ConfigError(SOURCE, "--data-dir", args.data_dir,
                          f"{args.scenario!r} is {no_dataset} and reads no dataset")
    if args.probe_p == 0:  # the probe-fusion rule with no probe report: the lane-only gap rule, under its name
        raise ConfigError(SOURCE, "--probe-p", args.probe_p, "the day's detector (ProbeFusionRule) reads probe "
                          "reports, and p = 0 gives it none: give a probe share in (0, 1]")
    if args.controller not in CONTROLLERS:  # was a bare line with exit 1, after the training run began
        raise ConfigError(SOURCE, "--controller", args.controller, f"unknown controller; known: {sorted(CONTROLLERS)}")
    # the incident and probe specs name their own fields (incidents.rate_per_hour): named by flag here,
    # before the training scenario is built
    rate_flag, rate = train_rate(args)
    for flag, build in (("--probe-p", lambda: ProbeSpec(p=args.probe_p)),
                        (None, lambda: incidents(args, 3600, args.rate_per_hour)),
                        (rate_flag, lambda: incidents(args, 3600, rate))):
        try:
            build()
        except ConfigError as error:
            field = error.field.removeprefix("incidents.").removeprefix("probes.")
            named = flag if flag and field in ("p", "rate_per_hour") else {
                "rate_per_hour": "--rate-per-hour", "duration_s": "--duration-s", "position": "--position",
                "placement": "--placement", "seed": "--incident-seed"}.get(field, field)
            raise ConfigError(SOURCE, named, error.value, error.reason) from None
    if rate == 0:  # calibrated on no incident: arbitrary thresholds
        raise ConfigError(SOURCE, rate_flag, rate, "the calibration run would draw no incident, nothing to calibrate "
                          "the detector on: give a rate > 0 (--train-rate-per-hour sets the calibration run's alone, "
                          "for a day without incidents)")


def main() -> None:
    # the options' help shows their defaults; the module doc (above) says how the day runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenario", default="grid_16x8", help="scenario name (a preset or a dataset)")
    parser.add_argument("--scenario-seed", type=int, default=0, help="the generated scenario's seed (presets)")
    parser.add_argument("--data-dir", default=None, help="datasets folder (else GRIDLIGHT_DATA_DIR)")
    parser.add_argument("--copies", type=int, default=1,
                        help="copies of the day, each with its own incidents and probes")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours of the day, in (0, 24]")
    parser.add_argument("--start-hour", type=float, default=0.0, help="clock hour the day starts at, in [0, 24)")
    parser.add_argument("--peak-scale", type=float, default=1.0,
                        help="the peak hour's trips in units of the scenario's own hour")
    parser.add_argument("--probe-p", type=float, default=0.05, help="share of trips that are probes, in (0, 1]")
    parser.add_argument("--rate-per-hour", type=float, default=25.0, help="incidents per network per hour")
    parser.add_argument("--duration-s", type=float, default=900.0, help="seconds each lane stays closed")
    parser.add_argument("--position", default="random",
                        help="where along the lane: stop_line, random, or a fraction of its length in [0, 1]")
    parser.add_argument("--placement", default="traffic",
                        help="which lanes close: traffic (in proportion to their traffic) or uniform")
    parser.add_argument("--incident-seed", type=int, default=0, help="seed of the incidents' draws")
    parser.add_argument("--train-hours", type=float, default=2.0, help="hours of the calibration (training) run")
    parser.add_argument("--train-start-hour", type=float, default=7.0, help="clock hour the calibration run starts at")
    parser.add_argument("--train-copies", type=int, default=1, help="copies of the calibration run")
    parser.add_argument("--train-rate-per-hour", type=float, default=None,
                        help="incidents per hour in the calibration run (> 0); None: --rate-per-hour")
    parser.add_argument("--precision", type=float, default=0.95, help="calibration's target precision, in [0, 1]")
    parser.add_argument("--interval-s", type=int, default=10, help="seconds between readings (>= 1)")
    parser.add_argument("--controller", default="max_pressure", help="the classical controller running the signals")
    parser.add_argument("--device", default="cpu", help="torch device of the simulation (cpu, cuda, cuda:N)")
    args = parser.parse_args()
    try:
        position = float(args.position)
        args.position = position
    except ValueError:
        pass
    with exit_on_error():  # a bad value: one "error: ..." line naming it, exit status 2
        check_args(args)
        emit(run(args))


if __name__ == "__main__":
    main()
