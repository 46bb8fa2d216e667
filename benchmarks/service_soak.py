"""Load and soak of the controller service over TCP (``python -m agents.deploy.service serve --tcp``).

    python benchmarks/service_soak.py                      # 10 minutes, 8 clients, grid_16x8 (128 signals)
    python benchmarks/service_soak.py --duration 60        # a short run

An untrained policy for ``--scenario`` (latency does not depend on the weights) is exported as
export.py does and served by the service in its own process. ``--clients`` clients each send one
128-intersection readings message (recorded from the simulator under max pressure), wait for its
reply, and repeat, for ``--duration`` seconds; beside them one client sends garbage lines (not
UTF-8, not JSON, deep nesting, blank) as fast as it is answered, and one connects, sends half a
line and stalls. Every message carries the same ``t`` (a decision time may repeat, never go
back), so the clients' interleaving is never an error.

One JSON line: ``decisions_per_s`` (replies with commands to the good clients, all together),
``latency_p50_ms`` / ``latency_p99_ms`` (request sent to reply read, per good-client message),
``slowest_client_p99_ms``, ``policy_share`` (intersection decisions from the policy rather than
the fixed-time fallback: the replayed readings disagree with what the service commanded now and
then, which its cross-check rightly treats as a signal fault), ``garbage_replies`` (all of them
error replies), ``errors`` (error replies to good messages: 0 expected) and the resident memory of
the service and its decoding workers (``--decoders``, reported as ``decoders``; ``rss_start_mb``
after warm-up, ``rss_end_mb``). The service and the clients share this machine's cores:
``service_cpu_cores`` (its workers included) and ``clients_cpu_cores`` are the cores each kept
busy on average while measured (the clients' messages are encoded once, before the run), and
``load_average`` the machine's at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT, at_least, emit, log, machine_info
from controller_latency import policy_checkpoint, recorded_messages

from agents.deploy.export import export_policy
from agents.deploy.service import decoders_option
from envs.errors import ConfigError
from envs.scenario import load_scenario

GARBAGE = [b"\xff\xfe not utf-8", b"{broken", b"[" * 100_000, b"", b"null", b'{"t": "soon"}']


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()  # from the state on: the name may hold spaces


def service_pids(pid: int) -> list[int]:
    """`pid` and its children (the service's decoding workers)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[1]) == pid:
                    children.append(int(entry))
            except (OSError, IndexError):  # gone meanwhile
                pass
    return [pid, *children]


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children, MB."""
    total = 0.0
    for one in service_pids(pid):
        with open(f"/proc/{one}/status") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    return total


def cpu_s(pid: int, children: bool) -> float:
    """CPU seconds (user + system, all threads) process `pid`, and its children if asked, have used so far."""
    ticks = 0
    for one in service_pids(pid) if children else [pid]:
        fields = _stat(one)
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect(port: int, timeout: float = 60.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class GoodClient(threading.Thread):
    def __init__(self, port: int, lines: list[bytes], stop: threading.Event, measuring: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.lines, self.stop, self.measuring = port, lines, stop, measuring
        self.latency: list[float] = []
        self.errors = self.policy = self.total = 0
        self.error_sample = ""

    def run(self) -> None:
        with connect(self.port) as conn:
            replies = conn.makefile("rb")
            k = 0
            while not self.stop.is_set():
                line = self.lines[k % len(self.lines)]
                k += 1
                started = time.perf_counter()
                conn.sendall(line)
                reply = replies.readline()
                took = time.perf_counter() - started
                if not self.measuring.is_set():
                    continue
                if b'"commands"' not in reply:
                    self.errors += 1
                    self.error_sample = self.error_sample or reply[:300].decode(errors="replace")
                    continue
                self.latency.append(took)
                self.policy += reply.count(b'"source": "policy"')
                self.total += reply.count(b'"source": ')


class GarbageClient(threading.Thread):
    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.replies, self.non_errors = port, stop, 0, 0

    def run(self) -> None:
        with connect(self.port) as conn:
            replies = conn.makefile("rb")
            k = 0
            while not self.stop.is_set():
                conn.sendall(GARBAGE[k % len(GARBAGE)] + b"\n")
                k += 1
                reply = replies.readline()
                if not reply:
                    return
                self.non_errors += b'"error"' not in reply
                self.replies += 1


def soak(port: int, lines: list[bytes], args) -> dict:
    stop, measuring = threading.Event(), threading.Event()
    stalled = connect(port)
    stalled.sendall(b'{"t": 0, "intersections": {"half a li')  # and never the rest
    clients = [GoodClient(port, lines, stop, measuring) for _ in range(args.clients)]
    garbage = GarbageClient(port, stop)
    for client in [*clients, garbage]:
        client.start()
    time.sleep(args.warmup)
    measuring.set()
    return {"clients": clients, "garbage": garbage, "stop": stop, "stalled": stalled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="grid_16x8")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=600.0, help="measured seconds (default 10 min)")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--decisions", type=int, default=1,
                        help="distinct recorded messages the clients cycle through (1: all send the same readings, "
                             "so the readings agree with what the service commanded as often as they can)")
    parser.add_argument("--decoders", default="auto",
                        help="the service's --decoders (decoding worker processes; default auto)")
    args = parser.parse_args()
    source = "benchmarks/service_soak.py"  # no client or recording was a traceback after the export, 0 s a rate
    at_least(args.clients, 1, source, "--clients")
    at_least(args.decisions, 1, source, "--decisions")
    if not 0 < args.duration < float("inf"):
        raise ConfigError(source, "--duration", args.duration, "must be a number of seconds > 0")
    if not 0 <= args.warmup < float("inf"):
        raise ConfigError(source, "--warmup", args.warmup, "must be a number of seconds >= 0")
    decoders = decoders_option(args.decoders)  # what the service will run: reported
    torch.set_num_threads(1)
    scenario = load_scenario(args.scenario)
    messages = recorded_messages(scenario, args.decisions)
    for message in messages:
        message["t"] = 0  # one decision time for every client (see the module doc)
    lines = [json.dumps(m).encode() + b"\n" for m in messages]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = policy_checkpoint(scenario, "ppo_shared", Path(tmp) / "policy.zip")
        onnx_path, _ = export_policy(checkpoint, tmp, scenario=scenario)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        service = subprocess.Popen([sys.executable, "-m", "agents.deploy.service", "serve", "--model", str(onnx_path),
                                    "--tcp", f"127.0.0.1:{port}", "--log-level", "ERROR", "--decoders", str(decoders)],
                                   cwd=ROOT, env=env)
        try:
            log(f"{args.clients} clients x {len(messages[0]['intersections'])} intersections, "
                f"{args.duration:g} s measured")
            run = soak(port, lines, args)
            rss_start = rss_mb(service.pid)
            cpu_start = (cpu_s(service.pid, True), cpu_s(os.getpid(), False))
            started = time.perf_counter()
            time.sleep(args.duration)
            rss_end = rss_mb(service.pid)
            cpu = (cpu_s(service.pid, True) - cpu_start[0], cpu_s(os.getpid(), False) - cpu_start[1])
            run["stop"].set()
            wall = time.perf_counter() - started
            for client in [*run["clients"], run["garbage"]]:
                client.join(timeout=30)  # each finishes its exchange before the service goes
            alive = service.poll() is None
        finally:
            service.terminate()
            service.wait(timeout=30)
    clients, garbage = run["clients"], run["garbage"]
    latency = np.concatenate([np.asarray(c.latency) for c in clients]) * 1e3
    client_p99 = [float(np.percentile(np.asarray(c.latency) * 1e3, 99)) for c in clients]
    emit({
        "benchmark": "service_soak", "scenario": args.scenario, "intersections": len(messages[0]["intersections"]),
        "clients": args.clients, "decoders": decoders, "duration_s": round(wall, 1), "decisions": int(latency.size),
        "decisions_per_s": round(latency.size / wall, 1),
        "latency_p50_ms": round(float(np.percentile(latency, 50)), 3),
        "latency_p99_ms": round(float(np.percentile(latency, 99)), 3),
        "slowest_client_p99_ms": round(max(client_p99), 3),
        "client_p99_ms": sorted(round(p, 1) for p in client_p99), "client_decisions": [len(c.latency) for c in clients],
        "policy_share": round(sum(c.policy for c in clients) / max(sum(c.total for c in clients), 1), 3),
        "errors": sum(c.errors for c in clients),
        "error_sample": next((c.error_sample for c in clients if c.error_sample), ""),
        "garbage_replies": garbage.replies, "garbage_non_error_replies": garbage.non_errors, "service_alive": alive,
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        # cores busy on average while measured: the service's process, and this one's client threads
        "service_cpu_cores": round(cpu[0] / wall, 2), "clients_cpu_cores": round(cpu[1] / wall, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()], "machine": machine_info(),
    })


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
