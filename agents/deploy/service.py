"""The policy runtime as a service: JSON lines of readings in, JSON lines of commands out.

    python -m agents.deploy.service serve --model exported/policy.onnx          # JSON lines on stdin
    python -m agents.deploy.service serve --model exported/policy.onnx --tcp 127.0.0.1:7000
    python -m agents.deploy.service serve --model exported/policy.onnx --tcp 127.0.0.1:7000 --decoders 0

One `PolicyRuntime` (one signal network, one state) answers every message in order, whichever
client sent it. Every request line gets exactly one reply line: a bad message (not UTF-8, not
JSON, nested too deeply, longer than 16 MiB, blank, or not a valid readings message) gets an
``{"error": ..., "line": N}`` reply and the service keeps serving; no line stops it. Imports
numpy and onnxruntime only, like the runtime. A model that cannot be run (missing or unusable
metadata) or a bad option (``--deadline-ms``, ``--log-level``, a ``--tcp`` address it cannot
listen on or without a port; an IPv6 host goes in brackets, ``[::1]:7000``) prints
``error: <one line>`` and exits 2; ``--debug`` shows the traceback instead.

A message in the exact expected shape is decoded with orjson where it is installed (optional: it
comes with tensordict) and answered by `PolicyRuntime.decide_text` with the same reply text
`handle_line` would give; any other line, and every line without orjson, goes through
`handle_line` (json.loads, then each intersection's readings checked one by one). On TCP,
``--decoders N`` worker processes decode the lines waiting behind the one being decided
(agents/deploy/decoders.py; the default, ``auto``, is one where orjson is installed and the
service may use two cores or more, none elsewhere): the same replies in the same order, on a
second core.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import sys
import threading

from agents.deploy.runtime import LOG, PolicyRuntime, check_deadline_ms
from agents.deploy.tcp_lines import LineServer
from envs.errors import ConfigError, exit_on_error

try:
    import orjson  # optional: a faster decoder for the hot path (`reply_line`)
except ImportError:  # pragma: no cover - a cabinet without it runs on json alone
    orjson = None


COMMAND_LINE = "<command line>"  # the source its option errors name
MAX_LINE_BYTES = 16 << 20  # a longer line is refused unread (a 128-intersection message is ~40 KB)
TOO_LONG = object()  # what `bounded_lines` yields in place of a line over MAX_LINE_BYTES


def _error(number: int, reason: str) -> dict:
    return {"error": f"line {number}: {reason}", "line": number}


def handle_line(runtime: PolicyRuntime, line: str | bytes, number: int) -> dict:
    """One request line -> one reply; a bad message gets an ``error`` reply, never an exception.

    Bytes are decoded as UTF-8 here, line by line, so one undecodable line is one error reply
    whatever the locale; a blank line gets an error reply too (one reply per line, always)."""
    if line is TOO_LONG:
        return _error(number, f"line longer than {MAX_LINE_BYTES:,} bytes, not read")
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError as error:
        return _error(number, f"not UTF-8 text (byte {error.start}: {error.reason})")
    if not text.strip():
        return _error(number, "blank line: no message (each line must be one JSON object)")
    try:
        message = json.loads(text)
    except json.JSONDecodeError as error:
        return _error(number, f"not JSON ({error.msg} at column {error.colno})")
    except RecursionError:
        return _error(number, "not a usable message: JSON nested too deeply")
    except ValueError as error:  # e.g. an integer longer than Python's digit limit
        return _error(number, f"not a usable message: {error}")
    return _decided(runtime.decide, message, number)


def _decided(decide, message, number: int):
    """`decide(message)`, or the error reply for the ValueError (or anything else) it raises."""
    try:
        return decide(message)
    except ValueError as error:
        return _error(number, str(error))
    except Exception as error:  # the service must keep serving whatever one message does
        LOG.exception("line %d: unexpected error", number)
        return _error(number, f"internal error {type(error).__name__}: {str(error)[:200]}")


def reply_line(runtime: PolicyRuntime, line: str | bytes, number: int) -> str:
    """``json.dumps(handle_line(runtime, line, number))``, the same text, faster for a message
    in the exact expected shape (module doc): orjson decodes it and the runtime takes all its
    intersections at once. Anything orjson refuses (not UTF-8, not JSON, NaN, nested too
    deeply, ...) or the runtime does not take at once goes through `handle_line` unchanged."""
    if orjson is not None and line is not TOO_LONG:
        try:
            message = orjson.loads(line)
        except Exception:  # whatever orjson refuses, json.loads is the judge (its error, or its message)
            message = None
        if message is not None:
            reply = _decided(runtime.decide_text, message, number)
            if reply is not None:
                return reply if isinstance(reply, str) else json.dumps(reply)
    return json.dumps(handle_line(runtime, line, number))


def decoded_reply(runtime: PolicyRuntime, decoded: tuple, number: int) -> str:
    """`reply_line`'s text for a line that a decoding worker (agents/deploy/decoders.py) has
    decoded with `WholeMessage.decode`: what `reply_line` gives once orjson and the decode are done."""
    reply = _decided(runtime.decide_decoded, decoded, number)
    return reply if isinstance(reply, str) else json.dumps(reply)


def bounded_lines(stream, limit: int = MAX_LINE_BYTES):
    """The lines of a binary stream, each at most `limit` bytes; a longer one is skipped to its
    end and yielded as `TOO_LONG` (a client cannot make the service hold an endless line)."""
    while True:
        raw = stream.readline(limit + 1)
        if not raw:
            return
        if len(raw) > limit and not raw.endswith(b"\n"):
            while True:  # drop the rest of the line
                rest = stream.readline(limit)
                if not rest or rest.endswith(b"\n"):
                    break
            yield TOO_LONG
        else:
            yield raw


def serve_lines(runtime: PolicyRuntime, lines, write) -> None:
    """Answer each line of `lines` (str, bytes or `TOO_LONG`) with `write`: one JSON line per
    request line, blank and broken ones included."""
    for number, line in enumerate(lines, 1):
        write(reply_line(runtime, line, number) + "\n")


def listen(runtime: PolicyRuntime, host: str, port: int, decoders: int = 0) -> LineServer:
    """A server for `runtime` listening on ``host:port``, with `decoders` decoding worker
    processes (agents/deploy/decoders.py; 0: the serving process decodes every line); a
    `ConfigError` naming ``--tcp`` where it cannot listen (the port in use, an unknown host),
    before any client is waiting on it."""
    def answer(line, number):
        return reply_line(runtime, line, number)

    try:
        server = LineServer(host, port, answer, MAX_LINE_BYTES, TOO_LONG)
    except OSError as error:
        raise ConfigError(COMMAND_LINE, "--tcp", shown_address(host, port),
                          f"cannot listen there ({error.strerror or error})") from None
    if decoders:
        from agents.deploy.decoders import DecodingAnswers  # multiprocessing, only when asked for

        try:
            workers = DecodingAnswers(runtime.whole_message, decoders, answer,
                                      lambda decoded, number: decoded_reply(runtime, decoded, number))
        except OSError as error:  # no process to be had (a process limit, memory)
            server.close()
            raise ConfigError(COMMAND_LINE, "--decoders", str(decoders),
                              f"cannot start a decoding worker ({error.strerror or error})") from None
        server.answer_with(workers)
    LOG.info("serving on %s (%s)", shown_address(*server.server_address),
             f"{decoders} decoding worker{'s' * (decoders > 1)}" if decoders else "decoding in this process")
    return server


def serve_tcp(runtime: PolicyRuntime, host: str, port: int, ready=None, decoders: int = 0) -> None:
    """Serve JSON lines on a TCP socket until shut down; ``ready(server)`` once listening.

    One thread serves every client (agents/deploy/tcp_lines.py): the runtime answers one message
    at a time anyway, and a client that stalls, sends a line too long, or never reads its
    replies holds up no one. `decoders`: as `listen`'s."""
    server = listen(runtime, host, port, decoders)
    if ready is not None:
        ready(server)
    server.serve_forever()


