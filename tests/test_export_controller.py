"""Export (agents/deploy/export.py, export.py) and the deployment controller (agents/deploy/runtime.py):
the ONNX graph, its metadata, parity with the torch policy (recorded and in closed loop), the
timing rules, every fail-safe fault, the JSON service, and the torch-free import."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.deploy.runtime import FALLBACK, POLICY, DeploymentController, MetadataError, onnx_opsets, serve_tcp
from agents.deploy.simulated import DeployedController, record_decisions, sim_readings
from agents.deploy.export import INPUTS, export_policy
from agents.ppo.indexed_policy import IndexedActorCriticPolicy
from agents.ppo.policy import PolicyController, save_checkpoint
from agents.ppo.sb3_trainer import train
from envs.engine import Simulator
from envs.engine.step import green_elapsed
from envs.errors import ScenarioError
from envs.rl.features import observe
from envs.engine.intersections import intersection_layout
from envs.evaluation.metrics import episode_metrics
from envs.rl.sb3_env import IntersectionVecEnv
from envs.scenario import load_scenario
from envs.scenario.splits import DemandSpec, sample_trips
from tests.conftest import REPO_ROOT
from tests.scenarios import uneven_grid
from tests.test_train import _config, _tiny

OBSERVATIONS = ["phase_onehot", "time_in_phase", "lane_count", "lane_halting", "intersection_id"]
BLOCKED = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "hydra", "omegaconf")


def _untrained(scenario, policy: str, path, copies: int = 1):
    """A freshly initialised policy saved as a checkpoint (non-orthogonal init: its logits vary
    with the state, so its actions do too)."""
    venv = IntersectionVecEnv(copies=copies, scenario=scenario, episode_s=3600, observations=OBSERVATIONS)
    kwargs = {"ortho_init": False}
    if policy == "independent":
        kwargs["num_intersections"] = venv.core.layout.num_intersections
    model = MaskablePPO(IndexedActorCriticPolicy if policy == "independent" else "MlpPolicy", venv, seed=0,
                        device="cpu", policy_kwargs=kwargs)
    name = f"ppo_{policy}"
    return save_checkpoint(model, path, {"env": venv.core.describe(), "config": {"agent": {"name": name}}})


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    """Exported untrained shared and independent policies on a grid whose first intersection has
    3 actions, not 4 (padding and masking in the graph)."""
    root = tmp_path_factory.mktemp("uneven")
    scenario = uneven_grid(horizon=3600)
    out = {}
    for policy in ("shared", "independent"):
        checkpoint = _untrained(scenario, policy, root / f"{policy}.zip")
        onnx_path, meta_path = export_policy(checkpoint, root / policy, scenario=scenario, max_green_s=20.0,
                                             fallback_green_s=15.0)
        out[policy] = (checkpoint, onnx_path, meta_path)
    return scenario, out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny train.py runs (grid_1x1), both agents, exported by name from their checkpoints."""
    out = {}
    for agent in ("ppo_shared", "ppo_independent"):
        run = tmp_path_factory.mktemp(agent)
        cfg = _config(*_tiny(seed=0, agent=agent, env__copies=8, train__total_agent_steps=1200,
                             train__eval_every=0, agent__n_epochs=2, eval__seeds=1))
        train(cfg, run)
        checkpoint = run / "checkpoints" / "last.zip"
        out[agent] = (checkpoint, *export_policy(checkpoint, run / "export"))
    return out


def _simulator(scenario, copies: int, seconds: int, meta_env: dict | None = None) -> Simulator:
    from envs.engine.state import EngineParams

    trips = [sample_trips(scenario, DemandSpec("poisson"), "eval", k, horizon=seconds) for k in range(copies)]
    params = EngineParams(**meta_env["engine"]) if meta_env else EngineParams()
    return Simulator(scenario.network, scenario.demand(trips=trips), params)


