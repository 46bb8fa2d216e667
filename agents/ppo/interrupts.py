"""Ctrl-C and SIGTERM in a training run, for both trainers: SIGTERM turned into the
KeyboardInterrupt that Ctrl-C raises, either of them held back while a PPO update runs (so a
checkpoint never holds half an update), and ``last`` saved when one ends the run.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so both end a run the same way."""


# what train.py says when Ctrl-C or SIGTERM ends a run before its trainer's loop began (loading the
# scenario, the env, the baselines' evaluation): no checkpoint is written, as none would hold anything new
STOPPED_BEFORE_TRAINING = "stopped before training began: nothing to save"
_BEGAN = "gridlight_training_began"  # set on an interrupt that `saved_on_interrupt` caught


def _in_main_thread() -> bool:
    # only the main thread may install signal handlers (a launcher's worker thread cannot)
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block (train.py's run from its folder claim on: set-up, baselines, training), SIGTERM
    raises `Terminated` as Ctrl-C raises KeyboardInterrupt; the previous handler is back after it, so
    a SIGTERM while the summary is written, or in a process that goes on, does what it did before.
    Only the block's first SIGTERM raises: a sweep job gets a SIGTERM to the sweep's process group twice
    (from the kernel and forwarded by the sweep's process, `forward_sigterm_to_workers`), and the second,
    raised inside the first one's save of ``last``, cut that save."""
    if not _in_main_thread():
        yield
        return
    raised = []

    def raise_terminated(signum, frame) -> None:
        if not raised:
            raised.append(signum)
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block (a PPO update), SIGINT and SIGTERM are only recorded; after it the previous
    handlers are back and, if the block ended normally, a recorded signal is raised again, so it
    does then exactly what it would have done in the block (KeyboardInterrupt, `Terminated` inside
    `sigterm_interrupts`, the default termination elsewhere). If the block raised, its error goes
    on with a note naming the signal. Outside the main thread, nothing."""
    # a handler installed outside Python reads as None and could not be put back: left alone
    handled = [sig for sig in DEFERRED_SIGNALS if signal.getsignal(sig) is not None]
    if not _in_main_thread() or not handled:
        yield
        return
    pending: list[int] = []

    def record(signum, frame) -> None:
        if signum not in pending:
            pending.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in handled}
    try:
        yield
    except BaseException as error:
        # the block failed: its error ends the run, not the signal. Raised as a KeyboardInterrupt
        # instead, it would have the trainer save the half-done update as `last` (the one thing
        # the deferral is for) and hide the failure behind "interrupted"
        for sig in pending:
            error.add_note(f"{signal.Signals(sig).name} arrived during the block; this error ends the run instead")
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for sig in pending:  # the first that raises ends the loop, as it would have ended the block
        signal.raise_signal(sig)


@contextmanager
def saved_on_interrupt(save: Callable[[], None]) -> Iterator[None]:
    """A KeyboardInterrupt (Ctrl-C, or SIGTERM as `Terminated`) out of the block first calls
    `save` (the trainer's: ``checkpoints/last`` and how to resume), then goes on."""
    try:
        yield
    except KeyboardInterrupt as stop:
        setattr(stop, _BEGAN, True)
        save()
        raise


def training_began(stop: KeyboardInterrupt) -> bool:
    """Whether `stop` ended a run from within `saved_on_interrupt`'s block (the trainer saved
    ``last`` and said so), or is a second interrupt while it saved; False for one that came before."""
    return getattr(stop, _BEGAN, False) or getattr(stop.__context__, _BEGAN, False)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc (Linux; elsewhere none are found)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:  # stat: "pid (name) state ppid ...", the name may hold spaces or parentheses
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):  # gone meanwhile, or not readable
            continue
    return found


def _stop_sweep(signum, frame) -> None:
    for child in _children(os.getpid()):  # the workers end their jobs as a single run ends: `last` saved
        try:
            os.kill(child, signal.SIGTERM)
        except OSError:
            pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # and the sweep ends as it did, status 143, starting no other job


def is_sweep_command(argv: list[str]) -> bool:
    """Whether a script's command line (`argv`, its arguments) runs a sweep: ``-m``, ``--multirun`` or
    Hydra's ``hydra.mode=MULTIRUN`` override, which runs one as ``-m`` does."""
    return bool({"-m", "--multirun", "hydra.mode=MULTIRUN"} & set(argv))


def forward_sigterm_to_workers() -> None:
    """In a sweep's own process (``train.py -m``, ``evaluate.py -m``): a SIGTERM it gets goes on to its
    worker processes before it ends. Alone, it ended the sweep's process only: the jobs running in its joblib workers
    (not in its process group when a script's shell started it, nor reached by ``kill PID``) trained on,
    orphaned, to their end. Forwarded, each job saves ``last`` and says how to resume, as on a SIGTERM to
    the sweep's whole process group; the jobs not started never start."""
    signal.signal(signal.SIGTERM, _stop_sweep)


__all__ = ["STOPPED_BEFORE_TRAINING", "Terminated", "forward_sigterm_to_workers", "interrupts_deferred",
           "is_sweep_command", "saved_on_interrupt", "sigterm_interrupts", "training_began"]
