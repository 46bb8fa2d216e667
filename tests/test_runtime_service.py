"""The policy runtime's service (agents/deploy/service.py): JSON lines on stdin and TCP, bad
messages answered with errors, the torch-free import, and the CLI's one-line error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

from agents.deploy.runtime import FALLBACK, POLICY, PolicyRuntime
from agents.deploy.service import serve_tcp
from tests.conftest import REPO_ROOT
from tests.deploy_fixtures import readings_message, sources

BLOCKED = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "hydra", "omegaconf")


def _blocked_python(code: str) -> list[str]:
    """A python command line in which the BLOCKED packages cannot be imported."""
    guard = (
        "import sys, importlib.abc\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        f"    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BLOCKED!r}: raise ImportError(name + ' is blocked')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    return [sys.executable, "-c", guard + code]


def test_a_time_going_back_even_by_half_a_second_is_a_clock_reset(model_copy):
    runtime = PolicyRuntime(*model_copy)
    runtime.decide(readings_message(runtime, 10.0))
    reply = runtime.decide(readings_message(runtime, 9.5))
    assert reply["faults"][0].startswith("clock reset: t went back from 10.0 to 9.5;") and "commands" in reply
    assert runtime.decide(readings_message(runtime, 9.5))["faults"] == []  # the same time again is a repeat


def test_runtime_imports_and_serves_stdin_without_torch_sb3_gymnasium_or_hydra(model_copy):
    onnx_path, _ = model_copy
    runtime = PolicyRuntime(*model_copy)
    good = readings_message(runtime, 0.0)
    later = json.loads(json.dumps(good))
    later["t"] = 10.0
    lines = [json.dumps(good), "{broken", json.dumps({"intersections": {}}), json.dumps([1, 2]),
             json.dumps({"t": -5.0, "intersections": {}}), json.dumps(later)]
    code = (
        "import runpy\n"
        f"sys.argv = ['agents.deploy.service', 'serve', '--model', {str(onnx_path)!r}]\n"
        "try:\n    runpy.run_module('agents.deploy.service', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"assert not any(m.split('.')[0] in {BLOCKED!r} for m in sys.modules), sorted(sys.modules)\n"
    )
    done = subprocess.run(_blocked_python(code), input="\n".join(lines) + "\n", capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(replies) == len(lines)
    assert set(sources(replies[0])) == {POLICY}
    assert "not JSON" in replies[1]["error"] and replies[1]["line"] == 2
    assert "field 't'" in replies[2]["error"]
    assert "JSON object" in replies[3]["error"]
    assert replies[4]["faults"][0].startswith("clock reset: t went back from 0.0 to -5.0;")  # not an error
    assert set(sources(replies[4])) == {FALLBACK}  # no readings: every intersection on its plan
    assert replies[5]["t"] == 10.0 and "commands" in replies[5]  # still serving
    # the torch-free process gave the same commands as this one
    assert replies[0] == runtime.decide(good)


def test_service_with_a_bad_model_path_prints_one_line_and_exits_2(tmp_path):
    code = (
        "from agents.deploy.service import main\n"
        f"sys.exit(main(['serve', '--model', {str(tmp_path / 'nowhere.onnx')!r}]))\n"
    )
    done = subprocess.run(_blocked_python(code), capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere.json" in lines[0], done.stderr
    debug = subprocess.run(_blocked_python(code.replace("'serve',", "'serve', '--debug',")), capture_output=True,
                           text=True, cwd=REPO_ROOT, timeout=120, stdin=subprocess.DEVNULL)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ModelError" in debug.stderr


def test_tcp_service_answers_each_line_and_survives_bad_messages(model_copy):
    runtime = PolicyRuntime(*model_copy)
    started = threading.Event()
    servers = []

    def ready(server):
        servers.append(server)
        started.set()

    thread = threading.Thread(target=serve_tcp, args=(runtime, "127.0.0.1", 0, ready), daemon=True)
    thread.start()
    assert started.wait(10)
    host, port = servers[0].server_address
    message = readings_message(PolicyRuntime(*model_copy), 0.0)
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"nonsense\n" + json.dumps(message).encode() + b"\n")
        stream = conn.makefile("r")
        first, second = json.loads(stream.readline()), json.loads(stream.readline())
    servers[0].shutdown()
    assert "error" in first
    assert set(sources(second)) == {POLICY}


def test_tcp_clients_are_served_message_by_message_not_connection_by_connection(model_copy):
    runtime = PolicyRuntime(*model_copy)
    started, servers = threading.Event(), []
    thread = threading.Thread(target=serve_tcp, args=(runtime, "127.0.0.1", 0,
                                                      lambda s: (servers.append(s), started.set())), daemon=True)
    thread.start()
    assert started.wait(10)
    address = servers[0].server_address
    message = readings_message(PolicyRuntime(*model_copy), 0.0)
    with socket.create_connection(address, timeout=10) as idle, socket.create_connection(address, timeout=10) as busy:
        idle.sendall(b"")  # connected, says nothing
        busy.sendall(json.dumps(message).encode() + b"\n")
        reply = json.loads(busy.makefile("r").readline())  # answered while the idle client holds its line
    servers[0].shutdown()
    assert set(sources(reply)) == {POLICY}


def test_numbers_beyond_float_range_are_one_intersections_fault_or_an_error_reply(model_copy):
    from agents.deploy.service import handle_line

    runtime = PolicyRuntime(*model_copy)
    message = readings_message(runtime, 0.0)
    victim = runtime.layout.ids[1]
    message["intersections"][victim]["lane_count"][0] = 10**400
    reply = handle_line(runtime, json.dumps(message), 1)
    assert reply["commands"][victim]["source"] == FALLBACK
    assert {c["source"] for k, c in reply["commands"].items() if k != victim} == {POLICY}
    assert "error" in handle_line(runtime, json.dumps({"t": 10**400, "intersections": {}}), 2)


def test_a_reader_that_closes_stdout_ends_the_stdin_service_with_one_log_line(model_copy, monkeypatch, caplog):
    """A BrokenPipeError traceback (exit 1) when whatever read the replies went away (`serve ... | head -1`)."""
    import io

    from agents.deploy.service import main

    runtime = PolicyRuntime(*model_copy)
    lines = b"".join(json.dumps(readings_message(runtime, t)).encode() + b"\n" for t in (0.0, 5.0, 10.0))

    class ClosedPipe(io.StringIO):
        writes = 0

        def write(self, text):
            ClosedPipe.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines)))
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with caplog.at_level("INFO", logger="gridlight.runtime"):
        status = main(["serve", "--model", str(model_copy[0])])
    assert status == 141 and ClosedPipe.writes == 1  # no more lines decided for a reader that is gone
    assert caplog.messages[-1] == "stopped (stdout closed: the reader of the replies has gone)"
