"""The benchmarks' --help: a description that ends where its sentence does, and per option what
it sets and its default (most options showed only their flag name)."""

from __future__ import annotations

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
