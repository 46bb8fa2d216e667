"""Helpers shared by the benchmark scripts: machine description, JSON lines, progress, setup."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

# the scripts run as `python benchmarks/x.py` from the checkout: make `envs`/`agents` importable
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agents.classical import CONTROLLERS  # noqa: E402
from envs.engine import Simulator  # noqa: E402
from envs.errors import ConfigError  # noqa: E402
from envs.scenario import Scenario, load_scenario  # noqa: E402
from envs.scenario.registry import available_datasets, known_datasets  # noqa: E402
from envs.scenario.splits import DemandSpec, sample_trips  # noqa: E402


@lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    """Where the numbers were taken: CPU model, core count, torch build and thread count."""
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.SubprocessError):
        pass
    info = {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def emit(record: dict[str, Any]) -> None:
    """One JSON object per line on stdout (NaN/inf become null so the line stays valid JSON)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    print(json.dumps(clean(record)), flush=True)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def dataset_missing(name: str, data_dir: str | None = None) -> bool:
    """True when `name` is a dataset whose files are not in the data directory."""
    return name in known_datasets() and name not in available_datasets(data_dir)


DEMANDS = ("samples", "original")


def build(
    scenario: str, copies: int, *, seed: int = 0, device: str = "cpu", compile: bool = False,
    data_dir: str | None = None, demand: str = "original",
) -> tuple[Scenario, Simulator]:
    """A simulator over `copies` copies of `scenario`.

    ``demand="original"``: every copy runs the scenario's own trips, so under a fixed-time plan
    all copies move in lockstep; ``"samples"``: copy b runs Poisson sample b of the scenario's
    flows (evaluation split), as training and evaluate.py do, so each copy has its own traffic.
    The default here is "original", which baselines.py runs (the scenario's own file);
    sim_throughput.py asks for "samples" by default."""
    if demand not in DEMANDS:
        raise SystemExit(f"unknown demand {demand!r}; known: {', '.join(DEMANDS)}")
    sc = load_scenario(scenario, seed=seed, data_dir=data_dir, device=device)
    if demand == "samples":
        spec = DemandSpec(mode="poisson")
        batched = sc.demand(trips=[sample_trips(sc, spec, "eval", b) for b in range(copies)])
    else:
        batched = sc.demand(copies=copies)
    sim = Simulator(sc.network, batched, compile=compile, validate_commands=False)
    return sc, sim


def check_controller(name: str, source: str, flag: str) -> str:
    """`name` if it is a controller's config name, else a `ConfigError` naming `flag`: checked before
    any run, so a misspelt name does not end a script after the runs before it."""
    if name not in CONTROLLERS:
        raise ConfigError(source, flag, name, f"unknown controller; known: {', '.join(sorted(CONTROLLERS))}")
    return name


def at_least(value: int, minimum: int, source: str, flag: str) -> int:
    """`value` if it is at least `minimum`, else a `ConfigError` naming `flag`: a zero or negative count of
    steps or copies divided by zero, gave negative rates or was read as "not given" (the default)."""
    if value < minimum:
        raise ConfigError(source, flag, value, f"must be an integer >= {minimum}")
    return value


def make_controller(name: str, source: str = "<benchmarks>", flag: str = "--controller"):
    return CONTROLLERS[check_controller(name, source, flag)]()


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def fast_train_overrides(scenario: str, agent: str, seed: int, steps: int, eval_seeds: int) -> list[str]:
    """train.py's overrides for one `train=fast` run scored only by its final held-out
    evaluation (no periodic evaluations, checkpoints or baselines): the leaderboard's and the
    learning ablation's runs."""
    return [f"scenario={scenario}", f"agent={agent}", f"seed={seed}", "train=fast",
            f"train.total_agent_steps={steps}", "train.eval_every=0", "train.checkpoint_every=0",
            "train.progress=false", f"eval.seeds={eval_seeds}", "eval.baselines=[]"]


def check_trained_as_today(run_dir: Path, overrides: list[str]) -> None:
    """SystemExit naming `run_dir` and each setting its checkpoint was trained with that today's train.py
    gives otherwise for the same `overrides`: the command names the script's overrides alone, so a run an
    earlier version trained under other defaults (10 s decisions before c47b465) was reused as today's."""
    import zipfile

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from agents.ppo.run_setup import changed_settings

    checkpoint = run_dir / "checkpoints" / "last.zip"
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            saved = json.loads(archive.read("gridlight.json")).get("config", {})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:  # gone, or not a checkpoint
        raise SystemExit(f"error: {checkpoint}: cannot read the finished run's checkpoint record ({error}): "
                         "remove that folder or give another --runs-dir") from None
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        given = OmegaConf.to_container(compose(config_name="train", overrides=overrides), resolve=True)
    changed = changed_settings(saved, given)
    if changed:
        raise SystemExit(f"error: {run_dir} holds a run trained under other settings than today's train.py gives "
                         f"the same command: {'; '.join(changed)}: remove that folder or give another --runs-dir")


def run_logged(command: list[str], log_path: Path) -> float:
    """Run `command` from the checkout, its output into `log_path`; its wall seconds (exits
    naming the log if it fails)."""
    log(" ".join(command[1:]) + f"  (log: {log_path})")
    start = time.perf_counter()
    with open(log_path, "w") as out:
        done = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}; see {log_path}")
    return time.perf_counter() - start
