"""Issue 18: no line can stop the controller service, on stdin or TCP, and every line gets
exactly one reply (deep nesting, invalid UTF-8 under a strict locale, blank and overlong lines)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from agents.deploy.runtime import POLICY, PolicyRuntime
from agents.deploy.service import TOO_LONG, bounded_lines, handle_line, main, serve_tcp
from tests.conftest import REPO_ROOT
from tests.deploy_fixtures import readings_message, sources

DEEP = b"[" * 200_000 + b"]" * 200_000  # RecursionError in json.loads
BAD_LINES = [DEEP, b"\xff\xfe{\"t\": 0}", b"", b"   ", b"{\"t\": 1e999999, \"intersections\": {}}",
             b"1" * 5000, b"{\"t\": 0, \"intersections\": " + b"[" * 5000 + b"]" * 5000 + b"}", b"null"]


def _messages(model_copy) -> tuple[bytes, bytes]:
    runtime = PolicyRuntime(*model_copy)
    first = readings_message(runtime, 0.0)
    later = readings_message(runtime, 10.0)
    return json.dumps(first).encode(), json.dumps(later).encode()


def _check_replies(replies: list[dict]) -> None:
    """One error reply per bad line, numbered, then the good message still answered."""
    assert len(replies) == len(BAD_LINES) + 2
    assert set(sources(replies[0])) == {POLICY}
    for number, reply in enumerate(replies[1:-1], 2):
        assert reply["line"] == number and reply["error"].startswith(f"line {number}: "), reply
    assert "nested too deeply" in replies[1]["error"]
    assert "not UTF-8" in replies[2]["error"]
    assert "blank line" in replies[3]["error"] and "blank line" in replies[4]["error"]
    assert replies[-1]["t"] == 10.0 and replies[-1]["faults"] == []  # still serving: a decision, no fault


def test_stdin_service_survives_every_bad_line_under_a_strict_ascii_locale(model_copy):
    first, later = _messages(model_copy)
    stdin = b"\n".join([first, *BAD_LINES, later]) + b"\n"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": "ascii:strict",
           "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "agents.deploy.service", "serve", "--model", str(model_copy[0])],
                          input=stdin, capture_output=True, cwd=REPO_ROOT, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_replies([json.loads(line) for line in done.stdout.decode().splitlines()])


def test_tcp_service_survives_every_bad_line_and_serves_the_next_client(model_copy):
    runtime = PolicyRuntime(*model_copy)
    started, servers = threading.Event(), []
    threading.Thread(target=serve_tcp, args=(runtime, "127.0.0.1", 0, lambda s: (servers.append(s), started.set())),
                     daemon=True).start()
    assert started.wait(10)
    first, later = _messages(model_copy)
    try:
        with socket.create_connection(servers[0].server_address, timeout=30) as conn:
            conn.sendall(b"\n".join([first, *BAD_LINES, later]) + b"\n")
            stream = conn.makefile("rb")
            _check_replies([json.loads(stream.readline()) for _ in range(len(BAD_LINES) + 2)])
        with socket.create_connection(servers[0].server_address, timeout=30) as conn:  # a client cut off mid-line
            conn.sendall(b'{"t": 20, "intersec')
        with socket.create_connection(servers[0].server_address, timeout=30) as conn:
            conn.sendall(json.dumps(readings_message(PolicyRuntime(*model_copy), 20.0)).encode() + b"\n")
            reply = json.loads(conn.makefile("rb").readline())
            assert reply["t"] == 20.0 and reply["faults"] == []
    finally:
        servers[0].shutdown()


def test_an_overlong_line_is_skipped_unread_and_answered():
    stream = io.BytesIO(b"x" * 50 + b"\n" + b"short\n" + b"y" * 30)
    lines = list(bounded_lines(stream, limit=20))
    assert lines == [TOO_LONG, b"short\n", TOO_LONG]
    assert "longer than" in handle_line(None, TOO_LONG, 3)["error"]


def test_a_line_of_exactly_the_limit_is_read_with_or_without_its_newline():
    # the limit counts a line's bytes before its newline: the last line, unterminated, included
    stream = io.BytesIO(b"x" * 20 + b"\n" + b"y" * 20)
    assert list(bounded_lines(stream, limit=20)) == [b"x" * 20 + b"\n", b"y" * 20]


def test_the_tcp_address_is_checked_before_the_model_is_loaded(tmp_path):
    done = subprocess.run([sys.executable, "-m", "agents.deploy.service", "serve", "--model",
                           str(tmp_path / "none.onnx"), "--tcp", "127.0.0.1:http"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: <command line>: field '--tcp' = '127.0.0.1:http': "
                                   "expected HOST:PORT with a port in [0, 65535]")


@pytest.mark.parametrize("option, given, shown", [
    ("--deadline-ms", "nan", "nan"),  # NaN turned the deadline off
    ("--deadline-ms", "-5", "-5.0"),  # every decision fell back
    ("--deadline-ms", "0", "0.0"),
    ("--log-level", "BOGUS", "'BOGUS'"),  # was a traceback, exit 1
])
def test_bad_service_options_print_one_line_naming_the_option_and_exit_2(tmp_path, capsys, option, given, shown):
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--model", str(tmp_path / "none.onnx"), option, given])
    assert caught.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: <command line>: field {option!r} = {shown}: ")


def test_a_tcp_port_in_use_prints_one_line_naming_it_and_exits_2(model_copy, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as caught:  # was OSError: [Errno 98], traceback, exit 1
            main(["serve", "--model", str(model_copy[0]), "--tcp", f"127.0.0.1:{port}"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: <command line>: field '--tcp' = '127.0.0.1:{port}': cannot listen there")


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("given, says", [
    ("[::1]", "no port: expected [::1]:PORT with a port in [0, 65535] (0: any free port, logged when serving)"),
    ("[::1", "expected [IPV6]:PORT, such as [::1]:7000"),
    ("[::1]7000", "expected [IPV6]:PORT, such as [::1]:7000"),
    ("[]:7000", "expected [IPV6]:PORT, such as [::1]:7000"),
    ("[::1]:http", "expected HOST:PORT with a port in [0, 65535]"),
])
def test_a_bracketed_tcp_address_without_a_usable_port_is_one_line_naming_it(tmp_path, capsys, given, says):
    with pytest.raises(SystemExit) as caught:  # before the (missing) model is looked at
        main(["serve", "--model", str(tmp_path / "none.onnx"), "--tcp", given])
    assert caught.value.code == 2
    assert capsys.readouterr().err == f"error: <command line>: field '--tcp' = {given!r}: {says}\n"


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1) to listen on")
def test_a_bracketed_ipv6_host_is_served_on_it(model_copy, caplog):
    # "[::1]:PORT" kept its brackets as part of the host: "cannot listen there"
    first, later = _messages(model_copy)
    runtime = PolicyRuntime(*model_copy)
    ready, servers = threading.Event(), []
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as probe:
        port = probe.getsockname()[1]  # a free port, closed again for the service to take

    def started(server):
        servers.append(server)
        ready.set()

    from agents.deploy import service

    host, port = service._tcp_address(f"[::1]:{port}")
    assert (host, port) == ("::1", port)
    thread = threading.Thread(target=serve_tcp, args=(runtime, host, port, started), daemon=True)
    with caplog.at_level("INFO", logger="gridlight.runtime"):
        thread.start()
        assert ready.wait(30)
    try:
        with socket.create_connection(("::1", port), timeout=30) as conn:
            conn.sendall(first + b"\n" + later + b"\n")
            conn.shutdown(socket.SHUT_WR)
            replies = [json.loads(line) for line in conn.makefile("rb").read().splitlines()]
        assert [reply["t"] for reply in replies] == [0.0, 10.0] and set(sources(replies[0])) == {POLICY}
        assert any(r.getMessage().startswith(f"serving on [::1]:{port} ") for r in caplog.records)
    finally:
        servers[0].shutdown()
        thread.join(10)
