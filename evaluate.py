"""Evaluate signal controllers on held-out demands and report commute-time reductions.

    python evaluate.py                                   # default: generated grid_4x4
    python evaluate.py scenario=hangzhou_4x4 \
        controllers=[fixed_time,fixed_time_webster,max_pressure,sotl] eval.seeds=5
    python evaluate.py eval.demand.mode=original eval.seeds=1   # the flow file as written
    python evaluate.py render=true                      # also writes episode.gif
    python evaluate.py scenario=hangzhou_4x4 checkpoint=outputs/DATE/TIME/checkpoints/last.zip
    python evaluate.py scenario=hangzhou_4x4 deployed=outputs/DATE/TIME/checkpoints/last.onnx
    python evaluate.py task=incident_detection scenario=hangzhou_4x4 detection.placement=traffic
                                                        # incident detectors (evaluate_detection)

A trained policy (``checkpoint=PATH``, or a list of paths) joins the classical controllers in
the same table, named after its agent config (``ppo_shared``, ``ppo_independent``); an exported
one (``deployed=PATH.onnx``, export.py) runs through the deployment controller, timing rules and
fail-safe included, as ``<agent>_onnx``.
Every controller runs on the same evaluation demands (seeds of the ``eval`` split, which
training's poisson/jitter demands never draw) in ONE batched simulation: copy ``c * seeds + s`` is controller c on seed s.
Written into Hydra's run directory: ``metrics.csv`` (one row per controller and seed, every
metric of the hub), ``summary.json``, ``table.md`` (also printed), and the plots
``travel_time_bars.png``, ``travel_time_cdf.png``, ``queue_over_time.png``.
"""

from __future__ import annotations

import csv
import json
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

from agents.classical import CONTROLLERS
from envs.evaluation.mixture import ControllerMix
from agents.ppo.config import demand_spec, engine_params
from envs.engine import Simulator
from envs.errors import ScenarioError
from envs.evaluation.metrics import METRIC_NAMES, episode_metrics, population
from envs.engine.intersections import intersection_layout
from envs.incidents.perturbations import (
    DetectorFaults, perturbation_from_config, sample_incidents, surge_trips, with_incidents,
)
from envs.evaluation.report import (
    ORACLE, bar_chart, degradation_table, detection_bars, detection_table, markdown_table, queue_over_time, summary,
    travel_time_cdf,
)
from envs.scenario import load_scenario
from envs.scenario.splits import DemandSpec, sample_trips


def build_controller(name: str, cfg: DictConfig):
    if name not in CONTROLLERS:
        raise ScenarioError("<config>", "controllers", name, f"unknown controller; known: {sorted(CONTROLLERS)}")
    params = OmegaConf.to_container(cfg.controller_params.get(name, {}), resolve=True)
    return CONTROLLERS[name](**params)


def _existing_paths(cfg: DictConfig, key: str, what: str) -> list[str]:
    """``cfg[key]``: a path or a list of them (none: empty), each an existing file."""
    paths = cfg.get(key)
    paths = [] if paths is None else [paths] if isinstance(paths, str) else list(paths)
    for path in paths:
        if not Path(path).is_file():
            raise ScenarioError("<config>", key, path, f"no such {what}")
    return paths


def trained_policies(cfg: DictConfig) -> dict[str, object]:
    """``{name: PolicyController}`` for the checkpoint(s) in ``cfg.checkpoint``."""
    paths = _existing_paths(cfg, "checkpoint", "checkpoint file")
    if not paths:
        return {}
    from agents.ppo.policy import PolicyController, read_meta  # loads SB3 only when asked

    policies: dict[str, object] = {}
    for path in paths:
        name = str(read_meta(path)["config"]["agent"]["name"])
        name = name if name not in policies and name not in cfg.controllers else f"{name}_{len(policies) + 1}"
        policies[name] = PolicyController(path, max_green_s=cfg.get("checkpoint_max_green_s"))
    return policies


