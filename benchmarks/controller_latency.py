"""Decision latency of the policy runtime (agents/deploy/runtime.py) on one CPU core.

    python benchmarks/controller_latency.py                     # 16 and 128 intersections, both agents
    python benchmarks/controller_latency.py --scenario grid_16x8 --agent ppo_independent
    python benchmarks/controller_latency.py --checkpoint outputs/.../best.zip   # a trained policy

For each case a policy of the agent config's architecture (untrained unless ``--checkpoint``:
latency does not depend on the weights) is exported to ONNX as export.py does, and a
`PolicyRuntime` (onnxruntime, one intra-op thread) answers ``--decisions`` JSON
messages of detector readings recorded from the simulator under max pressure, one decision
at a time, exactly as ``python -m agents.deploy.service serve`` does (parse, validate, cross-check,
inference, timing rules; the cross-check against the runtime's own signal model is
skipped, as the recorded signals followed max pressure). One JSON line per case:

- ``decision_p50_ms`` / ``decision_p99_ms``: one whole decision for all intersections;
- ``per_intersection_p99_ms``: the p99 divided by the number of intersections (target < 1 ms);
- ``inference_p50_ms`` / ``inference_p99_ms``: the onnxruntime call alone.

The process is pinned to one core (``os.sched_setaffinity``) where the OS allows it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT, at_least, dataset_missing, emit, log, machine_info

from agents.deploy.metadata import LANE_READINGS
from agents.deploy.runtime import PolicyRuntime
from agents.deploy.simulated import sim_readings
from agents.deploy.export import export_policy
from agents.classical.max_pressure import MaxPressure
from agents.ppo.policy import save_checkpoint
from envs.engine import Simulator
from envs.errors import ConfigError
from envs.engine.intersections import intersection_layout
from envs.scenario import load_scenario
from envs.scenario.splits import DemandSpec, sample_trips

CASES = [("hangzhou_4x4", 16), ("grid_4x4", 16), ("grid_16x8", 128)]


def policy_checkpoint(scenario, agent: str, path: Path) -> Path:
    """An untrained policy with the agent config's network, saved as train.py saves one."""
    from hydra import compose, initialize_config_dir

    import agents.ppo.config  # noqa: F401  (registers the structured config)
    from agents.ppo.sb3_trainer import build_env, build_model

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"agent={agent}", "env.copies=1", "train.device=cpu"])
    venv = build_env(cfg, scenario)
    model = build_model(cfg, venv)
    return save_checkpoint(model, path, {"env": venv.core.describe(), "config": {"agent": {"name": agent}}})


def recorded_messages(scenario, decisions: int, interval: int = 10) -> list[dict]:
    """``decisions`` JSON messages of readings from a max-pressure run (one per interval), with
    every per-lane reading the runtime knows: a policy observing the approach counts (today's
    defaults) answers from its model only when they are there, else from its fallback plan."""
    trips = [sample_trips(scenario, DemandSpec("poisson"), "eval", 0, horizon=decisions * interval + 600)]
    sim = Simulator(scenario.network, scenario.demand(trips=trips))
    layout = intersection_layout(scenario.network)
    controller = MaxPressure()
    controller.reset(sim)
    sim.run(600, controller)  # let traffic build up
    lanes = (layout.in_lanes >= 0).sum(1).tolist()
    messages = []
    for _ in range(decisions):
        readings = {k: v[0] for k, v in sim_readings(sim, layout.in_lanes, lane_names=LANE_READINGS).items()}
        messages.append({
            "t": int(sim.state.t[0]),
            "intersections": {
                inter_id: {
                    **{name: readings[name][i, : lanes[i]].tolist() for name in LANE_READINGS},
                    "phase": int(readings["phase"][i]),
                    "time_in_phase": float(readings["time_in_phase"][i]),
                }
                for i, inter_id in enumerate(layout.ids)
            },
        })
        sim.run(interval, controller)
    return messages


