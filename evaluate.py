"""Evaluate signal controllers on held-out demands and report commute-time reductions.

    python evaluate.py                                   # default: generated grid_4x4
    python evaluate.py scenario=hangzhou_4x4 \
        controllers=[fixed_time,fixed_time_webster,max_pressure,sotl] eval.seeds=5
    python evaluate.py eval.demand.mode=original eval.seeds=1   # the flow file as written
    python evaluate.py render=true                      # also writes episode.gif
    python evaluate.py scenario=hangzhou_4x4 checkpoint=outputs/DATE/TIME/checkpoints/last.zip
    python evaluate.py scenario=hangzhou_4x4 "controllers=[sotl,sotl_tuned]"   # with the tuned preset
    python evaluate.py scenario=hangzhou_4x4 deployed=outputs/DATE/TIME/checkpoints/last.onnx
    python evaluate.py task=incident_detection scenario=hangzhou_4x4 detection.placement=traffic
                                                        # incident classifiers (evaluate_detection)

A trained policy (``checkpoint=PATH``, or a list of paths) joins the classical controllers in
the same table, named after its agent config (``ppo_shared``, ``ppo_independent``); an exported
one (``deployed=PATH.onnx``, export.py) runs through the deployment controller, timing rules and
fail-safe included, as ``<agent>_onnx`` (a model file the runtime cannot load at all is a
ModelError naming ``deployed``: its row would be the fixed-time fallback).
Every controller runs on the same evaluation demands (seeds of the ``eval`` split, which
training's poisson/jitter demands never draw) in ONE batched simulation
(`envs.evaluation.runner.EvaluationBatch`, as training's periodic evaluation): copy ``c * seeds + s``
is controller c on seed s. A GridlightError (bad config, missing checkpoint) prints one
``error: ...`` line and exits 2 (``HYDRA_FULL_ERROR=1`` for the traceback).
Written into Hydra's run directory: ``metrics.csv`` (one row per controller and seed, every
metric of the hub), ``summary.json``, ``table.md`` (also printed), and the plots
``travel_time_bars.png``, ``travel_time_cdf.png``, ``queue_over_time.png``; Hydra's ``evaluate.log``
holds the status lines printed, table included.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from agents.lineup import build_controller, check_known, controller_names
from agents.ppo.atomic_files import write_csv_atomic, write_text_atomic
from agents.ppo.config import check_evaluate_config, demand_spec, engine_params
from agents.ppo.interrupts import forward_sigterm_to_workers, is_sweep_command
from agents.ppo.null_nodes import check_command_line
from agents.ppo.run_messages import run_errors, say, status_log, sweep_job_line
from agents.ppo.tuned_preset_checks import check_tuned_presets
from envs.engine import Simulator
from envs.engine.intersections import intersection_layout
from envs.errors import ConfigError, config_path, exit_on_error
from envs.evaluation.metrics import METRIC_NAMES, population
from envs.evaluation.report import (outputs_present, remove_stale_outputs, signal_plots, signals_report, summary,
                                    summary_json)
from envs.evaluation.runner import EvaluationBatch, check_departures, eval_demands
from envs.incidents.perturbations import DetectorFaults, Perturbation, check_incident_lanes, perturbation_from_config
from envs.rl.fault_reach import check_faults_reach
from envs.scenario import Scenario, load_scenario
from envs.scenario.splits import SOURCE as DEMAND_SPEC
from envs.scenario.splits import DemandSpec


def _perturbation(cfg: DictConfig) -> Perturbation:
    return perturbation_from_config(
        OmegaConf.to_container(cfg.perturbation, resolve=True) if cfg.get("perturbation") else None, "<config>"
    )


def _demand_spec(cfg: DictConfig) -> DemandSpec:
    unknown = sorted(set(cfg.eval.demand) - set(DemandSpec.__dataclass_fields__))
    if unknown:
        raise ConfigError("<config>", f"eval.demand.{unknown[0]}", cfg.eval.demand[unknown[0]], "unknown key")
    return demand_spec(cfg.eval.demand, "eval.demand")


def _attach_detector_faults(perturbation: Perturbation, scenario: Scenario, batch: EvaluationBatch,
                            controllers: list[str], built: list) -> None:
    """Faulty detectors on the perturbed copies, for the controllers that read them. Each reader
    gets its own `DetectorFaults`, drawn alike (every draw is a function of the seed, the copy's
    sample, the time and the reading), so what a stuck lane holds is frozen by that controller's
    own first reading from `stuck_at_s` on (a policy reads at its decisions), never by another
    controller's: a controller's rows do not depend on which others share the batch."""
    in_lanes = intersection_layout(scenario.network).in_lanes

    def faults() -> DetectorFaults:
        detectors = DetectorFaults(perturbation, scenario.network, in_lanes, batch.copies)
        for b in range(batch.copies // batch.conditions, batch.copies):
            detectors.start_episode(b, "eval", b % batch.seeds)
        return detectors

    if perturbation.detectors is None or perturbation.detectors.is_clean:
        return
    for controller in built:
        if hasattr(controller, "detectors"):
            controller.detectors = faults()
    readers = [name for name, controller in zip(controllers, built) if hasattr(controller, "detectors")]
    others = [name for name in controllers if name not in readers]  # their perturbed rows are their clean ones
    say(f"detector faults reach the controllers that read lane detectors ({', '.join(readers) or 'none'}), not "
        f"{', '.join(others) or 'others'}: fixed-time plans read no detector (their rows under faults are their "
        "clean ones)")


class StepRecorder:
    """What evaluate.py records each simulated second besides the metrics: every copy's halting
    queue (read back once), the frames of ``render=true``, and the progress bar."""

    def __init__(self, cfg: DictConfig, scenario: Scenario, sim: Simulator, steps: int, render_copy: int = 0) -> None:
        self.steps = steps
        self.render_every = int(cfg.render_every_s) if cfg.render else 0
        self.render_copy = render_copy  # the table's condition: copy 0 is the clean one
        self.frames: list[np.ndarray] = []
        self.view = SimpleNamespace(scenario=scenario, network=scenario.network, params=sim.params, sim=sim)
        self.queue = torch.zeros(steps, sim.batch_size, dtype=torch.int32, device=sim.device)
        self.bar = tqdm(total=steps, desc=f"{scenario.name} ({sim.batch_size} copies)", unit="sim-s",
                        file=sys.stderr, disable=not cfg.eval.progress, mininterval=2.0)

    def __call__(self, k: int, sim: Simulator) -> None:
        state = sim.state
        self.queue[k] = (state.veh_halted[:, :-1] & (state.veh_lane[:, :-1] >= 0)).sum(1)
        if self.render_every and k % self.render_every == 0:
            from envs.rl.render import render_frame

            self.frames.append(render_frame(self.view, copy=self.render_copy))
        if k % 60 == 59:
            self.bar.update(60)

    def close(self) -> None:
        self.bar.update(self.steps - self.bar.n)
        self.bar.close()


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    controllers, policies, policy_files = controller_names(cfg)
    presets = check_tuned_presets(cfg, list(cfg.controllers))  # tuned on another scenario or engine: said, recorded
    for name, path in policy_files.items():  # the rows name them; metrics.csv and summary.json too
        say(f"{name} = {path}")
    seeds, steps = int(cfg.eval.seeds), int(cfg.eval.steps)  # both >= 1 (checked in main)
    scenario = load_scenario(
        cfg.scenario.name, seed=cfg.scenario.seed, data_dir=cfg.scenario.data_dir,
        horizon=cfg.scenario.horizon, device=cfg.engine.device,
    )
    spec, perturbation = _demand_spec(cfg), _perturbation(cfg)
    for policy in policies.values():  # before any simulation: a checkpoint of another layout or engine, or
        if hasattr(policy, "check_fits"):  # reading the engine's state where detector faults are measured
            policy.check_fits(scenario.network, scenario.name)
            policy.check_engine(engine_params(cfg))
            check_faults_reach([f.name for f in policy.features], perturbation.detectors, policy.source,
                               "env.observations")
    late = perturbation.windows_past(steps)
    if late:  # else its degradation reads as robustness (0.0% for an incident after the end)
        say(f"warning: perturbation {perturbation.name}: {'; '.join(late)} reach past the {steps} s "
            "evaluated (eval.steps): what falls after the end is not measured")
    check_incident_lanes(perturbation, scenario.network, "<config>")
    # a sample with no trip named 'scale' of <demand spec>, not the key to raise
    with config_path("<config>", "eval.demand.", only_from=DEMAND_SPEC):
        demands = eval_demands(scenario, spec, seeds, perturbation)
    check_departures(demands.trips[0], steps)
    if perturbation.surge is not None:  # a surge of scale 0 can empty the perturbed demands' evaluated time
        surge = perturbation.surge
        check_departures(demands.trips[-1], steps, "perturbation.surge.scale", surge.scale,
                         f"the surge (scale {surge.scale:g} from {surge.start_s:g} to {surge.end_s:g} s) empties it: "
                         f"raise perturbation.surge.scale or end the surge before the {steps} s evaluated end")
    conditions = demands.conditions
    copies = len(controllers) * seeds * len(conditions)
    junctions = scenario.network.num_intersections  # a SUMO net's unsignalised ones included
    say(f"scenario {scenario.name}: {junctions} intersection{'' if junctions == 1 else 's'}; "
          f"{len(controllers)} controllers x {seeds} eval demand seed(s) ({spec.mode}, "
          # those the metrics count: it gave the whole sample's (1988 trips for 300 s of grid_1x1, 190 departing)
          f"{np.mean([(t.depart < steps).sum() for t in demands.trips[0]]):.0f} trips each within the {steps} s)"
          + (f" x {len(conditions)} conditions ({', '.join(conditions)})" if len(conditions) > 1 else "")
        + f" = {copies} copies, {steps} s simulated")
    batch = EvaluationBatch(scenario, len(controllers), demands.trips, engine_params(cfg),
                            incidents=demands.incidents, compile=cfg.engine.compile,
                            design=spec)
    built = [policies[name] if name in policies else build_controller(name, cfg) for name in controllers]
    _attach_detector_faults(perturbation, scenario, batch, controllers, built)

    # the GIF shows the first controller on seed 0 under the table's condition (the clean one was drawn
    # under a perturbation: no surge or closure in it, beside a table of the perturbed rows)
    recorder = StepRecorder(cfg, scenario, batch.sim, steps, int(batch.mine(0, len(conditions) - 1).argmax()))
    started = time.perf_counter()
    metrics = batch.run(built, steps, on_step=recorder)
    recorder.close()
    wall = time.perf_counter() - started

    all_rows = batch.rows(metrics, controllers, conditions, scenario.name)
    stats, table = signals_report(all_rows, controllers, conditions, seeds)  # of the last condition
    if spec.mode == "original" and seeds > 1 and len(conditions) == 1:  # a zero-width interval is not certainty
        table += ("\n\neval.demand.mode=original: every seed replays the same flow file, so an interval spans "
                  "only the engine's own randomness (none unless a flow sets driver imperfection, sigma).")
    say(table)
    (out_dir / "table.md").write_text(table + "\n")
    _write_csv(out_dir / "metrics.csv", all_rows, ["scenario", "controller", "seed", "condition", *METRIC_NAMES])
    result = {
        "scenario": scenario.name, "controllers": controllers, "seeds": seeds, "steps": steps,
        "policy_files": policy_files, "demand": asdict(spec), "wall_s": wall, "perturbation": asdict(perturbation),
        "tuned_presets": presets,
        "summary": summary_json(stats, seeds), "summary_condition": conditions[-1],  # perturbed rows, if any
    }
    if len(conditions) > 1:  # and the clean rows beside them (the degradation is table.md's)
        result["clean_summary"] = summary_json(summary([r for r in all_rows if r["condition"] == "clean"], controllers),
                                               seeds)
    write_text_atomic(out_dir / "summary.json", json.dumps(result, indent=2))
    if cfg.eval.plots:  # of the main table's condition
        pop = population(batch.sim.demand, batch.sim.state)
        travel, departed, queue = pop["travel"].cpu().numpy(), pop["departed"].cpu().numpy(), recorder.queue.cpu()
        mine = [batch.mine(c, len(conditions) - 1) for c in range(len(controllers))]
        signal_plots(out_dir, stats, controllers,
                     {name: travel[mine[c]][departed[mine[c]]] for c, name in enumerate(controllers)},
                     {name: queue[:, mine[c]].numpy() for c, name in enumerate(controllers)},
                     f"{scenario.name}, {seeds} eval seed(s), {steps} s"
                     + (f", {conditions[-1]}" if len(conditions) > 1 else ""))
    if recorder.frames:
        from envs.rl.render import write_gif

        write_gif(recorder.frames, out_dir / "episode.gif", fps=int(cfg.render_fps))
        say(f"episode of {controllers[0]} (seed 0{f', {conditions[-1]}' if len(conditions) > 1 else ''}): "
            f"{out_dir / 'episode.gif'} ({len(recorder.frames)} frames)")
    say(f"results in {out_dir} ({wall:.1f} s)")
    return result


def _detection_perturbation(cfg: DictConfig):
    """The incidents of the detection task: the ``perturbation`` config's (one closure per copy by
    default), their placement overridden by ``detection.placement`` when set."""
    from envs.incidents.perturbations import PLACEMENTS, IncidentSpec

    perturbation = _perturbation(cfg)
    for key in ("surge", "detectors"):  # the task records incidents only: they would be ignored
        if getattr(perturbation, key) is not None:
            raise ConfigError("<config>", f"perturbation.{key}", OmegaConf.to_container(cfg.perturbation[key]),
                              "task=incident_detection simulates incidents only; task=signals evaluates it")
    if perturbation.incidents is None:  # the task's default
        perturbation = Perturbation(name="incident", seed=perturbation.seed, incidents=IncidentSpec())
    incidents = perturbation.incidents
    if incidents.none:  # count 0, or a rate of 0
        field = "rate_per_hour" if incidents.rate_per_hour is not None else "count"
        raise ConfigError("<config>", f"perturbation.incidents.{field}", getattr(incidents, field),
                          "incident detection needs incidents")
    onsets = [float(x) for x in np.atleast_1d(incidents.start_s)]
    if max(onsets) >= int(cfg.eval.steps):  # never seen: scored as missed
        raise ConfigError("<config>", "perturbation.incidents.start_s", onsets,
                          f"onsets at or after eval.steps ({cfg.eval.steps} s) could never be detected")
    if perturbation.incidents.capacity != 0.0:
        raise ConfigError("<config>", "perturbation.incidents.capacity", perturbation.incidents.capacity,
                          "incident detection scores lane closures (capacity 0)")
    placement = cfg.detection.get("placement")
    if placement is not None:
        if placement not in PLACEMENTS:
            raise ConfigError("<config>", "detection.placement", placement,
                              f"expected one of {PLACEMENTS}, or null for perturbation.incidents.placement")
        perturbation = replace(perturbation, incidents=replace(perturbation.incidents, placement=placement))
    return perturbation


def _classifiers(cfg: DictConfig, train, layout) -> dict:
    """The incident detectors named in ``detection.classifiers``, calibrated / trained on `train`
    (agents/incidents/detection_task.py)."""
    from agents.incidents.detection_task import LEARNED, LearnedSettings, calibrate, describe

    det, classifiers = cfg.detection, {}
    learned = LearnedSettings(**{k: int(det.learned[k]) for k in ("history", "hidden", "epochs", "folds")})
    for name in det.classifiers:
        bar = tqdm(total=learned.folds * learned.epochs, desc=f"train {name}", unit="epoch", file=sys.stderr,
                   disable=not cfg.eval.progress or name not in LEARNED, mininterval=2.0)
        try:
            classifiers[name], chosen = calibrate(name, train, layout, float(det.target_precision), learned,
                                                  log=bar.write, progress=bar.update)
        finally:
            bar.close()
        say(describe(name, chosen, float(det.target_precision)))
    return classifiers


def detection_scenario(cfg: DictConfig):
    """``(scenario, perturbation)`` of the detection task."""
    scenario = load_scenario(cfg.scenario.name, seed=cfg.scenario.seed, data_dir=cfg.scenario.data_dir,
                             horizon=cfg.scenario.horizon, device=cfg.engine.device)
    perturbation = _detection_perturbation(cfg)
    check_incident_lanes(perturbation, scenario.network, "<config>", at_signals=True)
    return scenario, perturbation


def record_detection(cfg: DictConfig, scenario: Scenario, perturbation, probe_specs: list) -> dict[str, list]:
    """Per split (train, eval), the recordings of the detection task's copies: one per probe spec
    of `probe_specs` from one run (envs.incidents.detection.record_sweep), one without probes
    when it is empty."""
    from agents.incidents.detection_task import check_training_incidents
    from envs.incidents.detection import record_sweep

    det, recordings = cfg.detection, {}
    steps, placement = int(cfg.eval.steps), perturbation.incidents.placement
    for split, copies in (("train", int(det.train_copies)), ("eval", int(det.copies))):
        if copies < 1:
            raise ConfigError("<config>", "detection.train_copies" if split == "train" else "detection.copies",
                              copies, "need at least one copy")
        bar = tqdm(total=steps, desc=f"record {split} ({copies} copies, {placement} placement)", unit="sim-s",
                   file=sys.stderr, disable=not cfg.eval.progress, mininterval=2.0)
        with config_path("<config>", "eval.demand.", only_from=DEMAND_SPEC):  # as the signals task names them
            recordings[split] = record_sweep(scenario, build_controller(det.controller, cfg), perturbation, split,
                                             list(range(copies)), steps, int(det.interval_s),
                                             demand_spec(cfg.eval.demand, "eval.demand"), bar.update,
                                             engine_params(cfg), probe_specs)
        bar.close()
        if split == "train":  # before the held-out copies are recorded for nothing
            check_training_incidents(recordings[split][0], copies)
    return recordings


def evaluate_detection(cfg: DictConfig, out_dir: Path) -> dict:
    """``task=incident_detection``: incident detectors calibrated / trained on incidents of the
    training split, scored on held-out incident seeds (envs/incidents/detection.py,
    agents/incidents/detection_task.py), beside the ideal detector of each sensor set: it
    alarms at each incident's first evidence to those sensors (the floor)."""
    from agents.incidents.classifiers import lane_layout
    from agents.incidents.detection_task import check_detectors, check_read_options, held_out_tallies, records_probes
    from envs.incidents.probes import probes_from_config

    det = cfg.detection
    probes = probes_from_config(OmegaConf.to_container(det.probes, resolve=True), "<config>", "detection.probes")
    check_detectors(det.classifiers, probes.p, int(det.train_copies), det.learned.folds)
    check_read_options(det, probes.p, int(cfg.eval.steps))
    with_probes = records_probes(det.classifiers, probes.p)
    check_known(det.controller, cfg, "detection.controller")  # before any recording, under its own key
    check_tuned_presets(cfg, [det.controller])
    for key in [key for key in ("checkpoint", "deployed") if cfg.get(key) is not None]:  # would be ignored
        raise ConfigError("<config>", key, cfg[key], "task=incident_detection runs detection.controller, a "
                          "classical controller; a trained or exported policy is evaluated with task=signals")
    scenario, perturbation = detection_scenario(cfg)
    recordings = record_detection(cfg, scenario, perturbation, [probes] if with_probes else [])
    train, held_out = recordings["train"][0], recordings["eval"][0]
    layout = lane_layout(scenario.network, train.lanes)
    classifiers = _classifiers(cfg, train, layout)
    tallies = held_out_tallies(held_out, classifiers, layout)
    return detection_report(cfg, out_dir, scenario, perturbation, tallies, probes.p if with_probes else None)


