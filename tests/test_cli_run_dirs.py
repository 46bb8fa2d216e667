"""Where a run writes and how a sweep launches, each refused in one error line naming the key
instead of Hydra's or a launcher's traceback: a run or sweep directory that is a file or under one,
a run directory given to a sweep, a sweep into a folder holding an earlier run, and a launcher whose
plugin is not installed or whose SLURM ``srun`` is not on this machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agents.ppo.null_nodes import check_launcher, check_run_dir
from envs.errors import ConfigError
from tests.conftest import REPO_ROOT
from tests.test_cli_refusals import _run


def test_a_launcher_whose_plugin_package_is_missing_names_the_module_when_no_extra_installs_it(monkeypatch):
    import importlib.util

    from agents.ppo import null_nodes

    def find_spec(name, *args):  # as find_spec does when a parent package of the module is missing
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(null_nodes, "LAUNCHER_EXTRAS", {})
    with pytest.raises(ConfigError, match="install the package that provides hydra_plugins.hydra_ray_launcher"):
        check_launcher(["hydra/launcher=ray_cluster"])


def test_the_slurm_launcher_on_a_machine_without_srun_is_one_error_line(monkeypatch):
    """It was submitit's RuntimeError traceback ('Could not detect "srun"') once the sweep launched."""
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "srun" else real(name, *a, **k))
    with pytest.raises(ConfigError, match="no srun on this machine") as error:
        check_launcher(["-m", "seed=0,1", "hydra/launcher=slurm"])
    assert (error.value.field, error.value.value) == ("hydra/launcher", "slurm")
    check_launcher(["-m", "seed=0,1", "hydra/launcher=submitit_local_jobs"])  # runs here: no srun needed


def test_a_launcher_whose_plugin_is_not_installed_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as on a machine without the [ray] extra
                        lambda name, *a: None if "ray_launcher" in name else real(name, *a))
    with pytest.raises(ConfigError, match=r"not installed: pip install -e '\.\[ray\]'") as error:
        check_launcher(["-m", "hydra/launcher=ray_cluster"])  # was Hydra's "Unknown plugin class" traceback
    assert (error.value.field, error.value.value) == ("hydra/launcher", "ray_cluster")
    check_launcher(["hydra/launcher=local", "hydra/launcher=nonsense"])  # installed, and unknown (Hydra's error)

def test_a_run_directory_that_is_a_file_is_one_error_line(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("")
    done = _run("evaluate.py", f"hydra.run.dir={taken}")  # Hydra's FileExistsError traceback
    assert done.returncode == 2 and done.stderr == f"error: <config>: field 'hydra.run.dir' = '{taken}': is a file: " \
        "the run directory must be a folder or a new path\n"


@pytest.mark.parametrize("argv, key", [
    (["hydra.run.dir={file}/sub"], "hydra.run.dir"),  # NotADirectoryError traceback
    (["-m", "seed=0,1", "hydra.sweep.dir={file}"], "hydra.sweep.dir"),  # FileExistsError traceback
    (["--multirun", "seed=0,1", "hydra.sweep.dir={file}/sub/deeper"], "hydra.sweep.dir"),
])
def test_a_run_or_sweep_directory_under_a_file_or_a_sweep_directory_that_is_one_is_refused(tmp_path, argv, key):
    taken = tmp_path / "taken"
    taken.write_text("")
    argv = [item.format(file=taken) for item in argv]
    with pytest.raises(ConfigError, match="is a file: the run directory must be a folder or a new path") as error:
        check_run_dir(argv)
    assert (error.value.field, error.value.value) == (key, argv[-1].partition("=")[2])
    check_run_dir(["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path}/new/sweep"])  # a new path under a folder


def test_a_run_directory_given_to_a_sweep_is_refused(tmp_path):
    for flag in ("-m", "--multirun"):
        with pytest.raises(ConfigError, match="a sweep .-m. does not read it") as error:  # the runs went elsewhere
            check_run_dir([flag, "seed=0,1", "hydra.run.dir=/tmp/sweep"])
        assert (error.value.field, error.value.value) == ("hydra.run.dir", "/tmp/sweep")
    check_run_dir(["seed=0", "hydra.run.dir=/tmp/run"])
    check_run_dir(["seed=0", f"hydra.run.dir={tmp_path}"])  # an existing folder: the run writes into it
    check_run_dir(["-m", "seed=0,1", "hydra.sweep.dir=/tmp/sweep"])


def test_a_sweep_into_a_folder_holding_an_earlier_run_names_hydra_sweep_dir(tmp_path, capsys, monkeypatch):
    """The refusal named hydra.run.dir, which a sweep refuses to read, for a folder the user gave as hydra.sweep.dir."""
    import runpy

    (tmp_path / "0" / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "seed=0", "scenario=grid_1x1", "hydra/launcher=basic",
                                      f"hydra.sweep.dir={tmp_path}"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(REPO_ROOT / "train.py"), run_name="__main__")
    error = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("error:"))
    assert ended.value.code == 1  # a sweep whose job failed: Hydra's status (tests/test_sweep_errors.py)
    assert error.startswith(f"error: <config>: field 'hydra.sweep.dir' = '{tmp_path}': its run "
                            f"{tmp_path / '0'} holds an earlier run (checkpoints)"), error