def default_decoders() -> int:
    """``--decoders``' default: one decoding worker where orjson is installed and this process
    may run on two cores or more, else none."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if orjson is not None and cores >= 2 else 0


def decoders_option(text: str) -> int:
    """``--decoders``' value: ``auto`` (`default_decoders`) or a count of worker processes."""
    if text == "auto":
        return default_decoders()
    if not text.isdigit():
        raise ConfigError(COMMAND_LINE, "--decoders", text,
                          "expected 'auto' or a whole number of worker processes >= 0")
    if int(text) and orjson is None:
        raise ConfigError(COMMAND_LINE, "--decoders", text, "decoding workers need orjson, which is not installed")
    return int(text)


class _OneLineParser(argparse.ArgumentParser):
    """argparse's own errors (a missing --model, an unknown flag) as one ``error:`` line, exit 2,
    like the service's other start-up errors (argparse prints its usage block first)."""

    def error(self, message: str):
        print(f"error: {COMMAND_LINE}: {message} (options: {self.prog} --help)", file=sys.stderr, flush=True)
        raise SystemExit(2)


def _deadline_ms(text: str) -> float | None:
    """``--deadline-ms``: milliseconds, or null / none for no deadline (its error says so)."""
    if text.strip().lower() in ("null", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(COMMAND_LINE, "--deadline-ms", text, "expected a number of milliseconds, or null for none") \
            from None
    return check_deadline_ms(value, COMMAND_LINE, "--deadline-ms")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m agents.deploy.service", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="read JSON lines of readings, write JSON lines of commands")
    serve.add_argument("--model", required=True, help="the exported .onnx file")
    serve.add_argument("--metadata", default=None, help="its metadata JSON (default: beside the model)")
    serve.add_argument("--tcp", default=None, metavar="HOST:PORT",
                       help="serve a local TCP socket instead of stdin (an IPv6 host in brackets: [::1]:7000)")
    serve.add_argument("--decoders", default="auto", metavar="N",
                       help="with --tcp: worker processes that decode the next lines while one is decided "
                            "(default auto: 1 where orjson is installed and there are 2+ cores, else 0)")
    serve.add_argument("--deadline-ms", default="50", help="slower inference falls back (default 50; null: none)")
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument("--debug", action="store_true", help="show the traceback of a model that cannot be run")
    return parser


def shown_address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets (``[::1]:7000``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tcp_address(text: str) -> tuple[str, int]:
    """``--tcp``'s HOST:PORT (no host: 127.0.0.1); an IPv6 host in brackets, ``[::1]:7000``."""
    if text.startswith("["):  # the brackets were kept as part of the host: "cannot listen there"
        host, closed, rest = text[1:].partition("]")
        if not closed or not host or (rest and not rest.startswith(":")):
            raise ConfigError(COMMAND_LINE, "--tcp", text, "expected [IPV6]:PORT, such as [::1]:7000")
        if not rest:
            raise ConfigError(COMMAND_LINE, "--tcp", text, f"no port: expected [{host}]:PORT with a port in "
                                                           "[0, 65535] (0: any free port, logged when serving)")
        port = rest[1:]
    else:
        host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(COMMAND_LINE, "--tcp", text, "expected HOST:PORT with a port in [0, 65535]")
    return host or "127.0.0.1", int(port)


def _log_level(name: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):  # getLevelName answers "Level X" for a name it does not know
        raise ConfigError(COMMAND_LINE, "--log-level", name, "expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _stop_on_sigterm(signum, frame) -> None:
    """SIGTERM (a service manager's stop): end as Ctrl-C does, closing the sockets and the decoding
    workers on the way out, with exit status 143."""
    LOG.info("stopped (SIGTERM)")
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
        # before "serving on" is logged: a service manager may stop the service as soon as it reads it
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    server = None
    try:
        with exit_on_error(debug=args.debug):
            logging.basicConfig(level=_log_level(args.log_level), stream=sys.stderr,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            address = _tcp_address(args.tcp) if args.tcp else None
            deadline_ms = _deadline_ms(args.deadline_ms)
            decoders = decoders_option(args.decoders)
            if decoders and not address and args.decoders != "auto":
                raise ConfigError(COMMAND_LINE, "--decoders", args.decoders,
                                  "decoding workers serve --tcp clients; on stdin each line waits for its reply")
            runtime = PolicyRuntime(args.model, args.metadata, deadline_ms=deadline_ms)
            server = listen(runtime, *address, decoders) if address else None
        if server:
            serving, server = server, None  # serve_forever closes its sockets and workers however it ends
            serving.serve_forever()
        else:
            # bytes, decoded line by line: an undecodable line is an error reply, not the end of the service
            serve_lines(runtime, bounded_lines(sys.stdin.buffer),
                        lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    except KeyboardInterrupt:  # Ctrl-C: the way to stop a service in a terminal, not a crash
        LOG.info("stopped (interrupted)")
        return 130
    except BrokenPipeError:  # on stdin: whatever read the replies has closed its end (`serve ... | head -1`)
        LOG.info("stopped (stdout closed: the reader of the replies has gone)")
        try:  # the unwritten replies are not flushed again at exit, which would print the error once more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass
        return 141  # 128 + SIGPIPE, as a command a closed pipe stops
    finally:
        if server is not None:  # stopped after listening, before serving
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
