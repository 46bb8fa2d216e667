"""The engine benchmarks' flags, checked before any run: a zero or negative count divided by zero
(a traceback), gave negative rates or ran the default sweep; a misspelt controller, adapter or case
ended a script after the runs before it, in a line of another format. Each is one
``error: benchmarks/SCRIPT: field 'FLAG' = VALUE: reason`` line, exit status 2, no JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.script_runs import refusal

ENV = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "OMP_NUM_THREADS": "1"}
SMALL = ["--scenario", "grid_1x1"]


@pytest.mark.parametrize("script, flags, start", [
    ("sim_throughput.py", [*SMALL, "--no-compile", "--copies", "1", "--steps", "0"],  # ZeroDivisionError
     "field '--steps' = 0: must be an integer >= 1"),
    ("sim_throughput.py", [*SMALL, "--no-compile", "--copies", "1", "--steps", "-3"],  # negative rates, exit 0
     "field '--steps' = -3: must be an integer >= 1"),
    ("sim_throughput.py", [*SMALL, "--no-compile", "--copies", "1", "--warmup", "-1"], "field '--warmup' = -1"),
    ("sim_throughput.py", [*SMALL, "--no-compile", "--copies", "1", "--threads", "0"], "field '--threads' = 0"),
    ("step_cpu_time.py", [*SMALL, "--copies", "1", "--steps", "0"], "field '--steps' = 0: must be an integer >= 1"),
    ("env_throughput.py", [*SMALL, "--no-compile", "--copies", "0"],  # ran the sweep B = 1, 16, 64, 256
     "field '--copies' = 0: must be an integer >= 1"),
    ("env_throughput.py", [*SMALL, "--no-compile", "--copies", "1", "--adapters", "gym_vector_env,gym"],
     "field '--adapters' = 'gym': unknown adapter"),
    ("baselines.py", [*SMALL, "--steps", "5", "--controllers", "fixed_time,max_presure"],  # after fixed_time ran
     "field '--controllers' = 'max_presure': unknown controller"),
    ("baselines.py", ["--scenario", "hangzhou_4x4", "--steps", "5", "--seed", "3"],  # ignored; its line said seed 3
     "field '--seed' = 3: only a generated preset draws its demand from it"),
    ("fidelity.py", ["--datasets", "hangzhou_4x4,nosuch"],  # was 'skipped: not found in the data directory', exit 0
     "field '--datasets' = 'nosuch': not a CityFlow dataset"),
    ("fidelity.py", ["--datasets", "syn_1x1_uniform_800", "--steps", "0"],  # ran, 'travel_time/mean': null
     "field '--steps' = 0: must be an integer >= 1"),
    ("sumo_scenarios.py", ["--scenarios", "resco_cologne1", "--controllers", "fixd_time"],  # KeyError after the load
     "field '--controllers' = 'fixd_time': unknown controller"),
    ("sumo_scenarios.py", ["--scenarios", "hangzhou_4x4", "--controllers", ""],  # KeyError: 'sumo_report'
     "field '--scenarios' = 'hangzhou_4x4': not a SUMO scenario"),
    ("sumo_scenarios.py", ["--scenarios", "resco_cologne1", "--steps", "0"],  # ran, 'travel_time/mean': null
     "field '--steps' = 0: must be an integer >= 1"),
    ("sumo_fidelity.py", ["--scenarios", "resco_cologne1,nosuch"],  # after cologne1's runs, exit 1, another format
     "field '--scenarios' = 'nosuch': not a SUMO scenario"),
    ("sumo_fidelity.py", ["--scenarios", "resco_cologne1", "--yield-gap-s", "2"],  # ignored
     "field '--yield-gap-s' = 2.0: only with --junction-yielding"),
    ("sumo_fidelity.py", ["--scenarios", "resco_cologne1", "--junction-yielding", "--yield-gap-s", "0"],
     "field '--yield-gap-s' = 0.0: must be a finite number > 0"),  # a ConfigError after SUMO's run
    ("sumo_fidelity.py", ["--scenarios", "resco_cologne1", "--mp-sensing", "road"],  # ignored
     "field '--mp-sensing' = 'road': only with --max-pressure"),
    ("sumo_where.py", ["--scenario", "nosuch"], "field '--scenario' = 'nosuch': not a SUMO scenario"),  # KeyError
    ("sumo_discharge.py", ["--sigmas", "0,abc"], "field '--sigmas' = 'abc': expected a number"),  # ValueError
    ("sumo_discharge.py", ["--sigmas", "2"], "field '--sigmas' = 2.0: must be within [0, 1]"),  # SUMO quit: traceback
    ("sumo_discharge.py", ["--tau", "0"], "field '--tau' = 0.0: must be a finite number > 0"),  # SUMO quit: traceback
    ("state_hashes.py", ["--scenarios", "grid_1x1", "--seconds", "5", "--controller", "sotl2"],
     "field '--controller' = 'sotl2': unknown controller"),
    ("device_equality.py", ["--cases", "grid_1x1", "--devices", "cpu", "--seconds", "5"],  # ValueError traceback
     "field '--cases' = 'grid_1x1': expected SCENARIO:CONTROLLER"),
    ("device_equality.py", ["--cases", "grid_1x1:fixed_time", "grid_1x1:mp", "--devices", "cpu", "--seconds", "5"],
     "field '--cases' = 'mp': unknown controller"),
    ("device_equality.py", ["--cases", "grid_1x1:fixed_time", "--devices", "cpu", "cpu", "--seconds", "5"],
     "field '--devices' = ['cpu', 'cpu']: name each device once"),  # reported "equal": true, comparing nothing
    ("device_equality.py", ["--cases", "grid_1x1:fixed_time", "--devices", "cpu", "--threads", "0"],
     "field '--threads' = 0: must be an integer >= 1"),  # ignored silently
    ("controller_latency.py", [*SMALL, "--decisions", "0"], "field '--decisions' = 0"),  # IndexError
    ("controller_latency.py", [*SMALL, "--repeats", "0"], "field '--repeats' = 0"),  # UnboundLocalError
    ("controller_latency.py", [*SMALL, "--checkpoint", "run.zip"],  # timed the checkpoint's scenario instead
     "field '--scenario' = 'grid_1x1': not with --checkpoint"),
    ("service_soak.py", [*SMALL, "--clients", "0"], "field '--clients' = 0"),  # a traceback after the export
    ("service_soak.py", [*SMALL, "--decisions", "0"], "field '--decisions' = 0"),  # IndexError
    ("service_soak.py", [*SMALL, "--warmup", "-1"], "field '--warmup' = -1.0"),  # ValueError from time.sleep
    ("service_soak.py", [*SMALL, "--duration", "0"], "field '--duration' = 0.0"),  # a rate over 0 s measured
    ("service_decision.py", [*SMALL, "--decisions", "0"], "field '--decisions' = 0"),  # ZeroDivisionError
    ("service_decision.py", [*SMALL, "--decisions", "-5"], "field '--decisions' = -5"),  # -0.0 ms, exit 0
    ("service_decision.py", [*SMALL, "--rounds", "0"], "field '--rounds' = 0"),  # StatisticsError
    ("max_red_starvation.py", [*SMALL, "--seconds", "0"], "field '--seconds' = 0: must be an integer >= 1"),
    ("max_red_starvation.py", [*SMALL, "--max-red", "none,soon"], "field '--max-red' = 'none,soon': expected"),
    # below min green + 2 clearances + one decision interval (20 s): refused as export.py refuses it, before any run
    ("max_red_starvation.py", [*SMALL, "--max-red", "none,19"], "field '--max-red' = 19.0: must be at least 20 s"),
    ("memory_scaling.py", ["--scenarios", "grid_1x1", "--samples", "0"], "field '--samples' = 0"),  # failed silently
    ("memory_scaling.py", ["--scenarios", "grid_1x1", "--copies", "2", "--samples", "4"],  # no line, exit 0
     "field '--samples' = [4]: every K exceeds every B [2]"),
    ("leaderboard.py", ["--table", "--out", "no_such_board.json"], "field '--out' = 'no_such_board.json': no such"),
    # each failed only inside train.py ("failed (2) ... see LOG"), a NaN target was never met
    ("leaderboard.py", [*SMALL, "--eval-seeds", "0"], "field '--eval-seeds' = 0: must be an integer >= 2"),
    # recorded zero-width intervals, [mean, mean], as if the figure were certain
    ("leaderboard.py", [*SMALL, "--eval-seeds", "1"], "field '--eval-seeds' = 1: must be an integer >= 2"),
    ("leaderboard.py", [*SMALL, "--steps", "-1"], "field '--steps' = -1: must be an integer >= 1"),
    ("leaderboard.py", [*SMALL, "--train-seeds", "-1"], "field '--train-seeds' = -1: must be an integer >= 0"),
    ("leaderboard.py", [*SMALL, "--target-percent", "nan"], "field '--target-percent' = nan: must be a finite"),
    # reused seed 0's run: its checkpoint counted twice in the learned mean, one key in per_training_seed
    ("leaderboard.py", [*SMALL, "--train-seeds", "0", "0"], "field '--train-seeds' = [0, 0]: name each"),
    ("leaderboard.py", [*SMALL, "--table"], "field '--table' = True: prints the boards"),  # ignored: trained
    # Hydra's last value won: trained seed 3 filed as training seed 0, 3 eval seeds recorded as eval_seeds 5
    ("leaderboard.py", [*SMALL, "--train-override", "seed=3"], "field '--train-override' = 'seed=3': seed is the"),
    ("leaderboard.py", [*SMALL, "--eval-override", "eval.seeds=3"],
     "field '--eval-override' = 'eval.seeds=3': eval.seeds is the leaderboard's own: give --eval-seeds"),
    # its row came after the checkpoints' and was averaged in as a fourth training seed
    ("leaderboard.py", [*SMALL, "--eval-override", "deployed=[m.onnx]"], "field '--eval-override' = 'deployed="),
    # the board read the clean rows, filed under a command that says perturbation=incident
    ("leaderboard.py", [*SMALL, "--eval-override", "perturbation=incident"], "field '--eval-override' = 'pertur"),
    # tracebacks once every training run was done, the board written nowhere
    ("leaderboard.py", [*SMALL, "--out", "docs"], "field '--out' = 'docs': is a folder"),
    ("leaderboard.py", [*SMALL, "--out", "README.md"], "field '--out' = 'README.md': cannot be read as"),
    ("leaderboard.py", ["--table", "--out", "README.md"], "field '--out' = 'README.md': cannot be read as"),
    ("leaderboard.py", [*SMALL, "--out", "README.md/board.json"], "field '--out' = 'README.md/board.json': is a"),
    ("train_throughput.py", [*SMALL, "--copies", "0"], "field '--copies' = 0"),  # a ConfigError traceback
    ("train_throughput.py", [*SMALL, "--iterations", "0"], "field '--iterations' = 0"),  # timed one iteration
    ("train_throughput.py", [*SMALL, "--seconds", "0"], "field '--seconds' = 0.0"),  # timed one iteration
])
def test_a_bad_flag_is_one_error_line_before_any_run(script, flags, start, capsys, monkeypatch):
    error = refusal(script, flags, capsys, monkeypatch)
    assert error.startswith(f"error: benchmarks/{script}: {start}"), error


def test_a_failed_configuration_of_the_memory_sweep_is_the_scripts_exit_status():
    """A configuration whose process failed was logged (its error cut from the front) and the script exited 0."""
    done = subprocess.run([sys.executable, "benchmarks/memory_scaling.py", "--scenarios", "grid_1x1", "no_such_city",
                           "--copies", "1", "--samples", "1"], cwd=REPO_ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    assert [json.loads(line)["scenario"] for line in done.stdout.splitlines()] == ["grid_1x1"]  # the sweep went on
    assert "failed (2): error: <scenario registry>: field 'scenario.name' = 'no_such_city'" in done.stderr
