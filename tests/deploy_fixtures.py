"""What the deployment tests share (tests/test_export.py, test_policy_runtime.py,
test_runtime_service.py): exported policies, computed once per test session, and helpers that
build readings messages for the policy runtime."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
from sb3_contrib import MaskablePPO

from agents.deploy.export import export_policy
from agents.deploy.metadata import CHECKSUM_FIELD, metadata_checksum
from agents.deploy.model_file import recorded_feed
from agents.deploy.runtime import PolicyRuntime
from agents.ppo.indexed_policy import IndexedActorCriticPolicy
from agents.ppo.policy import save_checkpoint
from agents.ppo.sb3_trainer import train
from envs.engine import Simulator
from envs.errors import ModelError
from envs.rl.sb3_env import IntersectionVecEnv
from envs.scenario.splits import DemandSpec, sample_trips
from tests.scenarios import uneven_grid

OBSERVATIONS = ["phase_onehot", "time_in_phase", "lane_count", "lane_halting", "intersection_id"]
_CACHE: dict[str, object] = {}  # exports shared by the test modules of one session


def untrained(scenario, policy: str, path, copies: int = 1, observations=OBSERVATIONS, config=None, **env):
    """A freshly initialised policy saved as a checkpoint (non-orthogonal init: its logits vary
    with the state, so its actions do too); `config`: more of the train.py config its meta records."""
    venv = IntersectionVecEnv(copies=copies, scenario=scenario, episode_s=3600, observations=observations, **env)
    kwargs = {"ortho_init": False}
    if policy == "independent":
        kwargs["num_intersections"] = venv.core.layout.num_intersections
    model = MaskablePPO(IndexedActorCriticPolicy if policy == "independent" else "MlpPolicy", venv, seed=0,
                        device="cpu", policy_kwargs=kwargs)
    name = f"ppo_{policy}"
    meta = {"env": venv.core.describe(), "config": {"agent": {"name": name}, **(config or {})}}
    return save_checkpoint(model, path, meta)


def exported_uneven(tmp_path_factory):
    """Exported untrained shared and independent policies on a grid whose first intersection has
    3 actions, not 4 (padding and masking in the graph): ``(scenario, {policy: (checkpoint,
    onnx, json)})``."""
    if "uneven" not in _CACHE:
        root = tmp_path_factory.mktemp("uneven")
        scenario = uneven_grid(horizon=3600)
        out = {}
        for policy in ("shared", "independent"):
            checkpoint = untrained(scenario, policy, root / f"{policy}.zip")
            onnx_path, meta_path = export_policy(checkpoint, root / policy, scenario=scenario, max_green_s=20.0)
            out[policy] = (checkpoint, onnx_path, meta_path)
        _CACHE["uneven"] = (scenario, out)
    return _CACHE["uneven"]


def minimal_roadnet_one_lane_in() -> dict:
    """tests/minimal_scenario.py's two junctions with a single lane into A (B has two): A's
    readings are padded with a second lane; A's phase 1 serves nothing, so switching 0 -> 1
    removes a green and 1 -> 0 does not (an intergreen table that is not symmetric)."""
    from tests.minimal_scenario import minimal_roadnet

    roadnet = minimal_roadnet()
    roadnet["roads"][0]["lanes"] = roadnet["roads"][0]["lanes"][:1]
    link = roadnet["intersections"][1]["roadLinks"][0]
    link["laneLinks"] = [lane_link for lane_link in link["laneLinks"] if lane_link["startLaneIndex"] == 0]
    return roadnet


def exported_minimal(tmp_path_factory):
    """An untrained shared policy on `minimal_roadnet_one_lane_in`, exported:
    ``(roadnet, checkpoint, onnx, json)``."""
    from envs.scenario import scenario_from_dicts
    from tests.minimal_scenario import minimal_flow

    if "minimal" not in _CACHE:
        root = tmp_path_factory.mktemp("minimal")
        roadnet = minimal_roadnet_one_lane_in()
        scenario = scenario_from_dicts(roadnet, minimal_flow(), name="minimal_one_lane_in", horizon=600)
        checkpoint = untrained(scenario, "shared", root / "minimal.zip")
        _CACHE["minimal"] = (roadnet, checkpoint, *export_policy(checkpoint, root / "out", scenario=scenario,
                                                                  max_green_s=20.0))
    return _CACHE["minimal"]


def trained_exports(tmp_path_factory):
    """Tiny train.py runs (grid_1x1), both agents, exported by name from their checkpoints:
    ``{agent: (checkpoint, onnx, json)}``."""
    from tests.test_train import tiny_run, train_config  # only the tests that train need train.py's config

    if "trained" not in _CACHE:
        out = {}
        for agent in ("ppo_shared", "ppo_independent"):
            run = tmp_path_factory.mktemp(agent)
            # two-minute evaluations: these runs make checkpoints to export, their scores are not read
            cfg = train_config(*tiny_run(seed=0, agent=agent, env__copies=8, train__total_agent_steps=1200,
                                 train__eval_every=0, agent__n_epochs=2, eval__seeds=1, eval__steps=120))
            train(cfg, run)
            checkpoint = run / "checkpoints" / "last.zip"
            out[agent] = (checkpoint, *export_policy(checkpoint, run / "export"))
        _CACHE["trained"] = out
    return _CACHE["trained"]


def copy_model(exported: dict, directory):
    """The shared export copied to ``directory/m.onnx`` and ``m.json`` (for tests that damage it)."""
    _, onnx_path, meta_path = exported["shared"]
    onnx_copy, meta_copy = directory / "m.onnx", directory / "m.json"
    onnx_copy.write_bytes(onnx_path.read_bytes())
    meta_copy.write_text(meta_path.read_text())
    return onnx_copy, meta_copy


def with_decision_interval(exported: tuple, tmp_path_factory, seconds: int):
    """The model file of `exported` (checkpoint, onnx, json) whose metadata says decisions come
    `seconds` apart: the export itself where it says so, otherwise a sealed copy."""
    _, onnx_path, meta_path = exported
    meta = json.loads(meta_path.read_text())
    if meta["timing"]["decision_interval_s"] == seconds:
        return onnx_path
    directory = tmp_path_factory.mktemp(f"interval_{seconds}")
    onnx_copy = directory / "m.onnx"
    onnx_copy.write_bytes(onnx_path.read_bytes())
    meta["timing"]["decision_interval_s"] = seconds
    write_sealed(directory / "m.json", meta)
    return onnx_copy


def write_sealed(meta_path, meta: dict) -> None:
    """Write `meta` with its checksum made again (`metadata_checksum`). The tests of the runtime's
    own checks of the metadata's values take a file whose checksum matches (one that export.py
    could have written so); an edit that keeps the old checksum is refused before those checks
    (tests/test_metadata_checksum.py)."""
    meta[CHECKSUM_FIELD] = metadata_checksum(meta)
    meta_path.write_text(json.dumps(meta))


def edit_metadata(model_copy, edit) -> dict:
    """Apply `edit(meta)` to the metadata JSON of `copy_model`'s copy, sealed again (`write_sealed`);
    the edited metadata."""
    _, meta_path = model_copy
    meta = json.loads(meta_path.read_text())
    edit(meta)
    write_sealed(meta_path, meta)
    return meta


def assert_refused_at_load(model_copy, field: str, value) -> None:
    """Loading the copy fails with a `ModelError` naming its metadata file, `field` and `value`."""
    onnx_path, meta_path = model_copy
    with pytest.raises(ModelError) as caught:
        PolicyRuntime(onnx_path, meta_path)
    assert str(caught.value).startswith(f"{meta_path}: field {field!r} = {value!r}: ")


def simulator(scenario, copies: int, seconds: int, meta_env: dict | None = None) -> Simulator:
    from envs.engine.state import EngineParams

    trips = [sample_trips(scenario, DemandSpec("poisson"), "eval", k, horizon=seconds) for k in range(copies)]
    params = EngineParams(**meta_env["engine"]) if meta_env else EngineParams()
    return Simulator(scenario.network, scenario.demand(trips=trips), params)


def recorded_decisions(checkpoint, scenario, copies: int, seconds: int) -> dict:
    """`record_decisions` of the checkpoint's policy on `copies` held-out demands of `scenario`.

    Callers take many copies over a short time rather than few over an hour: an eager step of
    8 copies costs about what one of 2 does, so 4x the copies over a quarter of the time records
    the same number of decisions in about half the time."""
    from agents.deploy.simulated import record_decisions
    from agents.ppo.policy import PolicyController

    controller = PolicyController(str(checkpoint))
    sim = simulator(scenario, copies, seconds)
    controller.reset(sim)
    return record_decisions(controller, sim, seconds)


def session_actions(onnx_path, rows: dict) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["action"], recorded_feed(session, rows))[0]


class FakeSession:
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


# what `readings_message` reports on every lane, per reading
LANE_VALUES = {"lane_count": 2.0, "lane_halting": 1.0, "approach_moving": 1.0, "approach_halting": 1.0}


def readings_message(runtime: PolicyRuntime, t: float, phases=None, tip=None) -> dict:
    """Plausible readings of every intersection (each lane `LANE_VALUES`), the readings the
    runtime's policy takes."""
    lay = runtime.layout
    phases = phases if phases is not None else {i: int(lay.actions[k, 0]) for k, i in enumerate(lay.ids)}
    return {
        "t": t,
        "intersections": {
            inter_id: {
                **{name: [LANE_VALUES[name]] * int(lay.num_lanes[k]) for name in runtime.lane_readings},
                "phase": phases[inter_id],
                "time_in_phase": tip if tip is not None else 100.0,
            }
            for k, inter_id in enumerate(lay.ids)
        },
    }


def follow(runtime: PolicyRuntime, message: dict, reply: dict, dt: float) -> dict:
    """The next message of a signal that did what it was told (dt seconds later)."""
    t = message["t"] + dt
    nxt = json.loads(json.dumps(message))
    nxt["t"] = t
    for k, inter_id in enumerate(runtime.layout.ids):
        entry = nxt["intersections"][inter_id]
        entry["phase"] = int(runtime.signals.cur_phase[k])
        entry["time_in_phase"] = float(t - runtime.signals.switched_at[k])
    return nxt


def sources(reply: dict) -> list[str]:
    return [c["source"] for c in reply["commands"].values()]


def run_export_cli(checkpoint, out, name: str) -> tuple:
    """`export.py` on `checkpoint` in a subprocess (300 s of parity check): the finished process
    and its ``(identical, decisions)`` counts."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "export.py", f"checkpoint={checkpoint}", f"out={out}", f"name={name}",
         "check.seconds=300", f"hydra.run.dir={out / 'run'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / f"{name}.onnx").is_file() and (out / f"{name}.json").is_file()
    counts = [int(x.replace(",", "")) for x in done.stdout.split("check: ")[1].split(" recorded")[0].split(" of ")]
    return done, counts

