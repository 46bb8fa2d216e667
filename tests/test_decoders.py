"""Decoding workers (agents/deploy/decoders.py): the service with them gives the replies it
gives without them, line for line in the order the lines came; handing lines over never waits
on a worker; a worker that dies leaves the service answering by itself; shutdown ends them."""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import threading

import pytest

from agents.deploy.decoders import DecodingAnswers
from agents.deploy.runtime import PolicyRuntime
from agents.deploy.service import TOO_LONG, decoded_reply, listen, main, reply_line
from tests.deploy_fixtures import follow, readings_message
from tests.test_service_fast_path import _bad_readings

pytest.importorskip("orjson")  # the workers decode with it


def _lines_and_replies(model_copy, steps: int = 4) -> tuple[list, list[str]]:
    """A run of lines (good messages that follow the replies, messages with bad readings, broken
    lines, a time going back) and the replies one runtime without workers gives them, in order."""
    reference = PolicyRuntime(*model_copy)
    message, lines, replies = readings_message(reference, 0.0), [], []

    def add(line: bytes) -> None:
        lines.append(line)
        replies.append(reply_line(reference, line, len(lines)))

    for _ in range(steps):
        add(json.dumps(message).encode() + b"\n")
        for bad, _ in _bad_readings(follow(reference, message, {}, 1.0), reference):
            add(json.dumps(bad).encode() + b"\n")
        message = follow(reference, message, {}, 10.0)
    for line in (b"nonsense\n", b"\xff\xfe\n", b"[" * 10_000 + b"\n", b"\n", b'{"t": "soon"}\n'):
        add(line)
    add(json.dumps(readings_message(reference, 1.0)).encode() + b"\n")  # a time going back
    return lines, replies


def _answers(runtime: PolicyRuntime) -> DecodingAnswers:
    return DecodingAnswers(runtime.whole_message, 1, lambda line, number: reply_line(runtime, line, number),
                           lambda decoded, number: decoded_reply(runtime, decoded, number))


def _collect(answers: DecodingAnswers) -> list[str]:
    """Every reply owed, waiting on the workers' sockets as the server does (10 s at most each wait)."""
    replies = []
    with selectors.DefaultSelector() as selector:
        while answers.waiting:
            replies += [reply() for _, reply in answers.finished()]
            watched = answers.watched()
            if answers.waiting and watched:
                for sock, events in watched.items():
                    selector.register(sock, events)
                assert selector.select(10), "no decoding came back in 10 s"
                for sock in watched:
                    selector.unregister(sock)
    return replies


@pytest.mark.parametrize("workers", [1, 2])  # two: lines dealt in turn, decided in the order they came
def test_a_burst_of_lines_gets_the_replies_the_service_gives_without_workers(model_copy, workers):
    lines, expected = _lines_and_replies(model_copy)
    server = listen(PolicyRuntime(*model_copy), "127.0.0.1", 0, decoders=workers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=30) as conn:
            conn.sendall(b"".join(lines))  # all at once: the worker decodes ahead of the decisions
            conn.shutdown(socket.SHUT_WR)
            replies = conn.makefile("rb").read().decode().splitlines()
    finally:
        server.shutdown()
        thread.join(10)
    assert replies == expected
    assert sum("commands" in reply for reply in replies) > len(lines) // 2  # decisions, not only errors


def test_handing_over_lines_never_waits_on_a_worker(model_copy):
    runtime = PolicyRuntime(*model_copy)
    message = readings_message(runtime, 0.0)
    # megabytes of readings for an unknown intersection: far beyond what the sockets buffer
    message["intersections"]["far_away"] = {"lane_count": [1.0] * 400_000}
    big = json.dumps(message).encode() + b"\n"
    expected = reply_line(PolicyRuntime(*model_copy), big, 1)
    answers = _answers(runtime)
    worker = answers.workers[0].process
    try:
        os.kill(worker.pid, signal.SIGSTOP)  # a worker that takes nothing: a blocking send would hang here
        submitting = threading.Thread(target=lambda: [answers.submit(line, number, None) for number, line in
                                                      enumerate([big, big, big, TOO_LONG], 1)], daemon=True)
        submitting.start()
        submitting.join(30)
        assert not submitting.is_alive(), "handing lines over waited on the worker"
        assert not answers.ready() and answers.workers[0].outbox  # still waiting to go out
        os.kill(worker.pid, signal.SIGCONT)
        replies = _collect(answers)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        answers.close()
    assert replies[0] == expected and "ignored: ['far_away']" in replies[0]
    assert all("commands" in json.loads(reply) for reply in replies[1:3])  # the same t again: decided
    assert json.loads(replies[3]) == {"error": "line 4: line longer than 16,777,216 bytes, not read", "line": 4}