def measure(onnx_path: Path, messages: list[dict], repeats: int) -> dict:
    runtime = PolicyRuntime(onnx_path, deadline_ms=1e6)  # no fallback while timing
    session = runtime.session
    inference: list[float] = []

    class Timed:
        def run(self, names, feed):
            started = time.perf_counter()
            out = session.run(names, feed)
            inference.append(time.perf_counter() - started)
            return out

    runtime.session = Timed()
    for message in messages[:20]:  # warm-up
        runtime.signals.known[:] = False
        runtime.decide(json.loads(json.dumps(message)))
    inference.clear()
    decision: list[float] = []
    for _ in range(repeats):
        runtime.last_t = None  # replay the recording from its start
        for message in messages:
            # the recorded signals followed max pressure, not this runtime: start each decision
            # from first contact, or the cross-check would (rightly) flag every intersection
            runtime.signals.known[:] = False
            line = json.dumps(message)
            started = time.perf_counter()
            reply = runtime.decide(json.loads(line))
            json.dumps(reply)
            decision.append(time.perf_counter() - started)
    sources = {c["source"] for c in reply["commands"].values()}
    assert sources == {"policy"}, sources  # a benchmark of the fallback would be no benchmark
    ms = lambda xs, q: float(np.percentile(np.asarray(xs) * 1e3, q))  # noqa: E731
    return {
        "decisions": len(decision),
        "decision_p50_ms": round(ms(decision, 50), 4),
        "decision_p99_ms": round(ms(decision, 99), 4),
        "inference_p50_ms": round(ms(inference, 50), 4),
        "inference_p99_ms": round(ms(inference, 99), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default=None, help="one scenario (default: the CASES list)")
    parser.add_argument("--agent", default=None, choices=["ppo_shared", "ppo_independent"])
    parser.add_argument("--checkpoint", default=None, help="export this trained checkpoint instead")
    parser.add_argument("--decisions", type=int, default=200, help="recorded messages per case")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the recording")
    args = parser.parse_args()
    source = "benchmarks/controller_latency.py"  # 0 was an IndexError / UnboundLocalError traceback
    at_least(args.decisions, 1, source, "--decisions")
    at_least(args.repeats, 1, source, "--repeats")
    for flag, value in (("--scenario", args.scenario), ("--agent", args.agent)):
        if args.checkpoint and value is not None:  # the checkpoint's own were timed, this one ignored
            raise ConfigError(source, flag, value, "not with --checkpoint, whose recorded scenario and agent are timed")
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        pinned = True
    except (AttributeError, OSError):
        pinned = False
    torch.set_num_threads(1)
    agents = [args.agent] if args.agent else ["ppo_shared", "ppo_independent"]
    if args.checkpoint:
        from agents.ppo.policy import read_meta

        meta = read_meta(args.checkpoint)
        cases, agents = [(meta["config"]["scenario"]["name"], None)], [meta["config"]["agent"]["name"]]
    else:
        cases = [(args.scenario, None)] if args.scenario else CASES
    done_sizes = set()
    for name, size in cases:
        if dataset_missing(name):
            log(f"skip {name}: dataset not found")
            continue
        if size is not None and size in done_sizes:
            continue  # grid_4x4 stands in for hangzhou_4x4 only without the datasets
        scenario = load_scenario(name)
        messages = recorded_messages(scenario, args.decisions)
        count = len(messages[0]["intersections"])
        for agent in agents:
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint = Path(args.checkpoint) if args.checkpoint else policy_checkpoint(
                    scenario, agent, Path(tmp) / "policy.zip")
                onnx_path, _ = export_policy(checkpoint, tmp, scenario=scenario)
                log(f"{name} ({count} intersections), {agent}: {args.repeats} x {len(messages)} decisions")
                result = measure(onnx_path, messages, args.repeats)
            emit({
                "benchmark": "controller_latency", "scenario": name, "intersections": count, "agent": agent,
                "trained": bool(args.checkpoint), **result,
                "per_intersection_p99_ms": round(result["decision_p99_ms"] / count, 5),
                "one_core": pinned, "machine": machine_info(),
            })
        done_sizes.add(count)


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
