"""A line server on TCP in one thread (`agents.deploy.service` serves the policy runtime with it):
one selector loop reads every client's bytes without blocking, answers whole lines first come,
first served (one line at a time, whichever client sent it), and writes the replies without
blocking.

Why one thread: the runtime holds one signal network's state, so it answers one message at a
time whoever sent it; a thread per client only added the hand-offs of the GIL and of a lock
around the runtime to every decision. Why it still holds up no one: a client's bytes are read
only when it has no whole line waiting (a client sending faster than it is answered waits for
its own answers, as before), a half line just sits in its buffer, a line longer than the limit
is dropped as it arrives (answered once with ``too_long``), and a client that does not read its
replies is not answered further once ``OUTBOX_LIMIT`` bytes of them are waiting: each of these
only delays itself, and a client's memory stays within the limit plus one read. Whatever goes
wrong with one client (a send or receive error, even an exception while answering it) closes
that connection only; the loop serves on until `LineServer.shutdown`.

The replies come from an answerer: `InTurn` answers each line as it is handed over;
agents/deploy/decoders.py's `DecodingAnswers` has worker processes decode the lines waiting
behind the one being answered, and the loop waits on their sockets too.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections import deque
from typing import Callable

LOG = logging.getLogger("gridlight.runtime")
READ_BYTES = 1 << 16  # a 128-intersection message (~30 KB) in one read
OUTBOX_LIMIT = 1 << 20  # replies waiting for a client that does not read them: answer it no further


class _Client:
    """One connection's bytes in and out, and how many lines it has sent."""

    def __init__(self, sock: socket.socket, address) -> None:
        self.sock, self.address = sock, address
        self.inbox, self.outbox = bytearray(), bytearray()
        self.number = 0  # lines taken so far (the reply's ``line``)
        self.skipping = False  # inside a line over the limit: its bytes are dropped up to its newline
        self.ended = False  # the client has sent its last byte
        self.events = selectors.EVENT_READ
        self.queued = False  # in the server's queue of clients with a whole line
        self.owed = 0  # lines handed to the answerer whose replies are not out yet
        self.open = True

    def received(self, data: bytes, limit: int) -> None:
        if self.skipping:
            end = data.find(b"\n")
            if end < 0:
                return  # more of the long line: dropped
            data = data[end:]  # its newline ends it (answered in `next_line`)
        self.inbox += data
        if b"\n" not in self.inbox and len(self.inbox) > limit:
            self.inbox.clear()  # a line longer than the limit: not kept
            self.skipping = True

    def next_line(self, limit: int, too_long):
        """The next whole line (bytes, its newline included) or `too_long`; None if none is
        whole yet. The last line may lack its newline."""
        end = self.inbox.find(b"\n")
        if end < 0:
            if not self.ended or not (self.inbox or self.skipping):
                return None
            too = self.skipping or len(self.inbox) > limit
            line, end = (too_long if too else bytes(self.inbox)), len(self.inbox) - 1
        else:
            line = too_long if self.skipping or end > limit else bytes(self.inbox[: end + 1])
        del self.inbox[: end + 1]
        self.skipping = False
        self.number += 1
        return line


class InTurn:
    """Answers each line as it is handed over: ``answer(line, number) -> reply text`` (the
    answerer protocol `LineServer` uses; agents/deploy/decoders.py has one that decodes ahead)."""

    def __init__(self, answer: Callable[[object, int], str]) -> None:
        self.answer = answer
        self.waiting: deque = deque()

    def watched(self) -> dict:
        """Sockets to wait on -> selector events; none here: a reply is ready once its line is handed over."""
        return {}

    def room(self) -> bool:
        return not self.waiting

    def submit(self, line, number: int, owner) -> None:
        self.waiting.append((line, number, owner))

    def ready(self) -> bool:
        return bool(self.waiting)

    def finished(self):
        while self.waiting:
            line, number, owner = self.waiting.popleft()
            yield owner, lambda line=line, number=number: self.answer(line, number)

    def close(self) -> None:
        pass