def detection_report(cfg: DictConfig, out_dir: Path, scenario: Scenario, perturbation, tallies: dict, probe_p) -> dict:
    """The detection task's table, CSVs, summary and plot (envs/evaluation/detection_report.py)."""
    from agents.incidents.detection_task import ORACLES
    from envs.evaluation.detection_report import write_detection_report
    from envs.incidents.perturbations import lane_ids

    return write_detection_report(
        out_dir, scenario.name, lane_ids(scenario.network), cfg.detection.controller, int(cfg.eval.steps),
        int(cfg.detection.train_copies), perturbation, tallies, {v: k for k, v in ORACLES.items()}, probe_p,
        bool(cfg.eval.plots), _write_csv, write_text_atomic, say)


def _write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    """`rows` as CSV; the columns are `fieldnames`, or the first row's keys. An undefined figure
    (NaN: a mean over nothing) is an empty cell, the CSV's null (summary.json writes null), as
    `write_csv_atomic` writes one."""
    write_csv_atomic(path, fieldnames or (list(rows[0]) if rows else []), rows)  # a kill never tears it


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    hydra_config = hydra.core.hydra_config.HydraConfig.get()
    out_dir = Path(hydra_config.runtime.output_dir)
    # a GridlightError: one line on stderr, exit status 2 (in a sweep, the job fails alone); status
    # lines into RUN/evaluate.log too
    with run_errors(sweep_job_line(hydra_config)), status_log(logging.getLogger().handlers):
        check_evaluate_config(cfg)  # before any work
        run_task(cfg, out_dir)


def run_task(cfg: DictConfig, out_dir: Path) -> dict:
    """``cfg.task`` into `out_dir`; then an earlier evaluation's outputs there that this one did not
    write again are removed, so none sits beside the new table as if it were its own."""
    earlier = outputs_present(out_dir)
    if cfg.task == "incident_detection":
        result = evaluate_detection(cfg, out_dir)
    elif cfg.task == "signals":
        result = evaluate(cfg, out_dir)
    else:
        raise ConfigError("<config>", "task", cfg.task, "expected signals or incident_detection")
    stale = remove_stale_outputs(out_dir, earlier)
    if stale:
        say(f"removed {', '.join(stale)}: an earlier evaluation's, in {out_dir}, that this one did not write")
    return result


if __name__ == "__main__":
    with exit_on_error():  # before Hydra composes the config, which fails on such an override with a traceback
        check_command_line(sys.argv[1:], "evaluate")
    if is_sweep_command(sys.argv[1:]):  # its jobs run in worker processes: a kill PID ends them too
        forward_sigterm_to_workers()
    main()