def deployed_policies(cfg: DictConfig, taken: list[str]) -> dict[str, object]:
    """``{name: DeployedController}`` for the exported model(s) in ``cfg.deployed``: the
    deployment controller, with its timing rules and fail-safe, as a field device runs it."""
    paths = _existing_paths(cfg, "deployed", "ONNX model file")
    if not paths:
        return {}
    from agents.deploy.runtime import load_metadata
    from agents.deploy.simulated import DeployedController  # loads onnxruntime only when asked

    out: dict[str, object] = {}
    for path in paths:
        name = f"{load_metadata(Path(path).with_suffix('.json'))['training'].get('agent') or 'policy'}_onnx"
        name = name if name not in out and name not in taken else f"{name}_{len(out) + 1}"
        out[name] = DeployedController(path)
    return out


def evaluate(cfg: DictConfig, out_dir: Path) -> dict:
    classical = list(cfg.controllers)
    if len(set(classical)) != len(classical):
        raise ScenarioError("<config>", "controllers", classical, "need distinct controller names")
    policies = trained_policies(cfg)
    policies.update(deployed_policies(cfg, classical + list(policies)))
    controllers = classical + list(policies)
    if not controllers:
        raise ScenarioError("<config>", "controllers", classical, "nothing to evaluate")
    seeds = int(cfg.eval.seeds)
    if seeds < 1:
        raise ScenarioError("<config>", "eval.seeds", seeds, "need at least one evaluation seed")
    steps = int(cfg.eval.steps)
    scenario = load_scenario(
        cfg.scenario.name, seed=cfg.scenario.seed, data_dir=cfg.scenario.data_dir,
        horizon=cfg.scenario.horizon, device=cfg.engine.device,
    )
    unknown = sorted(set(cfg.eval.demand) - set(DemandSpec.__dataclass_fields__))
    if unknown:
        raise ScenarioError("<config>", f"eval.demand.{unknown[0]}", cfg.eval.demand[unknown[0]], "unknown key")
    spec = demand_spec(cfg.eval.demand, "eval.demand")
    samples = [sample_trips(scenario, spec, "eval", s) for s in range(seeds)]
    perturbation = perturbation_from_config(
        OmegaConf.to_container(cfg.perturbation, resolve=True) if cfg.get("perturbation") else None, "<config>"
    )
    # clean first; under a perturbation every controller also runs each seed perturbed (the same
    # incidents and surge for every controller on a seed), all in the one batch
    conditions = ["clean"] if perturbation.is_clean else [
        "clean", perturbation.name if perturbation.name != "clean" else "perturbed"]
    perturbed = [surge_trips(samples[s], perturbation, "eval", s) for s in range(seeds)]
    incidents = [sample_incidents(perturbation, scenario.network, "eval", s, trips=perturbed[s])
                 for s in range(seeds)]
    per_condition = len(controllers) * seeds
    copies = per_condition * len(conditions)
    print(f"scenario {scenario.name}: {scenario.network.num_intersections} signals; "
          f"{len(controllers)} controllers x {seeds} eval demand seed(s) ({spec.mode}, "
          f"{np.mean([t.num_trips for t in samples]):.0f} trips each)"
          + (f" x {len(conditions)} conditions ({', '.join(conditions)})" if len(conditions) > 1 else "")
          + f" = {copies} copies, {steps} s simulated", flush=True)
    demand = scenario.demand(trips=(samples * len(controllers)) + (perturbed * len(controllers)) * (len(conditions) - 1))
    if len(conditions) > 1 and any(incidents):
        demand = with_incidents(demand, [[]] * per_condition + incidents * len(controllers))
    sim = Simulator(scenario.network, demand, engine_params(cfg), compile=cfg.engine.compile)
    owner = (torch.arange(copies) // seeds) % len(controllers)
    condition = torch.arange(copies) // per_condition
    built = [policies[name] if name in policies else build_controller(name, cfg) for name in controllers]
    detectors = DetectorFaults(perturbation, scenario.network, intersection_layout(scenario.network).in_lanes, copies)
    if detectors.active:  # faulty detectors on the perturbed copies, for controllers that read them
        for b in range(per_condition, copies):
            detectors.start_episode(b, "eval", b % seeds)
        for controller in built:
            if hasattr(controller, "detectors"):
                controller.detectors = detectors
        readers = [name for name, controller in zip(controllers, built) if hasattr(controller, "detectors")]
        print(f"detector faults reach the controllers that read lane detectors ({', '.join(readers) or 'none'}); "
              "fixed-time plans read no detector",
              flush=True)
    mix = ControllerMix(built, owner)
    mix.reset(sim)

    render_every = int(cfg.render_every_s) if cfg.render else 0
    frames: list[np.ndarray] = []
    view = SimpleNamespace(scenario=scenario, network=scenario.network, params=sim.params, sim=sim)
    queue = torch.zeros(steps, copies, dtype=torch.int32, device=sim.device)  # read back once
    started = time.perf_counter()
    bar = tqdm(total=steps, desc=f"{scenario.name} ({copies} copies)", unit="sim-s", file=sys.stderr,
               disable=not cfg.eval.progress, mininterval=2.0)
    for k in range(steps):
        sim.step(mix.act(sim))
        state = sim.state
        queue[k] = (state.veh_halted[:, :-1] & (state.veh_lane[:, :-1] >= 0)).sum(1)
        if render_every and k % render_every == 0:
            from envs.rl.render import render_frame

            frames.append(render_frame(view, copy=0))
        if k % 60 == 59:
            bar.update(60)
    bar.update(steps - bar.n)
    bar.close()
    wall = time.perf_counter() - started

    queue = queue.cpu()
    metrics = {name: values.cpu().numpy() for name, values in episode_metrics(demand, sim.state).items()}
    all_rows = [
        {"scenario": scenario.name, "controller": controllers[int(owner[b])], "seed": b % seeds,
         "condition": conditions[int(condition[b])], **{m: float(metrics[m][b]) for m in METRIC_NAMES}}
        for b in range(copies)
    ]
    # the main table is the last condition's: the perturbed one under a perturbation
    shown = conditions[-1]
    rows = [r for r in all_rows if r["condition"] == shown]
    stats = summary(rows, controllers)
    table = markdown_table(stats, controllers, seeds)
    if len(conditions) > 1:
        clean_rows = [r for r in all_rows if r["condition"] == "clean"]
        table = (f"Under perturbation `{shown}`:\n\n{table}\n\nDegradation against the clean case "
                 f"(same demand seeds):\n\n{degradation_table(clean_rows, rows, controllers, seeds)}")
    print(table)

    (out_dir / "table.md").write_text(table + "\n")
    with open(out_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["scenario", "controller", "seed", "condition", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(all_rows)
    result = {
        "scenario": scenario.name, "controllers": controllers, "seeds": seeds, "steps": steps,
        "demand": asdict(spec), "wall_s": wall, "perturbation": asdict(perturbation),
        "summary": {c: {k: asdict(v) for k, v in entry.items()} for c, entry in stats.items()},
    }
    (out_dir / "summary.json").write_text(json.dumps(result, indent=2))

    if cfg.eval.plots:  # of the main table's condition
        pop = population(demand, sim.state)
        travel, departed = pop["travel"].cpu().numpy(), pop["departed"].cpu().numpy()
        title = f"{scenario.name}, {seeds} eval seed(s), {steps} s" + (f", {shown}" if len(conditions) > 1 else "")
        bar_chart(stats, controllers, out_dir / "travel_time_bars.png", title)
        mine = [((owner == c) & (condition == len(conditions) - 1)).numpy() for c in range(len(controllers))]
        travel_time_cdf(
            {name: travel[mine[c]][departed[mine[c]]] for c, name in enumerate(controllers)},
            out_dir / "travel_time_cdf.png", title,
        )
        queue_over_time(
            {name: queue[:, mine[c]].numpy() for c, name in enumerate(controllers)},
            out_dir / "queue_over_time.png", title,
        )
    if frames:
        from envs.rl.render import write_gif

        write_gif(frames, out_dir / "episode.gif", fps=int(cfg.render_fps))
        print(f"episode of {controllers[0]} (seed 0): {out_dir / 'episode.gif'} ({len(frames)} frames)")
    print(f"results in {out_dir} ({wall:.1f} s)")
    return result


def _detection_perturbation(cfg: DictConfig):
    """The incidents of the detection task: the ``perturbation`` config's (one closure per copy by
    default), their placement overridden by ``detection.placement`` when set."""
    from envs.incidents.perturbations import PLACEMENTS, IncidentSpec, Perturbation

    perturbation = perturbation_from_config(
        OmegaConf.to_container(cfg.perturbation, resolve=True) if cfg.get("perturbation") else None, "<config>"
    )
    if perturbation.incidents is None or perturbation.incidents.count == 0:  # the task's default
        perturbation = Perturbation(name="incident", seed=perturbation.seed, incidents=IncidentSpec())
    if perturbation.incidents.capacity != 0.0:
        raise ScenarioError("<config>", "perturbation.incidents.capacity", perturbation.incidents.capacity,
                            "incident detection scores lane closures (capacity 0)")
    placement = cfg.detection.get("placement")
    if placement is not None:
        if placement not in PLACEMENTS:
            raise ScenarioError("<config>", "detection.placement", placement,
                                f"expected one of {PLACEMENTS}, or null for perturbation.incidents.placement")
        perturbation = replace(perturbation, incidents=replace(perturbation.incidents, placement=placement))
    return perturbation


def _detectors(cfg: DictConfig, train, layout) -> dict:
    """The detectors named in ``detection.detectors``, calibrated / trained on `train`."""
    from agents.incidents.detectors import BlockageRule, LearnedDetector

    det, detectors = cfg.detection, {}
    for name in det.detectors:
        if name == "blockage_rule":
            detector = BlockageRule()
            chosen = detector.calibrate(train, layout, precision=float(det.target_precision))
            print(f"blockage_rule: green_s = {chosen['green_s']:g}, permissive_green_s = "
                  f"{chosen['permissive_green_s']:g} (training precision {chosen['precision']:.3f})")
        elif name == "learned_mlp":
            learned, copies = det.learned, len(train.readings)
            folds = learned.folds
            # out-of-fold calibration needs a copy left out of every model, and a model per fold
            if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= copies:
                raise ScenarioError("<config>", "detection.learned.folds", folds,
                                    f"must be an integer in [2, detection.train_copies = {copies}]")
            detector = LearnedDetector(history=int(learned.history), hidden=int(learned.hidden), folds=folds, seed=0)
            bar = tqdm(total=folds * int(learned.epochs), desc="train learned_mlp", unit="epoch",
                       file=sys.stderr, disable=not cfg.eval.progress, mininterval=2.0)
            try:
                chosen = detector.fit(train, layout, epochs=int(learned.epochs),
                                      precision=float(det.target_precision), log=bar.write, progress=bar.update)
            except ValueError as error:  # no incident left a trace to learn from
                raise ScenarioError("<config>", "detection.train_copies", copies, str(error)) from error
            finally:
                bar.close()
            print(f"learned_mlp: thresholds {chosen['probability']:.3f}, permissive lanes "
                  f"{chosen['permissive_probability']:.3f} (out-of-fold training precision "
                  f"{chosen['precision']:.3f})")
        else:
            raise ScenarioError("<config>", "detection.detectors", name, "known: blockage_rule, learned_mlp")
        detectors[name] = detector
    return detectors


def evaluate_detection(cfg: DictConfig, out_dir: Path) -> dict:
    """``task=incident_detection``: detectors calibrated / trained on incidents of the training
    split, scored on held-out incident seeds (envs/incidents/detection.py, agents/incidents/detectors.py),
    beside the oracle that alarms at each incident's first evidence (the floor)."""
    from agents.incidents.detectors import lane_layout
    from envs.incidents.detection import combine, oracle_alarms, record, tally
    from envs.incidents.perturbations import lane_ids

    det = cfg.detection
    perturbation = _detection_perturbation(cfg)
    placement = perturbation.incidents.placement
    scenario = load_scenario(cfg.scenario.name, seed=cfg.scenario.seed, data_dir=cfg.scenario.data_dir,
                             horizon=cfg.scenario.horizon, device=cfg.engine.device)
    steps, interval = int(cfg.eval.steps), int(det.interval_s)
    spec = demand_spec(cfg.eval.demand, "eval.demand")
    recordings = {}
    for split, copies in (("train", int(det.train_copies)), ("eval", int(det.copies))):
        if copies < 1:
            raise ScenarioError("<config>", "detection.train_copies" if split == "train" else "detection.copies",
                                copies, "need at least one copy")
        bar = tqdm(total=steps, desc=f"record {split} ({copies} copies, {placement} placement)", unit="sim-s",
                   file=sys.stderr, disable=not cfg.eval.progress, mininterval=2.0)
        recordings[split] = record(scenario, build_controller(det.controller, cfg), perturbation, split,
                                   list(range(copies)), steps, interval, spec, progress=bar.update,
                                   params=engine_params(cfg))
        bar.close()
    train, held_out = recordings["train"], recordings["eval"]
    layout = lane_layout(scenario.network, train.lanes)
    detectors = _detectors(cfg, train, layout)

    copies = held_out.readings.shape[0]
    alarms = {ORACLE: oracle_alarms(held_out)}
    alarms.update({name: np.stack([d.detect(copy, layout) for copy in held_out.readings])
                   for name, d in detectors.items()})
    tallies = {name: [tally(held_out, a[b], b) for b in range(copies)] for name, a in alarms.items()}
    table = detection_table(tallies, draws=1000, seed=0)
    results = {name: combine(t).as_dict() for name, t in tallies.items()}
    oracle = results[ORACLE]
    text = table + (
        f"\n\nHeld-out incident seeds: {copies} copies x {steps} s of {scenario.name} under {det.controller}, "
        f"{perturbation.incidents.count} closure(s) per copy, lanes drawn with `{placement}` placement; "
        f"{oracle['with_evidence']}/{oracle['incidents']} incidents showed evidence while active. "
        f"`{ORACLE}`: an alarm at each incident's first evidence reading (a vehicle standing at the "
        "closed stop line on green) — the floor for any detector of these readings. Precision and recall "
        "in %; [low, high] = 95% bootstrap interval over copies.")
    print(text)
    (out_dir / "table.md").write_text(text + "\n")
    rows = [{"scenario": scenario.name, "placement": placement, "detector": name, "copy": b,
             **combine([t]).as_dict()} for name, per_copy in tallies.items() for b, t in enumerate(per_copy)]
    _write_csv(out_dir / "metrics.csv", rows)
    names = lane_ids(scenario.network)
    timings = {name: [i for t in per_copy for i in t.incidents] for name, per_copy in tallies.items()}
    _write_csv(out_dir / "incidents.csv", [  # one row per held-out incident
        {"copy": first.copy, "lane": names[first.lane], "start_s": first.start,
         "first_evidence_s": first.evidence_at, "oracle_floor_s": first.to_evidence,
         **{f"{name}_detect_s": timings[name][k].to_detect for name in detectors}}
        for k, first in enumerate(timings[ORACLE])
    ])
    summary_out = {"task": "incident_detection", "scenario": scenario.name, "placement": placement,
                   "copies": copies, "train_copies": int(det.train_copies), "perturbation": asdict(perturbation),
                   "oracle": oracle, "detectors": {name: results[name] for name in detectors}}
    (out_dir / "summary.json").write_text(json.dumps(summary_out, indent=2, default=float))
    if cfg.eval.plots:
        detection_bars(results, out_dir / "detection.png",
                       f"{scenario.name}: incident detection, {copies} held-out copies, {placement} placement")
    print(f"results in {out_dir}")
    return summary_out


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    if cfg.task == "incident_detection":
        evaluate_detection(cfg, out_dir)
    elif cfg.task == "signals":
        evaluate(cfg, out_dir)
    else:
        raise ScenarioError("<config>", "task", cfg.task, "expected signals or incident_detection")


if __name__ == "__main__":
    main()