def _session_actions(onnx_path, rows: dict) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {name: rows[name].astype(np.int64 if name in ("phase", "intersection") else np.float32) for name in INPUTS}
    return session.run(["action"], feed)[0]


# ---- export ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_metadata_holds_what_a_controller_needs_and_matches_the_model_file(uneven, policy):
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
    assert meta["timing"] == {"decision_interval_s": 10, "min_green_s": 5, "max_green_s": 20.0,
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
    sim = _simulator(scenario, 2, 400)
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
    got = torch.as_tensor(logits)[mask].reshape(-1) - torch.logsumexp(torch.as_tensor(logits), 1).repeat_interleave(mask.sum(1))
    assert torch.allclose(got, expected[mask].reshape(-1), atol=1e-5)


def test_export_refuses_features_the_controller_cannot_read_and_bad_timing(tmp_path):
    scenario = uneven_grid()
    venv = IntersectionVecEnv(copies=1, scenario=scenario, episode_s=300, observations=["pressure", "lane_count"])
    model = MaskablePPO("MlpPolicy", venv, seed=0, device="cpu")
    path = save_checkpoint(model, tmp_path / "p.zip", {"env": venv.core.describe(), "config": {}})
    with pytest.raises(ScenarioError, match="pressure"):
        export_policy(path, tmp_path / "out", scenario=scenario)
    good = _untrained(scenario, "shared", tmp_path / "s.zip")
    with pytest.raises(ScenarioError, match="max_green_s"):
        export_policy(good, tmp_path / "out", scenario=scenario, max_green_s=12.0)  # < 5 + 10


# ---- parity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_onnx_actions_equal_torch_on_ten_thousand_recorded_decisions(uneven, policy):
    scenario, exported = uneven
    checkpoint, onnx_path, _ = exported[policy]
    controller = PolicyController(str(checkpoint))
    sim = _simulator(scenario, 8, 3600)
    controller.reset(sim)
    rows = record_decisions(controller, sim, 3600)
    assert rows["action"].size >= 10_000
    assert len(np.unique(rows["action"])) >= 2  # actions vary with the state
    assert np.array_equal(_session_actions(onnx_path, rows), rows["action"])


@pytest.mark.parametrize("agent", ["ppo_shared", "ppo_independent"])
def test_trained_policies_export_from_their_checkpoint_and_agree_on_ten_thousand_decisions(trained, agent):
    checkpoint, onnx_path, meta_path = trained[agent]
    controller = PolicyController(str(checkpoint))
    sim = _simulator(load_scenario("grid_1x1"), 32, 3600)
    controller.reset(sim)
    rows = record_decisions(controller, sim, 3600)
    assert rows["action"].size >= 10_000
    assert np.array_equal(_session_actions(onnx_path, rows), rows["action"])
    assert json.loads(meta_path.read_text())["training"]["scenario"] == "grid_1x1"


@pytest.mark.datasets
def test_onnx_parity_on_hangzhou(datasets_dir, tmp_path):
    scenario = load_scenario("hangzhou_4x4", data_dir=datasets_dir)
    checkpoint = _untrained(scenario, "shared", tmp_path / "h.zip")
    onnx_path, _ = export_policy(checkpoint, tmp_path, scenario=scenario)
    controller = PolicyController(str(checkpoint))
    sim = _simulator(scenario, 2, 3600)
    controller.reset(sim)
    rows = record_decisions(controller, sim, 3600)
    assert rows["action"].size >= 10_000
    assert np.array_equal(_session_actions(onnx_path, rows), rows["action"])


@pytest.mark.parametrize("policy", ["shared", "independent"])
def test_closed_loop_deployment_controller_reproduces_the_policy_second_for_second(uneven, policy):
    """Same demand, same seed: the ONNX controller driving the simulator (readings -> command ->
    field device) and the in-Python policy under the same max-green rule end in the same state,
    with the same travel times. max green is 20 s here, so the rule fires."""
    scenario, exported = uneven
    checkpoint, onnx_path, _ = exported[policy]
    sims, fired = [], []
    for controller in (PolicyController(str(checkpoint), max_green_s=20.0), DeployedController(str(onnx_path))):
        sim = _simulator(scenario, 3, 3600)
        controller.reset(sim)
        forced = 0
        for _ in range(3600):
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
    assert fired[0] == fired[1] > 0
    sources = {s for decision in controller.decisions for copy in decision for s in copy.source}
    assert sources == {POLICY}


# ---- timing rules ----------------------------------------------------------------------------------


class _FakeSession:
    """Stands in for onnxruntime: answers with a chosen action function (or misbehaves)."""

    def __init__(self, choose=None, error=None, sleep_s=0.0):
        self.choose, self.error, self.sleep_s = choose, error, sleep_s

    def run(self, names, feed):
        if self.error:
            raise RuntimeError(self.error)
        if self.sleep_s:
            import time

            time.sleep(self.sleep_s)
        return [self.choose(feed)]


@pytest.mark.parametrize("behaviour", ["always_switch", "never_switch"])
def test_min_green_max_green_and_intergreen_hold_whatever_the_model_says(uneven, behaviour):
    scenario, exported = uneven
    _, onnx_path, _ = exported["shared"]
    count = {"n": 0}

    def choose(feed):
        count["n"] += 1
        phase = feed["phase"]
        if behaviour == "never_switch":  # keep whatever runs (an action index where it is one)
            return np.where(phase < 3, phase, 0)
        return (phase + 1 + count["n"]) % 3  # a different action almost every time

    deployed = DeployedController(str(onnx_path))
    sim = _simulator(scenario, 2, 1800)
    deployed.reset(sim)
    for c in deployed.controllers:
        c.session = _FakeSession(choose)
    greens = []  # the green each phase had shown when it was ended
    for _ in range(1800):
        before = sim.state
        elapsed = green_elapsed(sim.network, sim.params, before)
        sim.step(deployed.act(sim))
        switched = sim.state.phase != before.phase
        greens += elapsed[switched & (before.t.unsqueeze(1) > 0)].tolist()
    assert greens, "the controller never changed phase"
    assert min(greens) >= 5  # min green
    assert max(greens) <= 20  # max green (20 s in this export)
    assert {s for d in deployed.decisions for c in d for s in c.source} == {POLICY}
    # every change the replies announce carries the engine's yellow + all-red for that pair
    removes = sim.network.phase_removes_green
    changes = 0
    for before, after in zip(deployed.decisions, deployed.decisions[1:]):
        for b, a in zip(before, after):
            for i in np.flatnonzero(a.phase != b.phase):
                clears = bool(removes[i, b.phase[i], a.phase[i]])
                assert (a.yellow_s[i], a.all_red_s[i]) == ((3.0, 2.0) if clears else (0.0, 0.0))
                changes += 1
    assert changes > 0


# ---- the fail-safe ----------------------------------------------------------------------------------


def _readings_message(controller: DeploymentController, t: float, phases=None, tip=None) -> dict:
    lay = controller.layout
    phases = phases if phases is not None else {i: int(lay.actions[k, 0]) for k, i in enumerate(lay.ids)}
    return {
        "t": t,
        "intersections": {
            inter_id: {
                "lane_count": [2.0] * int(lay.num_lanes[k]),
                "lane_halting": [1.0] * int(lay.num_lanes[k]),
                "phase": phases[inter_id],
                "time_in_phase": tip if tip is not None else 100.0,
            }
            for k, inter_id in enumerate(lay.ids)
        },
    }


def _follow(controller: DeploymentController, message: dict, reply: dict, dt: float) -> dict:
    """The next message of a signal that did what it was told (dt seconds later)."""
    t = message["t"] + dt
    nxt = json.loads(json.dumps(message))
    nxt["t"] = t
    for k, inter_id in enumerate(controller.layout.ids):
        entry = nxt["intersections"][inter_id]
        entry["phase"] = int(controller.cur_phase[k])
        entry["time_in_phase"] = float(t - controller.switched_at[k])
    return nxt


def _sources(reply: dict) -> list[str]:
    return [c["source"] for c in reply["commands"].values()]


@pytest.fixture
def model_copy(uneven, tmp_path):
    _, exported = uneven
    _, onnx_path, meta_path = exported["shared"]
    onnx_copy, meta_copy = tmp_path / "m.onnx", tmp_path / "m.json"
    onnx_copy.write_bytes(onnx_path.read_bytes())
    meta_copy.write_text(meta_path.read_text())
    return onnx_copy, meta_copy


@pytest.mark.parametrize("damage, fault", [
    ("missing", "unreadable"),
    ("corrupt", "checksum"),
    ("opset", "opset"),
    ("shape", "shape"),
    ("outputs", "outputs"),
])
def test_a_bad_model_file_puts_every_intersection_on_the_fixed_time_plan(model_copy, damage, fault, caplog):
    onnx_path, meta_path = model_copy
    meta = json.loads(meta_path.read_text())
    if damage == "missing":
        onnx_path.unlink()
    elif damage == "corrupt":
        data = bytearray(onnx_path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        onnx_path.write_bytes(bytes(data))
    elif damage == "opset":
        meta["model"]["opset"] = 17
    elif damage == "shape":
        meta["model"]["inputs"]["lane_count"]["shape"] = ["batch", 99]
    elif damage == "outputs":
        del meta["model"]["outputs"]["logits"]
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="gridlight.controller"):
        controller = DeploymentController(onnx_path, meta_path)
        reply = controller.decide(_readings_message(controller, 0.0))
    assert controller.session is None and fault in controller.model_fault
    assert set(_sources(reply)) == {FALLBACK}
    assert any(fault in f for f in reply["faults"])
    assert any(fault in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    # the fallback runs the fixed-time plan: phases advance through the plan over time
    message, seen = _readings_message(controller, 0.0), set()
    for _ in range(30):
        reply = controller.decide(message)
        seen.update(c["phase"] for c in reply["commands"].values())
        message = _follow(controller, message, reply, 10.0)
    assert seen == {0, 1, 2, 3}


def test_missing_metadata_is_an_error_naming_the_file(model_copy):
    onnx_path, meta_path = model_copy
    meta_path.unlink()
    with pytest.raises(MetadataError, match="m.json"):
        DeploymentController(onnx_path)
    meta_path.write_text("{not json")
    with pytest.raises(MetadataError, match="not readable JSON"):
        DeploymentController(onnx_path)


@pytest.mark.parametrize("bad, fault", [
    (lambda e: e.pop("lane_count"), "lane_count: expected a list"),
    (lambda e: e.update(lane_count=e["lane_count"][:-1]), "lane_count: expected a list"),
    (lambda e: e.update(lane_halting=[float("nan")] * len(e["lane_halting"])), "NaN"),
    (lambda e: e.update(lane_count=[-1.0] * len(e["lane_count"])), "negative"),
    (lambda e: e.update(lane_count=[1e6] * len(e["lane_count"])), "above the lane's capacity"),
    (lambda e: e.update(lane_halting=[5.0] * len(e["lane_halting"])), "more halting"),
    (lambda e: e.update(phase=17), "phase: 17"),
    (lambda e: e.update(phase="green"), "phase: expected a number"),
    (lambda e: e.update(time_in_phase=float("nan")), "time_in_phase"),
    (lambda e: e.clear(), "lane_count"),
])
def test_bad_readings_fall_back_for_that_intersection_only_and_recover(model_copy, bad, fault, caplog):
    controller = DeploymentController(*model_copy)
    first = _readings_message(controller, 0.0)
    reply = controller.decide(first)
    assert set(_sources(reply)) == {POLICY}
    message = _follow(controller, first, reply, 10.0)
    broken = json.loads(json.dumps(message))
    victim = controller.layout.ids[1]
    bad(broken["intersections"][victim])
    with caplog.at_level(logging.INFO, logger="gridlight.controller"):
        reply = controller.decide(broken)
        assert reply["commands"][victim]["source"] == FALLBACK
        assert any(fault in f for f in reply["commands"][victim]["faults"]), reply["commands"][victim]
        others = [c["source"] for k, c in reply["commands"].items() if k != victim]
        assert set(others) == {POLICY}
        reply = controller.decide(_follow(controller, message, reply, 10.0))  # good again
        assert reply["commands"][victim]["source"] == POLICY
    messages = [r.getMessage() for r in caplog.records]
    assert any("fail-safe at " + victim in m for m in messages)
    assert any(victim + " back on the policy" in m for m in messages)


def test_missing_intersection_falls_back_and_unknown_ids_are_reported(model_copy):
    controller = DeploymentController(*model_copy)
    message = _readings_message(controller, 0.0)
    victim = controller.layout.ids[2]
    del message["intersections"][victim]
    message["intersections"]["nowhere"] = {}
    reply = controller.decide(message)
    assert reply["commands"][victim]["source"] == FALLBACK
    assert reply["commands"][victim]["faults"] == ["readings missing"]
    assert any("nowhere" in f for f in reply["faults"])


def test_a_signal_that_did_not_follow_the_command_is_a_fault(model_copy):
    controller = DeploymentController(*model_copy)
    message = _readings_message(controller, 0.0)
    reply = controller.decide(message)
    nxt = _follow(controller, message, reply, 10.0)
    victim = controller.layout.ids[0]
    nxt["intersections"][victim]["time_in_phase"] += 7.0  # the signal's clock disagrees
    reply = controller.decide(nxt)
    assert reply["commands"][victim]["source"] == FALLBACK
    assert "controller commanded" in reply["commands"][victim]["faults"][0]


@pytest.mark.parametrize("session, fault", [
    (_FakeSession(error="boom"), "inference failed: boom"),
    (_FakeSession(choose=lambda feed: np.full(len(feed["phase"]), 9)), "outside the intersections' actions"),
    (_FakeSession(choose=lambda feed: np.zeros(len(feed["phase"]), dtype=np.int64), sleep_s=0.03), "deadline"),
])
def test_inference_errors_bad_outputs_and_deadline_overruns_fall_back_then_recover(model_copy, session, fault):
    controller = DeploymentController(*model_copy, deadline_ms=10.0)
    real = controller.session
    controller.session = session
    message = _readings_message(controller, 0.0)
    reply = controller.decide(message)
    assert set(_sources(reply)) == {FALLBACK}
    assert any(fault in f for f in reply["faults"]), reply["faults"]
    controller.session = real
    reply = controller.decide(_follow(controller, message, reply, 10.0))
    assert set(_sources(reply)) == {POLICY}


def test_dead_detectors_in_the_simulator_fall_back_then_return_to_the_policy(uneven):
    """Faults injected into the readings of one intersection from 600 s to 1200 s."""
    scenario, exported = uneven
    _, onnx_path, _ = exported["shared"]

    def dead_detector(t, readings):
        if 600 <= t < 1200:
            readings = {k: v.copy() for k, v in readings.items()}
            readings["lane_count"][2, :] = np.nan
        return readings

    deployed = DeployedController(str(onnx_path), faults=dead_detector)
    sim = _simulator(scenario, 2, 1800)
    sim.run(1800, deployed)
    by_time = [(int(d[0].t), d[0].source[2], d[0].source[1]) for d in deployed.decisions]
    assert all(src == (FALLBACK if 600 <= t < 1200 else POLICY) for t, src, _ in by_time)
    assert all(other == POLICY for *_, other in by_time)
    assert float(episode_metrics(sim.demand, sim.state)["throughput"].min()) > 0


# ---- the service --------------------------------------------------------------------------------------


def _blocked_python(code: str) -> list[str]:
    """A python command line in which the BLOCKED packages cannot be imported."""
    guard = (
        "import sys, importlib.abc\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        f"    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {BLOCKED!r}: raise ImportError(name + ' is blocked')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    return [sys.executable, "-c", guard + code]


def test_controller_imports_and_serves_stdin_without_torch_sb3_gymnasium_or_hydra(model_copy):
    onnx_path, _ = model_copy
    controller = DeploymentController(*model_copy)
    good = _readings_message(controller, 0.0)
    later = json.loads(json.dumps(good))
    later["t"] = 10.0
    lines = [json.dumps(good), "{broken", json.dumps({"intersections": {}}), json.dumps([1, 2]),
             json.dumps({"t": -5.0, "intersections": {}}), json.dumps(later)]
    code = (
        "import runpy\n"
        f"sys.argv = ['agents.deploy.runtime', 'serve', '--model', {str(onnx_path)!r}]\n"
        "try:\n    runpy.run_module('agents.deploy.runtime', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"assert not any(m.split('.')[0] in {BLOCKED!r} for m in sys.modules), sorted(sys.modules)\n"
    )
    done = subprocess.run(_blocked_python(code), input="\n".join(lines) + "\n", capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(replies) == len(lines)
    assert set(_sources(replies[0])) == {POLICY}
    assert "not JSON" in replies[1]["error"] and replies[1]["line"] == 2
    assert "field 't'" in replies[2]["error"]
    assert "JSON object" in replies[3]["error"]
    assert "went backwards" in replies[4]["error"]
    assert replies[5]["t"] == 10.0 and "commands" in replies[5]  # still serving
    # the torch-free process gave the same commands as this one
    assert replies[0] == controller.decide(good)


def test_tcp_service_answers_each_line_and_survives_bad_messages(model_copy):
    controller = DeploymentController(*model_copy)
    started = threading.Event()
    servers = []

    def ready(server):
        servers.append(server)
        started.set()

    thread = threading.Thread(target=serve_tcp, args=(controller, "127.0.0.1", 0, ready), daemon=True)
    thread.start()
    assert started.wait(10)
    host, port = servers[0].server_address
    message = _readings_message(DeploymentController(*model_copy), 0.0)
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"nonsense\n" + json.dumps(message).encode() + b"\n")
        stream = conn.makefile("r")
        first, second = json.loads(stream.readline()), json.loads(stream.readline())
    servers[0].shutdown()
    assert "error" in first
    assert set(_sources(second)) == {POLICY}


def test_export_cli_writes_both_files_and_checks_them_against_torch(trained, tmp_path):
    checkpoint, *_ = trained["ppo_shared"]
    done = subprocess.run(
        [sys.executable, "export.py", f"checkpoint={checkpoint}", f"out={tmp_path}", "name=g1",
         "check.seconds=300", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "g1.onnx").is_file() and (tmp_path / "g1.json").is_file()
    assert "identical between ONNX and torch" in done.stdout
    counts = [int(x.replace(",", "")) for x in done.stdout.split("check: ")[1].split(" recorded")[0].split(" of ")]
    assert counts[0] == counts[1] > 0


def test_evaluate_puts_the_deployed_controller_beside_its_checkpoint_with_identical_results(trained, tmp_path):
    checkpoint, onnx_path, _ = trained["ppo_independent"]
    done = subprocess.run(
        [sys.executable, "evaluate.py", "scenario=grid_1x1", "controllers=[fixed_time]", "eval.seeds=2",
         "eval.steps=900", "eval.plots=false", "eval.progress=false", f"checkpoint={checkpoint}",
         f"deployed={onnx_path}", "checkpoint_max_green_s=120", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fail-safe" not in done.stderr  # each deployed controller decides for its own copies only
    rows = {}
    for line in (tmp_path / "metrics.csv").read_text().splitlines()[1:]:
        fields = line.split(",")
        rows.setdefault(fields[1], []).append(fields[3:])
    assert set(rows) == {"fixed_time", "ppo_independent", "ppo_independent_onnx"}
    assert rows["ppo_independent"] == rows["ppo_independent_onnx"]


def test_dead_detectors_from_the_fault_model_put_exactly_their_intersections_on_the_fallback(uneven):
    from envs.incidents.perturbations import DetectorFaults, DetectorFaultSpec, Perturbation

    scenario, exported = uneven
    _, onnx_path, _ = exported["shared"]
    perturbation = Perturbation(seed=0, detectors=DetectorFaultSpec(dead_p=0.5))
    faults = DetectorFaults(perturbation, scenario.network, intersection_layout(scenario.network).in_lanes, 2)
    for copy in range(2):
        faults.start_episode(copy, "eval", copy)
    deployed = DeployedController(str(onnx_path))
    deployed.detectors = faults
    sim = _simulator(scenario, 2, 900)
    sim.run(900, deployed)
    dead = [set(faults.lane_owner[faults.dead[c]].tolist()) for c in range(2)]
    assert any(dead) and not all(len(d) == 4 for d in dead)
    for decision in deployed.decisions:
        for copy, made in enumerate(decision):
            for i, source in enumerate(made.source):
                assert source == (FALLBACK if i in dead[copy] else POLICY)
    assert float(episode_metrics(sim.demand, sim.state)["throughput"].min()) > 0  # traffic kept moving


def test_a_signal_the_controller_has_never_seen_gets_the_full_clearance(model_copy):
    controller = DeploymentController(*model_copy)
    message = _readings_message(controller, 0.0)
    victim = controller.layout.ids[0]
    del message["intersections"][victim]  # its phase is unknown
    command = controller.decide(message)["commands"][victim]
    assert command["source"] == FALLBACK and (command["yellow_s"], command["all_red_s"]) == (3.0, 2.0)
    k = controller.layout.index[victim]
    assert controller.prev_phase[k] == -1 and controller.known[k]


def test_numbers_beyond_float_range_are_one_intersections_fault_or_an_error_reply(model_copy):
    from agents.deploy.runtime import handle_line

    controller = DeploymentController(*model_copy)
    message = _readings_message(controller, 0.0)
    victim = controller.layout.ids[1]
    message["intersections"][victim]["lane_count"][0] = 10**400
    reply = handle_line(controller, json.dumps(message), 1)
    assert reply["commands"][victim]["source"] == FALLBACK
    assert {c["source"] for k, c in reply["commands"].items() if k != victim} == {POLICY}
    assert "error" in handle_line(controller, json.dumps({"t": 10**400, "intersections": {}}), 2)


def test_tcp_clients_are_served_message_by_message_not_connection_by_connection(model_copy):
    controller = DeploymentController(*model_copy)
    started, servers = threading.Event(), []
    thread = threading.Thread(target=serve_tcp, args=(controller, "127.0.0.1", 0,
                                                      lambda s: (servers.append(s), started.set())), daemon=True)
    thread.start()
    assert started.wait(10)
    address = servers[0].server_address
    message = _readings_message(DeploymentController(*model_copy), 0.0)
    with socket.create_connection(address, timeout=10) as idle, socket.create_connection(address, timeout=10) as busy:
        idle.sendall(b"")  # connected, says nothing
        busy.sendall(json.dumps(message).encode() + b"\n")
        reply = json.loads(busy.makefile("r").readline())  # answered while the idle client holds its line
    servers[0].shutdown()
    assert set(_sources(reply)) == {POLICY}


def test_the_fallback_plan_never_exceeds_max_green(uneven):
    _, exported = uneven
    meta = json.loads(exported["shared"][2].read_text())
    greens = [step["green_s"] for entry in meta["intersections"] for step in entry["fallback_plan"]]
    assert max(greens) <= meta["timing"]["max_green_s"] == 20.0
