"""What a training run tells its user, for both trainers: status lines on the console (above the
progress bar when one is shown, else on stdout) that also reach the run folder's ``train.log``,
the trainer a checkpoint belongs to, the rounding of ``train.total_agent_steps`` to whole
rollouts, and what an interrupted run says (the trainers save ``last`` on Ctrl-C or SIGTERM: see
`agents.ppo.interrupts`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import CompactHydraException

from agents.ppo.config import SOURCE
from envs.engine.intersections import deciding_intersections
from envs.errors import DEBUG_ENV, CheckpointError, ConfigError, GridlightError, exit_on_error

# status lines go to the log files only: the console gets them as plain lines (Hydra's console
# handler would prefix each with a timestamp and the logger's name)
STATUS = logging.getLogger("gridlight.status")
STATUS.propagate = False
STATUS.setLevel(logging.INFO)
TRAINER_OF_SUFFIX = {".zip": "sb3", ".pt": "torchrl"}  # as evaluate.py / export.py tell them apart


@contextmanager
def status_log(handlers: list[logging.Handler]) -> Iterator[None]:
    """Within the block, status lines also go into these handlers' files (train.py, evaluate.py:
    Hydra's job log); after it, into none, so a later run in the same process (a sweep's worker,
    a notebook) never writes into this one's log."""
    STATUS.handlers = [handler for handler in handlers if isinstance(handler, logging.FileHandler)]
    try:
        yield
    finally:
        STATUS.handlers = []


class SweepJobError(CompactHydraException):
    """A sweep job's GridlightError: Hydra reports a failed job with it as one line, no traceback."""


def sweep_job_line(hydra_config) -> str | None:
    """``sweep job N (FOLDER): OVERRIDES`` for a sweep's job (`run_errors`), None for a single run."""
    from hydra.types import RunMode

    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    overrides = " ".join(hydra_config.overrides.task)
    return f"sweep job {hydra_config.job.num} ({hydra_config.runtime.output_dir}): {overrides}"


@contextmanager
def run_errors(sweep_job: str | None) -> Iterator[None]:
    """A single run (`sweep_job` None): `exit_on_error` (one ``error:`` line, exit status 2). In a
    sweep (``-m``) a GridlightError ends its own job only: its ``sys.exit`` (a SystemExit, which Hydra's
    job runner lets through) ended the whole joblib pool, killing the other jobs mid-training with no
    checkpoint saved and never starting the rest. As a `SweepJobError` Hydra records the job as
    failed and runs the others; the sweep then names the first failed job's overrides and its error
    and exits 1. So the line printed when a job fails is followed by `sweep_job` (`sweep_job_line`):
    which job, its folder and its overrides, for every failed job, not only the first."""
    if sweep_job is None:
        with exit_on_error():
            yield
        return
    try:
        yield
    except GridlightError as error:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        # now, beside the jobs still running: one write, so that their lines do not come between
        print(f"error: {error}\n  in {sweep_job}", file=sys.stderr, flush=True)
        raise SweepJobError(f"error: {error}") from None


def say(message: str, bar=None, file=None) -> None:
    """One status line: on the console as it has always been shown (stdout unless `file`, e.g.
    sys.stderr), and into the run's log."""
    if bar is not None and not bar.disable:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=file if file is not None else sys.stdout, flush=True)
    STATUS.info(message)


def say_compiling(compile_engine: bool) -> None:
    """The notice a run with ``engine.compile=true`` gives before its first engine step, which compiles
    for a while in silence: said by the trainers once every check of the run has passed, so a refused
    run never gives it."""
    if compile_engine:
        say("compiling the engine step (about 30 s on a CPU)…")


def say_single_action_agents(action_phase, rollout: int) -> None:
    """Where some intersections have one signal phase (a SUMO scenario's unsignalised junctions: 322
    of resco_ingolstadt21's 343), say so, and what an agent-step is then: one decision of an
    intersection that has a choice (`agents.ppo.deciding`); `rollout`: one rollout's agent-steps.
    `action_phase`: the layout's ``[I, A]`` table."""
    total = int(action_phase.shape[0])
    single = total - int(deciding_intersections(action_phase).sum())  # every intersection has an action
    if single:
        say(f"{single} of {total} intersections have a single signal phase (nothing to decide): "
            f"train.total_agent_steps and the agent-step counts count the decisions of the {total - single} "
            f"that decide ({rollout:,} per rollout)")


