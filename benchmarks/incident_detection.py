"""Incident detection with probe vehicles: a sweep over the probe share p and the incident
placement, every detector beside the ideal detector of its sensors (the floor).

    GRIDLIGHT_DATA_DIR=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/incident_detection.py \\
        --scenario hangzhou_4x4 --copies 64 --train-copies 64

Per placement (uniform, traffic) it records the training and held-out copies ONCE with a probe
sensor per p (probes change no vehicle's way: `envs.incidents.detection.record_sweep`), exactly
as ``evaluate.py task=incident_detection`` records them (its functions, its config), calibrates
the lane-only detectors once (their inputs do not depend on p) and the probe detectors per p,
on the training copies only, and scores all on the held-out copies. Each point's table, CSVs and
plot go to ``--report-dir/<placement>_p<p>/`` in evaluate.py's format; every point prints one
JSON line; ``--out`` (default outputs/incident_detection/results.json; the recorded results are
``--out docs/results/incident_detection.json``, named explicitly so a trial run never replaces
them) gets every entry (`envs.evaluation.detection_results`). Each entry's ``command`` re-runs its point alone with
evaluate.py (same recordings, same seeds: the same figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

import evaluate  # noqa: E402
from agents.incidents.classifiers import lane_layout  # noqa: E402
from agents.incidents.detection_task import (  # noqa: E402
    DETECTORS, LEARNED, LearnedSettings, calibrate, check_detectors, check_read_options, describe, held_out_tallies,
    sensors_of,
)
from benchmarks.common import emit, log, machine_info  # noqa: E402
from envs.evaluation.detection_results import missing_fields, result_entries, skipped_entry, write_results  # noqa: E402
from envs.errors import ConfigError, exit_on_error  # noqa: E402
from envs.incidents.perturbations import IncidentSpec  # noqa: E402
from envs.incidents.probes import probes_from_config  # noqa: E402

PROBE_SHARES = (0.0, 0.01, 0.05, 0.10, 0.20)
PLACEMENTS = ("uniform", "traffic")
ALL_DETECTORS = tuple(DETECTORS)


def parse_args(argv=None):
    # the first paragraph (the first line alone stopped mid-sentence); every option shows its default
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--scenario", default="hangzhou_4x4", help="scenario name (a preset or a dataset)")
    parser.add_argument("--copies", type=int, default=64, help="held-out copies per placement")
    parser.add_argument("--train-copies", type=int, default=64, help="training copies per placement")
    parser.add_argument("--p", default=",".join(f"{p:g}" for p in PROBE_SHARES), help="probe shares, comma-separated")
    parser.add_argument("--placements", default=",".join(PLACEMENTS), help="incident placements, comma-separated")
    parser.add_argument("--position", default="random", help="perturbation.incidents.position")
    parser.add_argument("--detectors", default=",".join(ALL_DETECTORS), help="detectors to score, comma-separated")
    parser.add_argument("--epochs", type=int, default=None, help="detection.learned.epochs; None: evaluate.py's own")
    parser.add_argument("--out", default=str(ROOT / "outputs/incident_detection/results.json"),
                        help="the JSON of every point (record the results with "
                        "--out docs/results/incident_detection.json)")
    parser.add_argument("--report-dir", default=str(ROOT / "outputs/incident_detection"),
                        help="each point's evaluate.py report goes to <report-dir>/<placement>_p<p>/")
    parser.add_argument("--override", action="append", default=[], help="extra evaluate.py config override")
    parser.add_argument("--merge", action="store_true",
                        help="keep --out's entries of the placements this run does not do (one run per placement)")
    return parser.parse_args(argv)


def check_outputs(args, source: str = "benchmarks/incident_detection.py") -> None:
    """Before the work: --out a file path and --report-dir a folder path, each writable where it
    stands (a folder as --out, or a file as --report-dir, failed after the recordings)."""
    for flag, path, want in (("--out", Path(args.out), "file"), ("--report-dir", Path(args.report_dir), "folder")):
        if path.exists() and path.is_dir() != (want == "folder"):
            raise ConfigError(source, flag, str(path), f"is a {'folder' if path.is_dir() else 'file'}: "
                              f"give the path of a {want}")
        above = next((parent for parent in path.parents if parent.exists()), None)
        if above is not None and not above.is_dir():
            raise ConfigError(source, flag, str(path), f"'{above}' is a file")


def check_mergeable(args) -> None:
    """Before the work: `--merge` keeps --out's other placements, which must carry every field
    this version writes (the check at the write came after a whole sweep)."""
    if not args.merge or not Path(args.out).is_file():
        return
    try:
        earlier = json.loads(Path(args.out).read_text())["results"]
        lacking = missing_fields(earlier)
    except (ValueError, KeyError, TypeError, AttributeError):  # no JSON, or no results list of entries in it
        raise ConfigError("benchmarks/incident_detection.py", "--merge", args.out,
                          "--out is not the results JSON this script writes: nothing to merge into") from None
    if lacking:
        raise ConfigError("benchmarks/incident_detection.py", "--merge", args.out,
                          f"its entries predate the fields {lacking[1]} ({lacking[0]!r} lacks them): re-run every "
                          "placement, the first without --merge")


# evaluate.py keys the sweep sets from its own flags: an --override of one would be ignored by the
# recording (or, for the probe share, by every point but the command each point records)
SWEEP_KEYS = {"task": None, "scenario": "--scenario", "perturbation": None,
              "perturbation.incidents.position": "--position", "detection.placement": "--placements",
              "detection.copies": "--copies", "detection.train_copies": "--train-copies",
              "detection.learned.epochs": "--epochs", "detection.probes.p": "--p",
              "detection.classifiers": "--detectors"}


def check_sweep_args(args, source: str = "benchmarks/incident_detection.py") -> list[float]:
    """The probe shares; before any work, a ConfigError naming the flag of a bad value (they were
    tracebacks from the configs they feed, or from float())."""
    for override in args.override:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in SWEEP_KEYS:
            flag = SWEEP_KEYS[key]
            raise ConfigError(source, "--override", override, "the sweep sets this key itself" +
                              (f": use {flag}" if flag else " (task=incident_detection, perturbation=incident)"))
    if not (ROOT / "configs" / "scenario" / f"{args.scenario}.yaml").is_file():  # Hydra's traceback at compose
        known = sorted(path.stem for path in (ROOT / "configs" / "scenario").glob("*.yaml"))
        raise ConfigError(source, "--scenario", args.scenario, f"no such scenario config; known: {', '.join(known)}")
    for flag, value in (("--copies", args.copies), ("--train-copies", args.train_copies)):
        if not value >= 1:
            raise ConfigError(source, flag, value, "must be >= 1")
    placements = args.placements.split(",")
    for k, placement in enumerate(placements):
        if placement not in PLACEMENTS:
            raise ConfigError(source, "--placements", placement, f"expected some of {list(PLACEMENTS)}")
        if placement in placements[:k]:  # the same point twice: its entries twice, its report over the first
            raise ConfigError(source, "--placements", placement, "listed twice")
    try:
        shares = [float(x) for x in args.p.split(",")]
    except ValueError:
        raise ConfigError(source, "--p", args.p, "expected comma-separated probe shares in [0, 1]") from None
    for k, share in enumerate(shares):
        if not 0 <= share <= 1:
            raise ConfigError(source, "--p", share, "a probe share must lie in [0, 1]")
        if share in shares[:k]:
            raise ConfigError(source, "--p", share, "listed twice")
    position = args.position
    try:
        position = float(position)
    except ValueError:
        pass
    try:
        IncidentSpec(position=position)
    except ConfigError as error:
        raise ConfigError(source, "--position", error.value, error.reason) from None
    return shares


def overrides(args, placement: str, p: float | None = None, detectors=None) -> list[str]:
    out = ["task=incident_detection", f"scenario={args.scenario}", "perturbation=incident",
           f"perturbation.incidents.position={args.position}", f"detection.placement={placement}",
           f"detection.copies={args.copies}", f"detection.train_copies={args.train_copies}"]
    if args.epochs is not None and (detectors is None or any(name in LEARNED for name in detectors)):
        out.append(f"detection.learned.epochs={args.epochs}")  # evaluate.py refuses it where nothing learns
    if p is not None:
        out += [f"detection.probes.p={p:g}", f"detection.classifiers=[{','.join(detectors)}]"]
    return out + list(args.override)


def compose_config(args, placement: str):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=[*overrides(args, placement), "eval.progress=false"])


def point_command(args, placement: str, p: float, detectors) -> str:
    return "python evaluate.py " + " ".join(shlex.quote(o) for o in overrides(args, placement, p, detectors))


def check_points(args, shares: list[float], names: list[str]) -> None:
    """Every point's recorded command as evaluate.py would check it, before any recording: a
    point this script runs must re-run with its command."""
    from agents.ppo.config import check_evaluate_config

    for placement in args.placements.split(","):
        for p in shares:
            detectors = [n for n in names if not (DETECTORS[n] == "probe" and p <= 0)]
            try:
                with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
                    cfg = compose(config_name="evaluate", overrides=overrides(args, placement, p, detectors))
            except HydraException as error:  # an --override Hydra cannot compose: its traceback
                raise ConfigError("benchmarks/incident_detection.py", "--override",
                                  args.override[0] if len(args.override) == 1 else args.override,
                                  str(error).strip().splitlines()[0]) from None
            check_evaluate_config(cfg)
            det = cfg.detection
            check_detectors(det.classifiers, p, int(det.train_copies), det.learned.folds)
            check_read_options(det, p, int(cfg.eval.steps))


def run_placement(args, placement: str, shares: list[float], names: list[str]) -> list[dict]:
    cfg = compose_config(args, placement)
    start = time.perf_counter()
    scenario, perturbation = evaluate.detection_scenario(cfg)
    # every detection.probes setting (--override), each point at its own share
    base = probes_from_config(OmegaConf.to_container(cfg.detection.probes, resolve=True), "<config>",
                              "detection.probes")
    specs = [replace(base, p=p) for p in shares]
    log(f"{placement}: recording {args.train_copies} + {args.copies} copies with probes p = {shares}")
    try:
        recordings = evaluate.record_detection(cfg, scenario, perturbation, specs)
    except ConfigError as error:  # a key this script sets from one of its flags: named by the flag
        if not SWEEP_KEYS.get(error.field):
            raise
        raise ConfigError("benchmarks/incident_detection.py", SWEEP_KEYS[error.field], error.value,
                          error.reason) from None
    recorded_s = time.perf_counter() - start
    layout = lane_layout(scenario.network, recordings["train"][0].lanes)
    det = cfg.detection
    learned = LearnedSettings(**{k: int(det.learned[k]) for k in ("history", "hidden", "epochs", "folds")})
    precision = float(det.target_precision)
    lane_only = {}
    for name in (n for n in names if DETECTORS[n] == "lane"):  # their inputs do not depend on p
        lane_only[name], chosen = calibrate(name, recordings["train"][0], layout, precision, learned, log=log)
        log(f"{placement}: {describe(name, chosen, precision)}")
    lane_s = time.perf_counter() - start - recorded_s
    entries = []
    for k, p in enumerate(shares):
        point_start = time.perf_counter()
        train, held_out = recordings["train"][k], recordings["eval"][k]
        detectors, skipped = dict(lane_only), []
        for name in (n for n in names if DETECTORS[n] != "lane"):
            if DETECTORS[name] == "probe" and p <= 0:
                skipped.append(name)  # nothing to read
                continue
            detectors[name], chosen = calibrate(name, train, layout, precision, learned, log=log)
            log(f"{placement}, p = {p:g}: {describe(name, chosen, precision)}")
        tallies = held_out_tallies(held_out, detectors, layout)
        out_dir = Path(args.report_dir) / f"{placement}_p{p:g}"
        out_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON lines only
            evaluate.detection_report(cfg, out_dir, scenario, perturbation, tallies, p)
        # a point's wall time: the shared recording and lane-only training, split evenly, plus its own
        wall = (recorded_s + lane_s) / len(shares) + time.perf_counter() - point_start
        command = point_command(args, placement, p, [n for n in names if n not in skipped])
        point = result_entries(tallies, sensors_of, placement, p, command, wall)
        point += [skipped_entry(n, DETECTORS[n], placement, p, "no probe reports at p = 0", command) for n in skipped]
        for entry in point:
            emit(entry)
        entries += point
    return entries


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    with exit_on_error():  # a bad value: one "error: ..." line naming its flag, exit status 2
        shares = check_sweep_args(args)
        names = args.detectors.split(",")
        for k, name in enumerate(names):
            if name not in DETECTORS:
                raise ConfigError("benchmarks/incident_detection.py", "--detectors", name,
                                  f"unknown detector; known: {', '.join(DETECTORS)}")
            if name in names[:k]:
                raise ConfigError("benchmarks/incident_detection.py", "--detectors", name, "listed twice")
        if args.epochs is not None:  # left out of every point's config without a learned detector: ignored
            if args.epochs < 1:
                raise ConfigError("benchmarks/incident_detection.py", "--epochs", args.epochs, "must be >= 1")
            if not any(name in LEARNED for name in names):
                raise ConfigError("benchmarks/incident_detection.py", "--epochs", args.epochs,
                                  "nothing reads it: no learned detector is listed (--detectors)")
        if 0.0 in shares and all(DETECTORS[name] == "probe" for name in names):  # every detector skipped there
            raise ConfigError("benchmarks/incident_detection.py", "--p", args.p,
                              f"p = 0 leaves no detector to score: {', '.join(names)} read probes only "
                              "(drop 0 from --p, or add a lane detector to --detectors)")
        check_outputs(args)
        check_mergeable(args)
        check_points(args, shares, names)
    start, entries = time.perf_counter(), []
    with exit_on_error():  # one found only once recorded (training copies without an incident): its line too
        for placement in args.placements.split(","):
            entries += run_placement(args, placement, shares, names)
    wall = time.perf_counter() - start
    argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    meta = {"benchmark": "incident_detection",
            "command": f"python benchmarks/incident_detection.py {argv_text}".strip(),
            "scenario": args.scenario, "copies": args.copies, "train_copies": args.train_copies,
            "position": args.position, "probe_shares": shares, "placements": args.placements.split(","),
            "wall_s": round(wall, 1), "machine": machine_info(), "date": time.strftime("%Y-%m-%d", time.gmtime())}
    placements = set(args.placements.split(","))
    if args.merge and Path(args.out).is_file():  # the other placements' entries, from their own runs
        earlier = json.loads(Path(args.out).read_text())
        kept = [e for e in earlier["results"] if e["placement"] not in placements]
        entries = kept + entries
        meta["runs"] = [r for r in earlier["meta"].get("runs", [earlier["meta"]]) if set(r["placements"]) - placements]
        meta["runs"] = [*meta["runs"], {k: v for k, v in meta.items() if k != "runs"}]
    write_results(Path(args.out), entries, meta)
    emit({"benchmark": "incident_detection", "out": str(args.out), "wall_s": round(wall, 1)})


if __name__ == "__main__":
    main()
