"""Evaluate signal controllers on a scenario and print the metrics table.

    python evaluate.py                                   # default: generated grid_4x4
    python evaluate.py scenario=hangzhou_4x4 eval.steps=3600
    python evaluate.py controllers=[max_pressure] controller_params.max_pressure.min_green_s=15

Writes ``metrics.csv``, ``metrics.json`` and ``table.md`` into Hydra's run directory.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from agents import CONTROLLERS
from envs.engine import EngineParams, Simulator
from envs.errors import ScenarioError
from envs.metrics import METRIC_NAMES, episode_metrics
from envs.scenario import load_scenario

TABLE_METRICS = (
    "travel_time/mean", "travel_time/p50", "travel_time/p95", "throughput", "delay",
    "queue/halting", "stops", "entry_queue",
)


def build_controller(name: str, cfg: DictConfig):
    if name not in CONTROLLERS:
        raise ScenarioError("<config>", "controllers", name, f"unknown controller; known: {sorted(CONTROLLERS)}")
    params = OmegaConf.to_container(cfg.controller_params.get(name, {}), resolve=True)
    return CONTROLLERS[name](**params)


def engine_params(cfg: DictConfig) -> EngineParams:
    return EngineParams(
        yellow_s=cfg.engine.yellow_s, all_red_s=cfg.engine.all_red_s,
        min_green_s=cfg.engine.min_green_s, halting_speed=cfg.engine.halting_speed,
        max_vehicles=cfg.engine.max_vehicles,
    )


def run_controller(scenario, name: str, cfg: DictConfig) -> dict[str, float]:
    demand = scenario.demand(cfg.eval.copies)
    sim = Simulator(scenario.network, demand, engine_params(cfg), compile=cfg.engine.compile)
    controller = build_controller(name, cfg)
    controller.reset(sim)
    started = time.perf_counter()
    bar = tqdm(total=cfg.eval.steps, desc=f"{scenario.name}/{name}", unit="s", file=sys.stderr,
               disable=not cfg.eval.progress, leave=False, mininterval=2.0)
    for k in range(cfg.eval.steps):
        sim.step(controller.act(sim))
        if k % 60 == 59:
            bar.update(60)
    bar.close()
    metrics = episode_metrics(demand, sim.state)
    row = {metric: float(values.mean()) for metric, values in metrics.items()}
    row["wall_s"] = time.perf_counter() - started
    return row


def markdown_table(rows: dict[str, dict[str, float]]) -> str:
    head = "| controller | " + " | ".join(TABLE_METRICS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_METRICS)
    lines = [head, rule]
    for name, row in rows.items():
        cells = [f"{row[m]:.1f}" if m != "throughput" else f"{row[m]:.0f}" for m in TABLE_METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@hydra.main(config_path="configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    scenario = load_scenario(
        cfg.scenario.name, seed=cfg.scenario.seed, data_dir=cfg.scenario.data_dir,
        horizon=cfg.scenario.horizon, device=cfg.engine.device,
    )
    print(f"scenario {scenario.name}: {scenario.network.num_intersections} signals, "
          f"{scenario.trips.num_trips} trips, {cfg.eval.steps} s simulated", flush=True)
    rows = {name: run_controller(scenario, name, cfg) for name in cfg.controllers}
    table = markdown_table(rows)
    print(table)
    (out_dir / "table.md").write_text(table + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(rows, indent=2))
    with open(out_dir / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scenario", "controller", *METRIC_NAMES, "wall_s"])
        for name, row in rows.items():
            writer.writerow([scenario.name, name, *(row[m] for m in METRIC_NAMES), row["wall_s"]])
    print(f"results in {out_dir}")


if __name__ == "__main__":
    main()