def say_baselines(baselines: dict, primary: str, seeds: int) -> None:
    for name, values in baselines.items():
        say(f"baseline {name}: travel time {values[primary].mean():.1f} s on {seeds} eval seed(s)")


def eval_line(steps: int, travel: float, reductions: dict[str, float]) -> str:
    shown = ", ".join(f"{v:+.1f}% vs {k}" for k, v in reductions.items())
    return f"eval @ {steps:,} agent-steps: travel time {travel:.1f} s" + (f" ({shown})" if shown else "")


def trainer_for_resume(path: str, trainer: str, explicit: bool) -> str:
    """The trainer that resumes `path`: the one its suffix names unless ``trainer=`` was given;
    given and different, a CheckpointError (the checkpoint would otherwise read as corrupted)."""
    wanted = TRAINER_OF_SUFFIX.get(Path(path).suffix)
    if wanted is None or wanted == trainer:
        return trainer
    if explicit:
        raise CheckpointError(path, "trainer", trainer, f"this is a trainer={wanted} checkpoint "
                              f"({Path(path).suffix}): resume it with trainer={wanted}")
    say(f"trainer={wanted} (resuming a {Path(path).suffix} checkpoint)")
    return wanted


RUN_LOCK = ".train.pid"  # in a run folder while a train.py process trains there: its process id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    try:  # a zombie (killed, its parent not having reaped it yet) trains no more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc here: alive, as os.kill said
        return True


def _create(lock: Path, mine: Path) -> None:
    """`lock` made a hard link to `mine` (FileExistsError if it exists); on a file system without
    hard links, created exclusively and then written."""
    try:
        os.link(mine, lock)
    except FileExistsError:
        raise
    except OSError:
        with open(lock, "x") as claim:
            claim.write(mine.read_text())


