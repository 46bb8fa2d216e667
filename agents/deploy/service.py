"""The policy runtime as a service: JSON lines of readings in, JSON lines of commands out.

    python -m agents.deploy.service serve --model exported/policy.onnx          # JSON lines on stdin
    python -m agents.deploy.service serve --model exported/policy.onnx --tcp 127.0.0.1:7000

One `PolicyRuntime` (one signal network, one state) answers every message in order, whichever
client sent it; a bad message gets an ``error`` reply and the service keeps serving. Imports
numpy and onnxruntime only, like the runtime. A model that cannot be run (missing or unusable
metadata) prints ``error: <one line>`` and exits 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import socketserver
import sys
import threading

from agents.deploy.runtime import LOG, PolicyRuntime
from envs.errors import exit_on_error


def handle_line(runtime: PolicyRuntime, line: str, number: int) -> dict:
    """One request line -> one reply; a bad message gets an ``error`` reply, never an exception."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError as error:
        return {"error": f"line {number}: not JSON ({error.msg} at column {error.colno})", "line": number}
    try:
        return runtime.decide(message)
    except ValueError as error:
        return {"error": f"line {number}: {error}", "line": number}
    except Exception as error:  # the service must keep serving whatever one message does
        LOG.exception("line %d: unexpected error", number)
        return {"error": f"line {number}: internal error {type(error).__name__}: {error}", "line": number}


def serve_lines(runtime: PolicyRuntime, lines, write, lock: threading.Lock | None = None) -> None:
    """Answer each non-blank line of `lines` with `write` (one JSON line per reply)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if lock is None:
            reply = handle_line(runtime, line, number)
        else:
            with lock:  # one runtime state: one message at a time, whichever client sent it
                reply = handle_line(runtime, line, number)
        write(json.dumps(reply) + "\n")


def serve_tcp(runtime: PolicyRuntime, host: str, port: int, ready=None) -> None:
    """Serve JSON lines on a TCP socket until shut down; ``ready(server)`` once listening."""
    lock = threading.Lock()  # one signal network, one runtime state

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            def write(text: str) -> None:
                self.wfile.write(text.encode())
                self.wfile.flush()

            def lines():
                for raw in self.rfile:
                    yield raw.decode("utf-8", errors="replace")

            serve_lines(runtime, lines(), write, lock)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer((host, port), Handler) as server:
        LOG.info("serving on %s:%d", *server.server_address)
        if ready is not None:
            ready(server)
        server.serve_forever()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.deploy.service", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="read JSON lines of readings, write JSON lines of commands")
    serve.add_argument("--model", required=True, help="the exported .onnx file")
    serve.add_argument("--metadata", default=None, help="its metadata JSON (default: beside the model)")
    serve.add_argument("--tcp", default=None, metavar="HOST:PORT", help="serve a local TCP socket instead of stdin")
    serve.add_argument("--deadline-ms", type=float, default=50.0, help="slower inference falls back (default 50)")
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument("--debug", action="store_true", help="show the traceback of a model that cannot be run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with exit_on_error(debug=args.debug):
        runtime = PolicyRuntime(args.model, args.metadata, deadline_ms=args.deadline_ms)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        serve_tcp(runtime, host or "127.0.0.1", int(port))
    else:
        serve_lines(runtime, sys.stdin, lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