def test_a_log_line_after_an_in_process_hydra_run_is_no_logging_error(capsys):
    """Runs after the sweep above (same file, same worker): Hydra configured the root logger with a console
    handler on that test's captured stream, closed when it ended; a later record (a service thread's, as in
    tests/test_runtime_service.py) printed '--- Logging error --- ... I/O operation on closed file'.
    tests/conftest.py removes the handlers a test leaves on the root logger."""
    import logging

    logging.getLogger("gridlight.runtime").warning("a record after the sweep")
    assert "Logging error" not in capsys.readouterr().err


def test_a_new_run_into_a_torchrl_runs_folder_names_its_last_pt_to_resume(tmp_path):
    """The hint said resume=RUN/checkpoints/last.zip whatever the folder held: a TorchRL run's is last.pt."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    done = _run("train.py", "scenario=grid_1x1", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2
    assert done.stderr.strip().endswith(f"or continue it with resume={tmp_path / 'checkpoints' / 'last.pt'}")


def test_a_folder_whose_earlier_run_saved_no_checkpoint_is_refused_without_a_resume_hint(tmp_path):
    """The hint said resume=RUN/checkpoints/last.zip for a folder holding only tb/, where there is nothing to resume."""
    (tmp_path / "tb").mkdir()
    done = _run("train.py", "scenario=grid_1x1", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("holds an earlier run (tb): give a new folder or remove that one"), done.stderr


def test_a_run_into_a_folder_where_another_train_py_is_training_is_refused_and_a_stale_claim_is_taken_over(tmp_path):
    """Two runs started in the same second share Hydra's outputs/DATE/TIME/: both passed the
    earlier-run check and trained into one folder, one's checkpoints replacing the other's."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".train.pid").write_text(str(os.getpid()))  # this test's process: alive, training there
    tiny = ["scenario=grid_1x1", "env.copies=2", "agent.n_steps=10", "agent.batch_size=20", "agent.n_epochs=1",
            "eval.seeds=1", "eval.steps=60", "env.episode_s=60", "train.total_agent_steps=20", "train.progress=false"]
    done = _run("train.py", *tiny, f"hydra.run.dir={run}")
    assert done.returncode == 2, done.stdout
    assert done.stderr == (f"error: <config>: field 'hydra.run.dir' = '{run}': is where another train.py (process "
                           f"{os.getpid()}) is training: runs started in the same second share Hydra's "
                           "outputs/DATE/TIME; give each its own hydra.run.dir\n")
    assert not (run / "checkpoints").exists()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])  # a process that has ended: its claim is stale
    assert ended.wait() == 0
    (run / ".train.pid").write_text(str(ended.pid))
    done = _run("train.py", *tiny, f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "checkpoints" / "last.zip").is_file() and not (run / ".train.pid").exists()  # released at the end


def test_a_run_folder_is_claimed_on_a_file_system_without_hard_links(tmp_path, monkeypatch):
    from agents.ppo.run_messages import RUN_LOCK, run_dir_claimed

    def no_links(*args):
        raise PermissionError("hard links not supported")  # as some network and FUSE file systems answer

    monkeypatch.setattr(os, "link", no_links)
    with run_dir_claimed(tmp_path, "hydra.run.dir", str(tmp_path)):
        assert (tmp_path / RUN_LOCK).read_text() == str(os.getpid())
        assert [p.name for p in tmp_path.iterdir()] == [RUN_LOCK]
    assert list(tmp_path.iterdir()) == []  # released


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("held_by", ["a live train.py", "an earlier run's checkpoints"])
def test_a_refused_second_run_leaves_the_first_runs_folder_as_it_was(tmp_path, held_by):
    """Hydra wrote the refused run's .hydra/ (config, overrides, hydra.yaml) over the first run's record
    before train.py could refuse the folder; train.py now writes the record itself, once the folder is its own."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        (run / ".hydra" / name).write_text(f"the first run's {name}\n")
    (run / "train.log").write_text("the first run's log\n")
    if held_by == "a live train.py":
        (run / ".train.pid").write_text(str(os.getpid()))  # this test's process: alive, training there
    else:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.zip").write_bytes(b"the first run's checkpoint")
    before = _files(run)
    done = _run("train.py", "scenario=grid_1x1", "seed=3", f"hydra.run.dir={run}")
    assert done.returncode == 2 and done.stderr.startswith("error: <config>: field 'hydra.run.dir'"), done.stderr
    assert _files(run) == before


def test_a_run_writes_its_record_with_what_it_runs(tmp_path):
    from agents.ppo.run_record import write_run_record
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"seed": 4, "scenario": {"name": "/abs/city"}})
    hydra_root = OmegaConf.create({"hydra": {"output_subdir": None, "overrides": {"task": ["seed=4"]}}})
    folder = write_run_record(tmp_path, cfg, hydra_root)
    assert folder == tmp_path / ".hydra"
    assert OmegaConf.load(folder / "config.yaml") == cfg
    assert OmegaConf.load(folder / "overrides.yaml") == OmegaConf.create(["seed=4"])
    assert OmegaConf.load(folder / "hydra.yaml").hydra.output_subdir is None
