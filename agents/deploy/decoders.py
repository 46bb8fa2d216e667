"""Decoding workers: the TCP service's JSON decoding in other processes, ahead of the decisions.

    python -m agents.deploy.service serve --model exported/policy.onnx --tcp 127.0.0.1:7000 --decoders 1

A decision has two parts. Decoding the message (orjson, then `WholeMessage.decode`: every
reading into one array) needs no runtime state; deciding (`PolicyRuntime.decide_decoded`: the
checks, the policy, the timing rules, the reply text) must run line after line on the one
runtime. With lines of several clients waiting, a worker decodes the next ones while the service
decides the current one, so a second core takes about half of each decision's work
(docs/reliability.md, "The service under load"). One client that waits for each reply before
sending its next line gains nothing: there is no next line to decode meanwhile.

The replies are the ones the service gives without workers, in the same order, character for
character: lines are decided in the order they were handed over, and a line a worker does not
decode in the expected shape (anything `WholeMessage.decode` refuses, a line orjson cannot read,
a line over the limit) is answered in the serving process by `reply_line`, as it is without
workers. A worker that dies is logged once; its lines, and those it would have had, are decoded
in the serving process from then on.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import selectors
import signal
import socket
import threading
from collections import deque
from typing import Callable

from agents.deploy.readings import WholeMessage

try:
    import orjson
except ImportError:  # pragma: no cover - without orjson there is no fast path to decode for
    orjson = None

LOG = logging.getLogger("gridlight.runtime")
LINES_PER_WORKER = 8  # lines handed to a worker and not yet decided (fewer left the worker idle)
HEADER = 8  # bytes of a frame's length, before the frame


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(HEADER, "little") + payload


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _decode_lines(sock: socket.socket, whole_message: WholeMessage) -> None:
    """A worker's loop: a line's bytes in, `WholeMessage.decode`'s answer out (None for a line
    it does not take, whatever the reason), until the serving process closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as started from the main thread (DecodingAnswers), from any
    with sock:
        while True:
            try:
                header = _read_exactly(sock, HEADER)
                line = header and _read_exactly(sock, int.from_bytes(header, "little"))
                if line is None:
                    return
            except OSError:
                return
            try:
                decoded = whole_message.decode(orjson.loads(line))
            except Exception:  # not JSON, nested too deeply, ...: the serving process answers it as without workers
                decoded = None
            try:
                sock.sendall(_frame(pickle.dumps(decoded, protocol=pickle.HIGHEST_PROTOCOL)))
            except OSError:
                return


class _Worker:
    """One decoding worker as the serving process sees it: its process and the serving end of
    their socket, which never blocks (the lines waiting to go out and the bytes come back are
    buffered here, so neither side can wait on the other while it waits on it)."""

    def __init__(self, context, whole_message: WholeMessage, name: str) -> None:
        self.sock, theirs = socket.socketpair()
        self.process = context.Process(target=_decode_lines, args=(theirs, whole_message), daemon=True, name=name)
        self.process.start()
        theirs.close()
        self.sock.setblocking(False)
        self.outbox, self.inbox = bytearray(), bytearray()
        self.decoded: deque = deque()  # what came back, in the order the lines went out
        self.alive = True

    def send(self, line: bytes) -> None:
        self.outbox += _frame(line)
        self.pump()

    def pump(self) -> None:
        """Write what it can take, read what it has sent back; `alive` turns False if it is gone."""
        try:
            while self.outbox:
                sent = self.sock.send(self.outbox)
                del self.outbox[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.alive = False
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    self.alive = False
                    break
                self.inbox += data
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.alive = False
        while len(self.inbox) >= HEADER:
            size = int.from_bytes(self.inbox[:HEADER], "little")
            if len(self.inbox) < HEADER + size:
                break
            self.decoded.append(pickle.loads(self.inbox[HEADER: HEADER + size]))
            del self.inbox[: HEADER + size]

    def close(self) -> None:
        self.sock.close()  # the worker reads the end of its input and exits
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


class DecodingAnswers:
    """Answers lines for `agents.deploy.tcp_lines.LineServer` with `count` decoding worker
    processes (module doc). ``answer_line(line, number)``: the reply text without workers;
    ``answer_decoded(decoded, number)``: the reply text for what a worker decoded."""

    def __init__(self, whole_message: WholeMessage, count: int, answer_line: Callable[[object, int], str],
                 answer_decoded: Callable[[tuple, int], str]) -> None:
        if orjson is None:
            raise RuntimeError("decoding workers need orjson")
        self.answer_line, self.answer_decoded = answer_line, answer_decoded
        context = multiprocessing.get_context("spawn")  # no fork of a process holding onnxruntime's threads
        self.workers: list[_Worker] = []
        self.live: list[_Worker] = []
        # Ctrl-C reaches the whole process group: the workers (and multiprocessing's resource
        # tracker) start with SIGINT ignored, inherited, so that even one still starting up stays
        # quiet; the service stops and then ends them
        main_thread = threading.current_thread() is threading.main_thread()  # signal.signal works only there
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            for k in range(count):
                self.workers.append(_Worker(context, whole_message, f"gridlight-decoder-{k}"))
        except BaseException:  # no more processes to be had (service.listen says so), or a stop: end those started
            self.close()
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, handler)
        self.live += self.workers
        self.waiting: deque = deque()  # (worker or None, line, number, owner), in the order handed over
        self._turn = 0

    def watched(self) -> dict:
        """The live workers' sockets -> selector events: readable when a decoding is back,
        writable wanted while a line waits to go out."""
        return {w.sock: selectors.EVENT_READ | (selectors.EVENT_WRITE if w.outbox else 0) for w in self.live}

    def room(self) -> bool:
        """Whether another line may be handed over now."""
        return len(self.waiting) < max(LINES_PER_WORKER * len(self.live), 1)

    def submit(self, line, number: int, owner) -> None:
        """Hand over `line` (bytes, or the server's too-long marker), the `number`th of `owner`'s."""
        worker = None
        if isinstance(line, bytes) and self.live:
            worker = self.live[self._turn % len(self.live)]
            self._turn += 1
            worker.send(line)
            self._check(worker)
        self.waiting.append((worker, line, number, owner))

    def ready(self) -> bool:
        """Whether `finished` has a reply to give now."""
        for worker in self.live:
            worker.pump()
            self._check(worker)
        if not self.waiting:
            return False
        worker = self.waiting[0][0]
        return worker is None or not worker.alive or bool(worker.decoded)

    def finished(self):
        """``(owner, reply())`` for each line whose turn has come and whose decoding is back, in
        the order handed over; calling ``reply`` makes the decision (the server calls it guarded)."""
        while self.ready():
            worker, line, number, owner = self.waiting.popleft()
            decoded = worker.decoded.popleft() if worker is not None and worker.decoded else None
            if decoded is None:  # not decoded in shape, or its worker is gone: as without workers
                yield owner, lambda line=line, number=number: self.answer_line(line, number)
            else:
                yield owner, lambda decoded=decoded, number=number: self.answer_decoded(decoded, number)

    def close(self) -> None:
        """End the workers (each exits when its input ends)."""
        for worker in self.workers:
            worker.close()
        self.live.clear()

    def _check(self, worker: _Worker) -> None:
        if not worker.alive and worker in self.live:
            self.live.remove(worker)
            worker.process.join(timeout=1)  # for its exit code
            LOG.error("decoding worker %s exited (exit code %s); the service decodes its lines itself",
                      worker.process.name, worker.process.exitcode)