def test_a_worker_that_dies_leaves_the_service_answering_as_without_workers(model_copy, caplog):
    lines, expected = _lines_and_replies(model_copy, steps=2)
    runtime = PolicyRuntime(*model_copy)
    answers = _answers(runtime)
    half = len(lines) // 2
    try:
        with caplog.at_level(logging.ERROR, logger="gridlight.runtime"):
            for number, line in enumerate(lines[:half], 1):
                answers.submit(line, number, None)
            answers.workers[0].process.kill()  # with lines in flight: some decoded, some not
            answers.workers[0].process.join(10)
            for number, line in enumerate(lines[half:], half + 1):
                answers.submit(line, number, None)
            replies = _collect(answers)
    finally:
        answers.close()
    assert replies == expected
    assert answers.watched() == {}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "decoding worker gridlight-decoder-0 exited (exit code -9); the service decodes its lines itself"]


def test_shutdown_ends_the_decoding_workers(model_copy):
    server = listen(PolicyRuntime(*model_copy), "127.0.0.1", 0, decoders=2)
    processes = [worker.process for worker in server.answers.workers]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert all(process.is_alive() for process in processes)
    server.shutdown()
    thread.join(10)
    assert not any(process.is_alive() for process in processes)
    assert [process.exitcode for process in processes] == [0, 0]  # each saw its input end


@pytest.mark.parametrize("given, tcp, reason", [
    ("two", True, "expected 'auto' or a whole number of worker processes >= 0"),
    ("-1", True, "expected 'auto' or a whole number of worker processes >= 0"),
    ("1", False, "decoding workers serve --tcp clients; on stdin each line waits for its reply"),
])
def test_bad_decoders_print_one_line_naming_the_option_and_exit_2(model_copy, capsys, given, tcp, reason):
    tcp_args = ["--tcp", "127.0.0.1:0"] if tcp else []
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--model", str(model_copy[0]), *tcp_args, "--decoders", given])
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: <command line>: field '--decoders' = {given!r}: {reason}"


def test_a_worker_that_cannot_start_is_an_error_naming_decoders_and_ends_those_started(model_copy, monkeypatch):
    from agents.deploy import decoders
    from envs.errors import ConfigError

    started = []

    class OneOnly(decoders._Worker):
        def __init__(self, *args):
            if started:
                raise OSError(11, "Resource temporarily unavailable")
            super().__init__(*args)
            started.append(self.process)

    monkeypatch.setattr(decoders, "_Worker", OneOnly)
    with pytest.raises(ConfigError) as caught:
        listen(PolicyRuntime(*model_copy), "127.0.0.1", 0, decoders=2)
    assert str(caught.value) == ("<command line>: field '--decoders' = '2': cannot start a decoding worker "
                                 "(Resource temporarily unavailable)")
    assert len(started) == 1 and not started[0].is_alive()


# the service with a pause after it logs "serving on" and before it serves: a stop in that moment
# (a service manager stops it as soon as it reads the line) must end it as one while serving does
PAUSED_AFTER_LISTENING = """
import sys, time
import agents.deploy.service as service
listen = service.listen
def listen_then_pause(*args):
    server = listen(*args)
    time.sleep(1.0)
    return server
service.listen = listen_then_pause
sys.exit(service.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("paused", [False, True], ids=["serving", "between-listening-and-serving"])
@pytest.mark.parametrize("stop, status, said", [
    ("ctrl_c", 130, "stopped (interrupted)"),  # SIGINT to the whole process group, as a terminal sends it
    ("sigterm", 143, "stopped (SIGTERM)"),  # to the service only, as a service manager does
])
def test_ctrl_c_or_sigterm_stops_the_service_and_its_workers_without_a_traceback(model_copy, stop, status, said,
                                                                                  paused):
    import subprocess
    import sys
    import time

    from tests.conftest import REPO_ROOT

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    start = ["-c", PAUSED_AFTER_LISTENING] if paused else ["-m", "agents.deploy.service"]
    service = subprocess.Popen([sys.executable, *start, "serve", "--model", str(model_copy[0]),
                                "--tcp", "127.0.0.1:0", "--decoders", "1"], cwd=REPO_ROOT, env=env,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in service.stderr:  # wait until it serves
        if "serving on" in line:
            break
    workers = subprocess.run(["pgrep", "-P", str(service.pid)], capture_output=True, text=True).stdout.split()
    if stop == "ctrl_c":
        os.killpg(service.pid, signal.SIGINT)
    else:
        service.send_signal(signal.SIGTERM)
    rest = service.communicate(timeout=30)[1]
    assert service.returncode == status
    assert "Traceback" not in rest and rest.rstrip().endswith(said)
    assert workers  # the decoding worker (and multiprocessing's resource tracker)
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)  # ended with the service (reparented and reaped)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
