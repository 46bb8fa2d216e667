"""One service decision in a plain loop, no sockets: the fast path against the per-intersection path.

    python benchmarks/service_decision.py                    # grid_16x8, 3,000 decisions per path, 3 rounds
    py-spy record -o profile.svg -- python benchmarks/service_decision.py --paths fast --decisions 20000

An untrained policy for ``--scenario`` is exported as export.py does (as in service_soak.py) and
one runtime answers the recorded readings line that the soak's clients send, over and over
(the same ``t``, as there): ``fast`` is what the service runs (`reply_line`: orjson when installed, all
intersections at once, the reply written directly), ``reference`` the per-intersection path
(`handle_line` and json.dumps), which gives the same text. The paths alternate round by round.
One JSON line per path: ms per decision of each round and their median.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import at_least, emit, log, machine_info
from controller_latency import policy_checkpoint, recorded_messages

from agents.deploy.export import export_policy
from agents.deploy.runtime import PolicyRuntime
from agents.deploy.service import handle_line, reply_line
from envs.scenario import load_scenario

PATHS = {
    "fast": reply_line,
    "reference": lambda runtime, line, number: json.dumps(handle_line(runtime, line, number)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="grid_16x8")
    parser.add_argument("--decisions", type=int, default=3000, help="decisions per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paths", nargs="+", choices=sorted(PATHS), default=["fast", "reference"])
    args = parser.parse_args()
    source = "benchmarks/service_decision.py"  # 0 divided by zero (--decisions) or had no median (--rounds)
    at_least(args.decisions, 1, source, "--decisions")
    at_least(args.rounds, 1, source, "--rounds")
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # the replayed readings start and clear signal faults every decision
    scenario = load_scenario(args.scenario)
    message = recorded_messages(scenario, 1)[0]
    message["t"] = 0
    line = json.dumps(message).encode() + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = policy_checkpoint(scenario, "ppo_shared", Path(tmp) / "policy.zip")
        onnx_path, _ = export_policy(checkpoint, tmp, scenario=scenario)
        runtimes = {path: PolicyRuntime(onnx_path) for path in args.paths}
    log(f"{len(message['intersections'])} intersections, {args.decisions} decisions x {args.rounds} rounds per path")
    ms: dict[str, list[float]] = {path: [] for path in args.paths}
    for path in args.paths:  # warm-up
        for _ in range(200):
            PATHS[path](runtimes[path], line, 1)
    for _ in range(args.rounds):
        for path in args.paths:
            answer, runtime = PATHS[path], runtimes[path]
            started = time.perf_counter()
            for _ in range(args.decisions):
                answer(runtime, line, 1)
            ms[path].append((time.perf_counter() - started) / args.decisions * 1e3)
    for path in args.paths:
        emit({"benchmark": "service_decision", "scenario": args.scenario, "path": path,
              "intersections": len(message["intersections"]), "decisions_per_round": args.decisions,
              "ms_per_decision": [round(x, 3) for x in ms[path]], "median_ms": round(statistics.median(ms[path]), 3),
              "machine": machine_info()})


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