class LineServer:
    """Serves ``answer(line, number) -> reply text`` (one reply line per request line, numbered
    per client from 1) on ``host:port`` until `shutdown`; ``server_address`` as socketserver's.
    `answer_with` puts another answerer in its place (one that hands back replies later, in the
    order it took the lines)."""

    def __init__(self, host: str, port: int, answer: Callable[[object, int], str], limit: int, too_long) -> None:
        self.answers = InTurn(answer)
        self.limit, self.too_long = limit, too_long
        family = socket.AF_INET6 if ":" in host else socket.AF_INET  # an IPv6 literal such as ::1
        self.listener = socket.create_server((host, port), family=family, backlog=128, reuse_port=False)
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()[:2]
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping, self._stopped = threading.Event(), threading.Event()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        self.selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        self.answer_events: dict = {}  # the answerer's sockets registered with the selector -> their events
        self.watch_answerer()
        self.clients: list[_Client] = []
        self.queue: deque[_Client] = deque()  # clients with a whole line to answer, in order of arrival

    def shutdown(self) -> None:
        """Stop serving and wait until the loop has closed every connection (from another thread)."""
        self._stopping.set()
        try:
            self._wake_write.send(b"x")  # out of select(); the loop closes the other end, this one is ours
        except OSError:  # the loop has ended already (its end of the pair is closed)
            pass
        self._stopped.wait()
        self._wake_write.close()

    def serve_forever(self) -> None:
        answers = self.answers
        try:
            while not self._stopping.is_set():
                # bytes that arrived meanwhile first (without waiting while a line or a reply
                # waits), then hand lines over while the answerer has room (one for `InTurn`),
                # the client whose whole line has waited longest first (first come, first
                # served); then send the replies that are ready, in the order handed over
                busy = (self.queue and answers.room()) or answers.ready()
                for key, mask in self.selector.select(0 if busy else None):
                    if key.data == "listener":
                        self._accept()
                    elif isinstance(key.data, _Client):
                        self._guarded(key.data, self._service, mask)
                while self.queue and answers.room():
                    client = self.queue.popleft()
                    client.queued = False
                    self._guarded(client, self._hand_over)
                for client, reply in answers.finished():
                    self._guarded(client, self._deliver, reply)
                self.watch_answerer()
        finally:
            answers.close()
            for client in list(self.clients):
                self._drop(client)
            for sock in (self.listener, self._wake_read):
                sock.close()
            self.selector.close()
            self._stopped.set()

    def close(self) -> None:
        """Close a server that will not serve (`serve_forever` closes its sockets when it ends)."""
        self.answers.close()
        for sock in (self.listener, self._wake_read, self._wake_write):
            sock.close()
        self.selector.close()

    def answer_with(self, answers) -> None:
        """Answer with `answers` (an answerer, `InTurn`'s methods) from now on; before `serve_forever`."""
        self.answers.close()
        self.answers = answers
        self.watch_answerer()

    def watch_answerer(self) -> None:
        """Wait on the answerer's sockets (`InTurn.watched`: a decoding worker's reply to read,
        or room to write it a line), and no longer on those it has let go."""
        wanted = self.answers.watched()
        if wanted != self.answer_events:
            for sock in self.answer_events.keys() - wanted.keys():
                self.selector.unregister(sock)
            for sock, events in wanted.items():
                if sock not in self.answer_events:
                    self.selector.register(sock, events, "answer")
                elif events != self.answer_events[sock]:
                    self.selector.modify(sock, events, "answer")
            self.answer_events = wanted

    def _guarded(self, client: _Client, action, *args) -> None:
        """`action(client, *args)`, then queue or let go of the client; whatever goes wrong is
        that client's loss only (its connection closes, as a crashed thread's did), never the loop's."""
        try:
            action(client, *args)
            self._settle(client)
        except Exception:
            LOG.exception("client %s: line %d not answered; connection closed", client.address, client.number)
            self._drop(client)

    def _hand_over(self, client: _Client) -> None:
        if client.open and self._answerable(client):
            line = client.next_line(self.limit, self.too_long)
            client.owed += 1
            self.answers.submit(line, client.number, client)

    def _deliver(self, client: _Client, reply: Callable[[], str]) -> None:
        client.owed -= 1
        text = reply()  # the decision is made even if the client has gone meanwhile: it was asked
        if client.open:
            client.outbox += text.encode() + b"\n"
            self._send(client)

    def _settle(self, client: _Client) -> None:
        """Queue a client with a whole line to answer; let go of one that has ended and has every reply."""
        if not client.open:
            return
        if client.ended and not (client.outbox or client.inbox or client.skipping or client.owed):
            self._drop(client)
        elif not client.queued and self._answerable(client):
            client.queued = True
            self.queue.append(client)

    def _answerable(self, client: _Client) -> bool:
        if len(client.outbox) >= OUTBOX_LIMIT:
            return False
        return b"\n" in client.inbox or (client.ended and bool(client.inbox or client.skipping))

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. out of file descriptors: the clients already here go on
                LOG.warning("cannot accept a connection: %s", error)
                return
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a reply goes out whole, now
            except OSError:  # gone already
                sock.close()
                continue
            client = _Client(sock, address)
            self.clients.append(client)
            self.selector.register(sock, client.events, client)

    def _service(self, client: _Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._send(client)
        # read only when no whole line waits: a client is answered line by line, as it was read
        if mask & selectors.EVENT_READ and client.open and b"\n" not in client.inbox:
            try:
                data = client.sock.recv(READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                return self._drop(client, error)
            if data:
                client.received(data, self.limit)
            else:
                client.ended = True
                self._watch(client)

    def _send(self, client: _Client) -> None:
        if client.outbox:
            try:
                sent = client.sock.send(client.outbox)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:  # the client went away mid-reply: its loss only
                return self._drop(client, error)
            del client.outbox[:sent]
        self._watch(client)

    def _watch(self, client: _Client) -> None:
        """Wait for its bytes unless it has ended or too many replies wait; for its socket to take
        more while any do."""
        reading = not client.ended and len(client.outbox) < OUTBOX_LIMIT
        events = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if client.outbox else 0)
        if events != client.events and client.open:
            if client.events and events:
                self.selector.modify(client.sock, events, client)
            elif events:
                self.selector.register(client.sock, events, client)
            else:
                self.selector.unregister(client.sock)
            client.events = events

    def _drop(self, client: _Client, error: OSError | None = None) -> None:
        if error is not None:
            LOG.info("client %s disconnected: %s", client.address, error)
        if client.open:
            client.open = False
            self.clients.remove(client)
            if client.events:
                try:
                    self.selector.unregister(client.sock)
                except (KeyError, ValueError, OSError):  # not registered after all: nothing to undo
                    pass
        client.sock.close()
