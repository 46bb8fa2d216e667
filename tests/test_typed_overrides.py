"""An override whose value its key's schema type refuses (``perturbation.incidents.count=1.5``,
``eval.steps=abc``) got Hydra's multi-line "Error merging override ... could not be converted to
Integer" with its reference types; it is one ``error: <config>: field 'KEY' = VALUE: must be ...``
line, exit status 2 (agents/ppo/typed_overrides.py), and what the check passes Hydra composes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from agents.ppo.typed_overrides import check_typed_overrides
from envs.errors import ConfigError
from tests.conftest import REPO_ROOT

INCIDENT = ["task=incident_detection", "perturbation=incident"]
ENV = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "PYTHONPATH": str(REPO_ROOT),
       "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("script, argv, shown", [
    ("evaluate.py", [*INCIDENT, "perturbation.incidents.count=1.5"],
     "field 'perturbation.incidents.count' = 1.5: must be an integer"),
    ("evaluate.py", [*INCIDENT, "detection.copies=abc"], "field 'detection.copies' = 'abc': must be an integer"),
    ("train.py", ["train.total_agent_steps=1e3"], "field 'train.total_agent_steps' = 1000.0: must be an integer"),
    ("export.py", ["checkpoint=x", "opset=latest"], "field 'opset' = 'latest': must be an integer"),
    ("export.py", ["checkpoint=x", "max_red_s=soon"], "field 'max_red_s' = 'soon': must be a number, or null"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_key_and_value(script, argv, shown, tmp_path):
    done = subprocess.run([sys.executable, script, *argv, f"hydra.run.dir={tmp_path}"], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2 and done.stderr == f"error: <config>: {shown}\n", done.stderr[-2000:]


# (overrides, whether the schema's type takes them): each also composed, so the check and Hydra agree
CASES = [
    ([*INCIDENT, "perturbation.incidents.count=1.5"], False), ([*INCIDENT, "perturbation.incidents.count=2"], True),
    ([*INCIDENT, "perturbation.incidents.count='2'"], True), ([*INCIDENT, "perturbation.incidents.count=null"], False),
    ([*INCIDENT, "perturbation.incidents.duration_s=abc"], False), (["eval.steps=1e3"], False),
    (["render=yes"], True), (["render=maybe"], False), (["detection.probes.p=1"], True),
    (["checkpoint_max_green_s=null"], True), (["checkpoint_max_green_s=abc"], False), (["eval.seeds=[1,x]"], False),
    (["controller_params.sotl.mu=many"], False), (["controller_params.sotl.mu=5"], True), (["task=1"], True),
    (["-m", "detection.copies=1,2.5"], False), (["checkpoint=x"], True), (["eval.steps=${eval.seeds}"], True),
]


@pytest.mark.parametrize("argv, takes", CASES, ids=[" ".join(argv) for argv, _ in CASES])
def test_the_check_refuses_what_composition_refuses_and_nothing_else(argv, takes):
    if takes:
        check_typed_overrides(argv, "evaluate")
    else:
        with pytest.raises(ConfigError, match="must be "):
            check_typed_overrides(argv, "evaluate")
    runs = [[o.replace("1,2.5", "2.5") for o in argv if o != "-m"]]  # the sweep's refused point
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        for overrides in runs:
            if takes:
                compose(config_name="evaluate", overrides=overrides)
            else:
                with pytest.raises(ConfigCompositionException):
                    compose(config_name="evaluate", overrides=overrides)


@pytest.mark.parametrize("sweep", ["eval.seeds=glob(*)", "eval.seeds=range(1,3)", "agent.lr=interval(0,1)"])
def test_a_sweep_other_than_a_list_of_choices_is_left_to_hydra(sweep):
    # glob() is a choice sweep to Hydra, but its choices are a config group's options: none to check here
    check_typed_overrides(["-m", sweep], "train")


NAMED = [  # (argv given to export.py, whether the named config takes it, as Hydra composes it)
    (["--config-name=evaluate", "checkpoint=null"], "evaluate", True),  # export's own schema refused this
    (["--config-name", "evaluate", "checkpoint=null"], "evaluate", True),
    (["-cn", "evaluate", "checkpoint=null"], "evaluate", True),
    (["-cn=evaluate", "checkpoint=null"], "evaluate", True),
    (["-cn", "train", "eval.steps=abc"], "train", False),  # the named config's schema still refuses
    (["--config-name", "evaluate", "eval.steps=abc"], "evaluate", False),  # was skipped: "evaluate" unparsed
    (["checkpoint=null"], "export", False),
]


@pytest.mark.parametrize("argv, name, takes", NAMED, ids=[" ".join(argv) for argv, _, _ in NAMED])
def test_a_config_named_on_the_command_line_is_checked_against_its_own_schema(argv, name, takes):
    import agents.deploy.config  # noqa: F401  (registers export_schema, as export.py does before the check)

    if takes:
        check_typed_overrides(argv, "export")
    else:
        with pytest.raises(ConfigError, match="must be "):
            check_typed_overrides(argv, "export")
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        if takes:
            compose(config_name=name, overrides=argv[-1:])
        else:
            with pytest.raises(ConfigCompositionException):
                compose(config_name=name, overrides=argv[-1:])


@pytest.mark.parametrize("argv", [["-cn", "my_own", "checkpoint=null"], ["-cp", "elsewhere", "checkpoint=null"],
                                  ["--config-path=elsewhere", "-cn", "export", "checkpoint=null"]])
def test_a_config_with_no_registered_schema_is_left_to_hydra(argv):
    check_typed_overrides(argv, "export")  # never a refusal from a schema that is not the config's
