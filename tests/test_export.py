"""Export (agents/deploy/export.py, export.py): the ONNX graph, its metadata, parity with the
torch policy (recorded and in closed loop through agents/deploy/simulated.py), the export CLI
and evaluate.py's exported-policy rows."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.deploy.export import INPUTS, check_timing, export_policy
from agents.deploy.onnx_opset import onnx_opsets
from agents.deploy.runtime import POLICY
from agents.deploy.simulated import SimulatedRuntime, sim_readings
from agents.ppo.policy import PolicyController, load_policy, save_checkpoint
from envs.engine.intersections import intersection_layout
from envs.engine.signals import green_elapsed
from envs.errors import CheckpointError, ConfigError
from envs.evaluation.metrics import episode_metrics
from envs.rl.features import observe
from envs.rl.sb3_env import IntersectionVecEnv
from envs.scenario import load_scenario
from tests.conftest import REPO_ROOT
from tests.deploy_fixtures import (
    OBSERVATIONS, recorded_decisions, run_export_cli, session_actions, simulator, trained_exports, untrained,
)
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import uneven_grid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_exports(tmp_path_factory)


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_metadata_holds_what_the_runtime_needs_and_matches_the_model_file(uneven, policy):
    scenario, exported = uneven
    checkpoint, onnx_path, meta_path = exported[policy]
    meta = json.loads(meta_path.read_text())
    import hashlib

    assert meta["model"]["sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    default_opset = {o.domain: o.version for o in model.opset_import}[""]
    assert default_opset == meta["model"]["opset"] == onnx_opsets(onnx_path.read_bytes())[""]
    assert [i.name for i in model.graph.input] == list(INPUTS)
    layout = intersection_layout(scenario.network)
    assert [e["id"] for e in meta["intersections"]] == list(layout.ids)
    first = meta["intersections"][0]
    assert len(first["actions"]) == 3 and len(meta["intersections"][1]["actions"]) == 4
    assert len(first["in_lanes"]) == len(first["lane_max_vehicles"]) == int((layout.in_lanes[0] >= 0).sum())
    assert all(set(p) >= {"index", "green_movements", "signal"} for p in first["phases"])
    assert [s["phase"] for s in first["fallback_plan"]] == first["actions"]
    assert meta["timing"] == {"decision_interval_s": 5, "min_green_s": 5, "max_green_s": 20.0, "max_red_s": None,
                              "yellow_s": 3, "all_red_s": 2}
    assert [f["name"] for f in meta["observation"]["features"]] == OBSERVATIONS
    assert meta["training"]["agent"] == f"ppo_{policy}" and meta["project"]["name"] == "gridlight"


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_normalisation_and_masking_are_inside_the_graph(uneven, policy):
    """Raw readings in; the graph's logits equal the torch policy's on the normalised training
    observation, and masked actions are -1e8 (never chosen)."""
    scenario, exported = uneven
    checkpoint, onnx_path, _ = exported[policy]
    controller = PolicyController(str(checkpoint))
    sim = simulator(scenario, 2, 400)
    controller.reset(sim)
    sim.run(300, controller)
    readings = sim_readings(sim, controller.layout.in_lanes)
    inter = controller.layout.num_intersections
    feed = {name: values.reshape(-1, *values.shape[2:]) for name, values in readings.items()}
    feed["intersection"] = np.tile(np.arange(inter), 2)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {k: feed[k].astype(np.int64 if k in ("phase", "intersection") else np.float32)
                                      for k in INPUTS})[0]
    obs = observe(controller.features, controller._context.at(sim.state), True).reshape(2 * inter, -1)
    mask = controller.layout.action_mask.repeat(2, 1)
    with torch.no_grad():
        expected = controller.policy.get_distribution(obs, action_masks=mask).distribution.logits
    raw = torch.where(mask, torch.as_tensor(logits), -1e8)
    assert np.allclose(logits[mask.numpy()], raw[mask].numpy())
    assert (logits[~mask.numpy()] == -1e8).all()  # the 4th action of intersection 0
    # sb3-contrib's logits are normalised (minus logsumexp); compare the differences
    got = (torch.as_tensor(logits)[mask].reshape(-1)
           - torch.logsumexp(torch.as_tensor(logits), 1).repeat_interleave(mask.sum(1)))
    assert torch.allclose(got, expected[mask].reshape(-1), atol=1e-5)


def test_export_refuses_features_the_runtime_cannot_read_and_bad_timing(tmp_path):
    scenario = uneven_grid()
    venv = IntersectionVecEnv(copies=1, scenario=scenario, episode_s=300, observations=["pressure", "lane_count"])
    model = MaskablePPO("MlpPolicy", venv, seed=0, device="cpu")
    path = save_checkpoint(model, tmp_path / "p.zip", {"env": venv.core.describe(), "config": {}})
    with pytest.raises(CheckpointError, match="pressure") as refused:
        export_policy(path, tmp_path / "out", scenario=scenario)
    assert_names_everything(refused.value, str(path), "env.observations", "pressure")
    assert "needs more than the policy runtime's readings" in refused.value.reason
    good = untrained(scenario, "shared", tmp_path / "s.zip")
    with pytest.raises(ConfigError, match="max_green_s") as refused:
        export_policy(good, tmp_path / "out", scenario=scenario, max_green_s=8.0)  # < 5 + 5
    assert_names_everything(refused.value, "<config>", "max_green_s", 8.0)
    assert 'min green + decision interval (5 + 5 s)' in refused.value.reason
    for endless in (float("inf"), float("nan")):  # both were reported as "must be at least ..."
        with pytest.raises(ConfigError, match="must be a finite number of seconds") as refused:
            export_policy(good, tmp_path / "out", scenario=scenario, max_green_s=endless)
        assert_names_everything(refused.value, "<config>", "max_green_s", endless)


def test_a_data_dir_without_the_dataset_is_named_as_export_data_dir(uneven, tmp_path):
    model, meta = load_policy(uneven[1]["shared"][0])
    meta["config"]["scenario"] = {"name": "jinan_3x4", "seed": 0}
    checkpoint = save_checkpoint(model, tmp_path / "jinan.zip", meta)
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="dataset 'jinan_3x4' not found") as refused:
        export_policy(checkpoint, tmp_path / "out", data_dir=nowhere)
    # was <dataset registry>: field 'scenario.data_dir' (train.py's key) = the dataset's folder
    assert_names_everything(refused.value, "<config>", "data_dir", nowhere)
    assert "scenario.data_dir" not in str(refused.value)


def test_the_fallback_plan_never_exceeds_max_green(uneven):
    _, exported = uneven
    meta = json.loads(exported["shared"][2].read_text())
    greens = [step["green_s"] for entry in meta["intersections"] for step in entry["fallback_plan"]]
    assert max(greens) <= meta["timing"]["max_green_s"] == 20.0


def test_the_fallback_plan_takes_the_roadnet_plans_greens_capped_at_max_green(uneven):
    # docs/deployment.md: "its fixed-time fallback plan (the roadnet plan's greens, capped at max
    # green)"
    _, exported = uneven
    meta = json.loads(exported["shared"][2].read_text())
    for entry in meta["intersections"]:
        written = {p["index"]: p["plan_duration_s"] for p in entry["phases"]}
        for step in entry["fallback_plan"]:
            duration = written[step["phase"]]
            assert step["green_s"] == min(duration, 20.0), (entry["id"], step)
    assert any(p["plan_duration_s"] > 0 for e in meta["intersections"] for p in e["phases"])  # the roadnet's used


def test_timings_on_the_bounds_export_allows_are_accepted():
    # "min green + one decision interval <= max green": the bound itself passes, just below it is refused
    engine = {"min_green_s": 5}
    check_timing(engine, 5, 10.0)  # max green = 5 + 5
    with pytest.raises(ConfigError, match="max_green_s"):
        check_timing(engine, 5, 9.5)
    # max red: min green between two clearances + one decision interval (5 + 2 x (3 + 2) + 5 = 20 s)
    engine |= {"yellow_s": 3, "all_red_s": 2}
    check_timing(engine, 5, 10.0, 20.0)
    with pytest.raises(ConfigError, match="max_red_s"):
        check_timing(engine, 5, 10.0, 19.5)


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_onnx_actions_equal_torch_on_ten_thousand_recorded_decisions(uneven, policy):
    scenario, exported = uneven
    checkpoint, onnx_path, _ = exported[policy]
    rows = recorded_decisions(checkpoint, scenario, 32, seconds=900)
    assert rows["action"].size >= 10_000
    assert len(np.unique(rows["action"])) >= 2  # actions vary with the state
    assert np.array_equal(session_actions(onnx_path, rows), rows["action"])


@pytest.mark.parametrize("agent", ["ppo_shared", "ppo_independent"])
def test_trained_policies_export_from_their_checkpoint_and_agree_on_ten_thousand_decisions(trained, agent):
    checkpoint, onnx_path, meta_path = trained[agent]
    rows = recorded_decisions(checkpoint, load_scenario("grid_1x1"), 128, seconds=900)
    assert rows["action"].size >= 10_000
    assert np.array_equal(session_actions(onnx_path, rows), rows["action"])
    assert json.loads(meta_path.read_text())["training"]["scenario"] == "grid_1x1"


@pytest.mark.datasets
def test_onnx_parity_on_hangzhou(datasets_dir, tmp_path):
    scenario = load_scenario("hangzhou_4x4", data_dir=datasets_dir)
    checkpoint = untrained(scenario, "shared", tmp_path / "h.zip")
    onnx_path, _ = export_policy(checkpoint, tmp_path, scenario=scenario)
    rows = recorded_decisions(checkpoint, scenario, 8, seconds=900)
    assert rows["action"].size >= 10_000
    assert np.array_equal(session_actions(onnx_path, rows), rows["action"])
    # closed loop (both with the export's 120 s max green): the runtime maps each action to its
    # phase as the trainer's decoder does. Here phase 0 is the transition phase and the actions are
    # phases 1..8: an action index sent as the phase passed every test on the generated grids,
    # where action k is phase k
    layout = intersection_layout(scenario.network)
    assert not (layout.action_phase[layout.action_mask] == torch.arange(layout.action_phase.shape[1]).expand_as(
        layout.action_phase)[layout.action_mask]).any()  # no action k is phase k
    sims = []
    for controller in (PolicyController(str(checkpoint), max_green_s=120.0), SimulatedRuntime(str(onnx_path))):
        sim = simulator(scenario, 2, 600)
        controller.reset(sim)
        phases = []
        for _ in range(600):
            sim.step(controller.act(sim))
            phases.append(sim.state.phase.clone())
        sims.append(torch.stack(phases))
    assert torch.equal(sims[0], sims[1]) and len(set(sims[0].flatten().tolist()) - {0}) >= 3


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_closed_loop_policy_runtime_reproduces_the_policy_second_for_second(uneven, policy):
    """Same demand, same seed: the policy runtime driving the simulator (readings -> command ->
    field device) and the in-Python policy under the same max-green rule end in the same state,
    with the same travel times. max green is 20 s here, so the rule fires."""
    scenario, exported = uneven
    checkpoint, onnx_path, _ = exported[policy]
    sims, fired = [], []
    seconds = 1800  # half an hour of demand: the max-green rule fires hundreds of times, at half the cost of an hour
    for controller in (PolicyController(str(checkpoint), max_green_s=20.0), SimulatedRuntime(str(onnx_path))):
        sim = simulator(scenario, 3, seconds)
        controller.reset(sim)
        forced = 0
        for _ in range(seconds):
            command = controller.act(sim)
            forced += int(((green_elapsed(sim.network, sim.params, sim.state) >= 20) & (command >= 0)
                           & (command != sim.state.phase)).sum())
            sim.step(command)
        sims.append(sim)
        fired.append(forced)
    policy_sim, deployed_sim = sims
    assert torch.equal(policy_sim.state.phase, deployed_sim.state.phase)
    assert torch.equal(policy_sim.state.phase_timer, deployed_sim.state.phase_timer)
    a = episode_metrics(policy_sim.demand, policy_sim.state)["travel_time/mean"]
    b = episode_metrics(deployed_sim.demand, deployed_sim.state)["travel_time/mean"]
    assert torch.equal(a, b)
    assert fired[0] == fired[1] > 0, fired
    sources = {s for decision in controller.decisions for copy in decision for s in copy.source}
    assert sources == {POLICY}


def test_export_cli_writes_both_files_and_checks_them_against_torch(trained, tmp_path):
    checkpoint, *_ = trained["ppo_shared"]
    done, counts = run_export_cli(checkpoint, tmp_path, "g1")
    assert "identical between ONNX and torch" in done.stdout
    assert counts[0] == counts[1] > 0


def test_export_says_when_check_seconds_0_skips_the_parity_check(trained, tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    import export

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base=None):
        cfg = compose(config_name="export", overrides=[f"checkpoint={trained['ppo_shared'][0]}",
                                                       f"out={tmp_path}", "check.seconds=0"])
    export.export(cfg)
    printed = capsys.readouterr().out
    assert "check: SKIPPED (check.seconds=0)" in printed and "identical" not in printed


def test_a_check_too_short_to_sample_a_trip_names_check_seconds_and_writes_nothing(trained, tmp_path):
    from hydra import compose, initialize_config_dir

    import export

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base=None):
        cfg = compose(config_name="export", overrides=[f"checkpoint={trained['ppo_shared'][0]}",
                                                       f"out={tmp_path}", "check.seconds=1"])
    with pytest.raises(ConfigError) as error:  # was "<demand spec>: field 'scale': ... raise the scale"
        export.export(cfg)
    assert (error.value.field, error.value.value) == ("check.seconds", 1)
    assert "nothing was written" in error.value.reason  # the check runs before the files are put in place
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_an_export_whose_check_disagrees_writes_nothing_and_keeps_the_export_there(trained, tmp_path, monkeypatch,
                                                                                    capsys):
    from hydra import compose, initialize_config_dir

    import export

    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base=None):
        cfg = compose(config_name="export", overrides=[f"checkpoint={trained['ppo_shared'][0]}",
                                                       f"out={tmp_path}", "overwrite=true"])
    export.export(cfg)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    monkeypatch.setattr(export, "check_against_torch", lambda *args, **kwargs: {"decisions": 10, "identical": 9})
    with pytest.raises(SystemExit) as exited:  # was: the new pair written, then exit 1 over a deployable-looking export
        export.export(cfg)
    assert exited.value.code == 1 and "disagree on 1 of 10" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_a_checkpoint_whose_meta_lacks_its_scenario_is_an_error_naming_the_key(tmp_path):
    checkpoint = untrained(load_scenario("grid_1x1", horizon=100), "shared", tmp_path / "hand.zip")
    with pytest.raises(CheckpointError) as caught:  # was a KeyError: 'scenario'
        export_policy(checkpoint, tmp_path / "out")
    assert_names_everything(caught.value, str(checkpoint), "config.scenario.name", None)
    assert "export loads the policy's scenario by it" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_export_cli_with_a_missing_checkpoint_prints_one_line_and_exits_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "export.py", f"checkpoint={tmp_path / 'nowhere.zip'}", f"out={tmp_path}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in __import__("os").environ.items() if k != "HYDRA_FULL_ERROR"},
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere.zip" in lines[0], done.stderr


def test_evaluate_puts_the_simulated_runtime_beside_its_checkpoint_with_identical_results(trained, tmp_path):
    checkpoint, onnx_path, _ = trained["ppo_independent"]
    done = subprocess.run(
        [sys.executable, "evaluate.py", "scenario=grid_1x1", "controllers=[fixed_time]", "eval.seeds=2",
         "eval.steps=900", "eval.plots=false", "eval.progress=false", f"checkpoint={checkpoint}",
         f"deployed={onnx_path}", "checkpoint_max_green_s=120", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fail-safe" not in done.stderr  # each simulated runtime decides for its own copies only
    rows = {}
    for line in (tmp_path / "metrics.csv").read_text().splitlines()[1:]:
        fields = line.split(",")
        rows.setdefault(fields[1], []).append(fields[3:])
    assert set(rows) == {"fixed_time", "ppo_independent", "ppo_independent_onnx"}
    assert rows["ppo_independent"] == rows["ppo_independent_onnx"]


@pytest.mark.parametrize("normalise, observations, expected", [
    (True, ["phase_onehot", "lane_count"], ["lane_count"]),
    (False, ["phase_onehot", "lane_count"], []),  # said "divided by ..." for lane_halting and time_in_phase too
    (True, ["phase_onehot", "time_in_phase", "lane_count", "approach_halting"],
     ["lane_count", "approach_halting", "time_in_phase"]),
])
def test_the_metadata_names_the_normalisation_the_observed_features_went_through(normalise, observations, expected):
    from agents.deploy.export_metadata import observation_entry

    scenario = load_scenario("grid_1x1", horizon=60)
    core = IntersectionVecEnv(copies=1, scenario=scenario, episode_s=60, observations=observations,
                              normalise=normalise).core
    entry = observation_entry(core.describe(), intersection_layout(scenario.network))
    assert sorted(entry["normalisation"]) == sorted(expected) and entry["normalise"] is normalise
