"""The benchmarks' --help: a description that ends where its sentence does, and per option what
it sets and its default (most options showed only their flag name)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

FLAGS = {  # some options of each script, with the default --help must show
    "city_day": {"--copies": "1", "--hours": "24.0", "--probe-p": "0.05", "--duration-s": "900.0",
                 "--position": "random", "--placement": "traffic", "--interval-s": "10",
                 "--controller": "max_pressure", "--device": "cpu"},
    "incident_detection": {"--scenario": "hangzhou_4x4", "--placements": "uniform,traffic", "--epochs": "None"},
}


@pytest.mark.parametrize("script", sorted(FLAGS))
def test_the_help_says_what_each_option_does_and_its_default(script):
    done = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    description, options = (" ".join(part.split()) for part in done.stdout.split("options:"))  # unwrapped
    assert description.endswith("."), description
    for flag, default in FLAGS[script].items():
        shown = options.split(f"{flag} {flag[2:].upper().replace('-', '_')} ")[1].split(" --")[0]
        assert shown.endswith(f"(default: {default})"), shown
        assert len(shown) > len(f"(default: {default})") + 10 and shown.count("(default:") == 1, shown


@pytest.mark.parametrize("trainer", ["torchrl", "sb3"])
def test_the_training_benchmark_writes_json_lines_only_on_stdout(trainer):
    """A trainer's status lines (here the rounding of train.total_agent_steps) go to stderr: the
    torchrl case printed one on stdout, ahead of its JSON line."""
    done = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--trainer", trainer, "--scenario",
                           "grid_1x1", "--agent", "ppo_shared", "--copies", "2", "--iterations", "1", "--warmup", "0",
                           "--override", "agent.n_steps=8", "--override", "agent.batch_size=8",
                           "--override", "train.total_agent_steps=100"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["trainer"] == trainer, done.stdout[-2000:]
    if trainer == "torchrl":  # the SB3 path's loop is the benchmark's own: it says nothing of the total
        assert "is rounded up to 7 rollouts of 16 agent-steps" in done.stderr
