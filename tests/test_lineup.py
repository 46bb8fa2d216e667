"""The evaluation's lineup (agents/lineup.py) without running an evaluation: the controller list
and the checkpoint= / deployed= paths are refused naming the field and the value, and a policy
named like a controller already in the table gets a number."""

from __future__ import annotations

import pytest

from agents import lineup
from envs.errors import CheckpointError, ConfigError, ModelError
from envs.scenario import load_scenario
from tests.deploy_fixtures import edit_metadata, untrained
from tests.minimal_scenario import assert_names_everything
from tests.test_evaluate import evaluate_config


@pytest.mark.parametrize("controllers, reason", [
    ("[sotl,max_pressure,sotl]", "need distinct controller names"),  # the table would hold two sotl rows
    ("[]", "nothing to evaluate"),  # and no checkpoint= or deployed= either
])
def test_a_controller_listed_twice_or_none_at_all_is_refused_naming_the_list(controllers, reason):
    cfg = evaluate_config("scenario=grid_1x1", f"controllers={controllers}")
    with pytest.raises(ConfigError, match=reason) as refused:
        lineup.controller_names(cfg)
    assert_names_everything(refused.value, "<config>", "controllers", list(cfg.controllers))


def test_a_classical_controller_is_built_with_its_controller_params():
    cfg = evaluate_config("scenario=grid_1x1", "controller_params.sotl.min_green_s=20")
    assert lineup.build_controller("sotl", cfg).min_green_s == 20


def test_a_folder_or_a_number_given_as_a_checkpoint_is_no_such_file_and_a_bad_list_entry_is_named_by_index(tmp_path):
    # a folder exists but is no file (test_evaluate_refusals: the hint it gets); Hydra reads 1.5 as a float
    for given, reason in ((str(tmp_path), "is a folder"), ("1.5", "no such checkpoint file")):
        with pytest.raises(CheckpointError, match=reason) as refused:
            lineup.trained_policies(evaluate_config("scenario=grid_1x1", f"checkpoint={given}"))
        assert_names_everything(refused.value, "<config>", "checkpoint", given)
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="expected a path") as refused:
        lineup.existing_paths(evaluate_config("scenario=grid_1x1", f"deployed=[{tmp_path / 'm.onnx'},[a]]"),
                              "deployed", "ONNX model file", ModelError)
    assert refused.value.field == "deployed[1]"


def test_a_checkpoint_named_like_a_classical_controller_in_the_table_gets_a_number(tmp_path):
    checkpoint = untrained(load_scenario("grid_1x1", horizon=60), "shared", tmp_path / "mp.zip",
                           config={"agent": {"name": "max_pressure"}})
    cfg = evaluate_config("scenario=grid_1x1", "controllers=[max_pressure]", f"checkpoint={checkpoint}")
    controllers, policies, files = lineup.controller_names(cfg)
    assert controllers == ["max_pressure", "max_pressure_1"] and files == {"max_pressure_1": str(checkpoint)}


def test_a_model_named_like_a_checkpoint_in_the_table_gets_a_number_and_one_without_an_agent_is_policy_onnx(
        model_copy, tmp_path):
    onnx_path, _ = model_copy
    onnx_name = f"{edit_metadata(model_copy, lambda meta: None)['training']['agent']}_onnx"
    checkpoint = untrained(load_scenario("grid_1x1", horizon=60), "shared", tmp_path / "c.zip",
                           config={"agent": {"name": onnx_name}})
    cfg = evaluate_config("scenario=grid_1x1", "controllers=[fixed_time]", f"checkpoint={checkpoint}",
                          f"deployed={onnx_path}")
    controllers, _, files = lineup.controller_names(cfg)
    assert controllers == ["fixed_time", onnx_name, f"{onnx_name}_1"]
    assert files == {onnx_name: str(checkpoint), f"{onnx_name}_1": str(onnx_path)}
    edit_metadata(model_copy, lambda meta: meta["training"].update(agent=None))
    assert list(lineup.deployed_policies(cfg, [])) == ["policy_onnx"]


def test_a_tuned_controller_without_a_preset_for_the_scenario_is_refused_before_any_checkpoint_is_read():
    cfg = evaluate_config("scenario=grid_1x1", "controllers=[sotl_tuned]", "checkpoint=missing.zip")
    with pytest.raises(ConfigError, match="sotl_tuned.*no tuned preset"):  # not the missing checkpoint
        lineup.controller_names(cfg)


def test_a_folder_or_a_missing_file_in_a_list_of_checkpoints_is_named_by_index(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    for bad, reason in ((tmp_path, "is a folder"), (tmp_path / "gone.onnx", "no such ONNX model file")):
        with pytest.raises(ModelError, match=reason) as refused:
            lineup.existing_paths(evaluate_config("scenario=grid_1x1", f"deployed=[{tmp_path / 'm.onnx'},{bad}]"),
                                  "deployed", "ONNX model file", ModelError)
        assert refused.value.field == "deployed[1]"