@contextmanager
def run_dir_claimed(run_dir: Path, key: str, value: str, run: str = "") -> Iterator[None]:
    """`run_dir` held for this process while it trains (``RUN/.train.pid``, removed at the end). Two
    runs started in the same second share Hydra's default ``outputs/DATE/TIME/``: both passed the
    earlier-run check before either had written a checkpoint, then trained into one folder, one's
    checkpoints, progress.csv and summary replacing the other's. A second is now refused naming `key`
    while the first's process lives; a file left by a process that ended (``kill -9``) is taken over."""
    lock = run_dir / RUN_LOCK
    run_dir.mkdir(parents=True, exist_ok=True)
    mine = run_dir / f"{RUN_LOCK}.{os.getpid()}"
    mine.write_text(str(os.getpid()))
    try:
        for _ in range(3):  # created whole by a hard link: never read half-written
            try:
                _create(lock, mine)
                break
            except FileExistsError:
                try:
                    holder = int(lock.read_text())
                except (OSError, ValueError):
                    holder = None
                if holder is not None and holder != os.getpid() and _alive(holder):
                    raise ConfigError(SOURCE, key, value, f"{run}is where another train.py (process {holder}) is "
                                      "training: runs started in the same second share Hydra's outputs/DATE/TIME; "
                                      "give each its own hydra.run.dir") from None
                lock.unlink(missing_ok=True)  # its process ended without removing it
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def last_in_folder(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` (a run's last checkpoint or model) in `folder`'s checkpoints/ or in `folder`
    itself: the file to name when a run's folder is given where one of its files is asked for."""
    return next((p for inside in (folder / "checkpoints", folder) for p in (inside / name for name in names)
                 if p.is_file()), None)


def check_resume(path: str) -> None:
    """ConfigError naming ``resume`` for a path that is no checkpoint file: the readers' errors named
    evaluate.py's key (``field 'checkpoint'``), and a run folder given for its checkpoint got no hint."""
    given = Path(path)  # as the checkpoint readers take it (no ~ expansion: they would not find it)
    if not path.strip():
        raise ConfigError(SOURCE, "resume", path, "empty: give a checkpoint (.zip or .pt), or leave resume out")
    if given.is_dir():
        found = last_in_folder(given, ("last.zip", "last.pt"))
        hint = f": resume={found}" if found else ", not a checkpoint file"
        raise ConfigError(SOURCE, "resume", path, f"is a folder{hint}")
    if not given.is_file():
        raise ConfigError(SOURCE, "resume", path, "no such checkpoint file")
    if given.suffix not in TRAINER_OF_SUFFIX:
        raise ConfigError(SOURCE, "resume", path, "not a train.py checkpoint (.zip from trainer=sb3, .pt from "
                          "trainer=torchrl)")


def check_resume_folder(path: str, run_dir: Path) -> None:
    """ConfigError naming ``hydra.run.dir`` when the folder a resume writes into holds another run's
    last checkpoint: a new run refuses a folder holding a run, but a resume took any, replacing that
    run's last checkpoint and carrying its progress.csv and TensorBoard curve on as its own. Runs are
    told apart by their evaluation history, which a run, and a resume of it anywhere, only extends."""
    from agents.ppo.policy import checkpoint_meta  # SB3 or TorchRL, as the checkpoint needs

    given = Path(path)
    for held in (run_dir / "checkpoints" / f"last{suffix}" for suffix in TRAINER_OF_SUFFIX):
        if not held.is_file() or held.resolve() == given.resolve():
            continue
        ours = checkpoint_meta(given).get("eval_history", []) if held.suffix == given.suffix else None
        try:
            theirs = checkpoint_meta(held).get("eval_history", []) if ours is not None else None
        except CheckpointError:  # a damaged last (the run's best resumed in its place): the resume replaces it
            continue
        common = min(len(ours), len(theirs)) if ours is not None else 0
        if ours is None or ours[:common] != theirs[:common]:
            raise ConfigError(SOURCE, "hydra.run.dir", str(run_dir), f"holds another run ({held} is not one of "
                              f"{path}'s): resume into the checkpoint's own run folder or a new one")


def seed_for_resume(path: str, seed: int, explicit: bool) -> int:
    """The seed a resumed run goes on with: the checkpoint's, whose random state and training
    demand samples it continues whatever ``seed=`` says; given and different, a CheckpointError
    (it would be ignored). A checkpoint that records no seed keeps this run's."""
    from agents.ppo.policy import checkpoint_meta  # SB3 or TorchRL, as the checkpoint needs

    saved = checkpoint_meta(path).get("config", {}).get("seed")
    if saved is None or int(saved) == seed:
        return seed
    if explicit:
        raise CheckpointError(path, "seed", seed, f"the checkpoint was trained with seed={saved}, and a resumed run "
                              "goes on with its random state and demand samples: leave seed= out, or start a new run")
    return int(saved)


def whole_rollouts(total: int, start: int, rollout: int, owed: bool = False) -> int:
    """The agent-steps a run ends at: it stops at the first whole rollout at or past `total`
    (counted from `start`, the resumed checkpoint's); said once when that is more than `total`. A
    checkpoint at or past `total` is refused unless it `owed` its run's final evaluation (an interrupt
    in the last update saved it first): then the run ends at `start`, that evaluation its only work."""
    if total <= start and owed:
        say(f"the checkpoint is at {start:,} agent-steps (train.total_agent_steps={total}) without its final "
            "evaluation, which an interrupt stopped: running that alone")
        return start
    if total <= start:
        raise ConfigError(SOURCE, "train.total_agent_steps", total,
                          f"the checkpoint is already at {start} agent-steps; raise it to continue")
    rollouts = -(-(total - start) // rollout)
    end = start + rollouts * rollout
    if end != total:
        after = f" after the checkpoint's {start:,}" if start else ""
        plural = "s" if rollouts != 1 else ""
        say(f"train.total_agent_steps={total} is rounded up to {rollouts} rollout{plural} of {rollout:,} "
            f"agent-steps{after}: {end:,}")
    return end


def say_interrupted(steps: int, checkpoint: Path) -> None:
    say(f"interrupted at {steps:,} agent-steps; resume with resume={checkpoint}")


__all__ = ["RUN_LOCK", "STATUS", "SweepJobError", "check_resume", "check_resume_folder", "eval_line", "last_in_folder",
           "run_dir_claimed", "run_errors", "say", "status_log", "sweep_job_line", "say_baselines", "say_compiling",
           "say_interrupted", "say_single_action_agents", "seed_for_resume", "trainer_for_resume", "whole_rollouts"]
