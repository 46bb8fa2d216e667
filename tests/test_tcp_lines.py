"""The one-thread line server under the TCP service (agents/deploy/tcp_lines.py): lines answered
in order and numbered per client, lines over the limit dropped and answered once, the last line
without its newline answered, and a client that never reads its replies or stalls mid-line
holding up no other client, with its waiting replies bounded."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from agents.deploy import tcp_lines
from agents.deploy.tcp_lines import LineServer

TOO_LONG = object()


BIG = 10_000  # the size of the reply to a line "big"


def _answer(line, number: int) -> str:
    if line == b"boom\n":
        raise RuntimeError("a bug")
    if line is TOO_LONG:
        return f"{number}:too long"
    return "b" * BIG if line == b"big\n" else f"{number}:{line.decode().rstrip()}"


@pytest.fixture
def server():
    served = LineServer("127.0.0.1", 0, _answer, 20, TOO_LONG)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    assert thread.is_alive()  # still serving after the test, whatever its clients did
    served.shutdown()
    thread.join(10)
    assert not thread.is_alive()


def _exchange(server, *chunks: bytes) -> list[str]:
    """Send `chunks` one by one, end the request side, and read every reply line."""
    with socket.create_connection(server.server_address, timeout=20) as conn:
        for chunk in chunks:
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)
        return conn.makefile("rb").read().decode().splitlines()


def test_lines_are_answered_in_order_and_numbered_per_client(server):
    assert _exchange(server, b"a\nbb\n", b"c", b"c\n\nlast") == ["1:a", "2:bb", "3:cc", "4:", "5:last"]
    assert _exchange(server, b"again\n") == ["1:again"]  # a new client counts from 1


def test_a_line_over_the_limit_is_dropped_and_answered_once(server):
    # as bounded_lines: 20 bytes and its newline is a line, 21 is too long, however it arrives
    assert _exchange(server, b"x" * 50 + b"\nshort\n" + b"y" * 30) == ["1:too long", "2:short", "3:too long"]
    assert _exchange(server, b"z" * 15, b"z" * 15, b"z" * 15, b"\nok\n", b"w" * 20 + b"\n") == [
        "1:too long", "2:ok", "3:" + "w" * 20]


def test_a_client_that_never_reads_or_stalls_holds_up_no_one(server, monkeypatch):
    limit = 1 << 16
    monkeypatch.setattr(tcp_lines, "OUTBOX_LIMIT", limit)
    hog = socket.create_connection(server.server_address, timeout=20)
    stalled = socket.create_connection(server.server_address, timeout=20)
    try:
        stalled.sendall(b"half a li")  # and never the rest
        hog.sendall(b"big\n" * 4000)  # 40 MB of replies it never reads
        deadline = time.monotonic() + 60  # until its socket is full and its replies wait here
        while not any(len(c.outbox) >= limit for c in server.clients) and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.create_connection(server.server_address, timeout=20) as other:
            replies = other.makefile("rb")
            for k in range(3):
                other.sendall(b"ping %d\n" % k)
                assert replies.readline() == b"%d:ping %d\n" % (k + 1, k)
        waiting = max(len(c.outbox) for c in list(server.clients))
        # the hog's waiting replies stop at the limit (plus the one that crossed it)
        assert limit <= waiting < limit + BIG + 1
    finally:
        hog.close()
        stalled.close()


def test_a_client_whose_line_cannot_be_answered_is_let_go_and_the_others_served(server):
    assert _exchange(server, b"one\nboom\nnever\n") == ["1:one"]  # the connection ends after the bug
    assert _exchange(server, b"next\n") == ["1:next"]


def test_a_line_of_exactly_the_limit_is_kept_however_it_arrives():
    # the limit is on a line's bytes before its newline (as bounded_lines): 20 bytes are a line
    # whether the newline comes in the same read, a later read, or never (the client's last line)
    client = tcp_lines._Client(None, ("test", 0))
    client.received(b"w" * 20, 20)  # the newline not here yet: the line may still be good
    client.received(b"\n", 20)
    assert client.next_line(20, TOO_LONG) == b"w" * 20 + b"\n"
    client.received(b"v" * 20, 20)
    client.ended = True  # the last line, without its newline
    assert client.next_line(20, TOO_LONG) == b"v" * 20
    assert client.next_line(20, TOO_LONG) is None
