"""The trained-policy controllers (agents/ppo/policy.py, agents/ppo/torchrl_policy.py) beyond
replaying the env: copies out of step, sampled actions, detector faults, what they refuse, and the
checkpoint checks behind them. Untrained policies on the uneven grid (intersection 0 has 3
actions of 4: a masked action to avoid)."""

from __future__ import annotations

import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.ppo.config import AgentConfig
from agents.ppo.policy import PolicyController, check_env_meta, checkpoint_meta, load_policy
from agents.ppo.torchrl_policy import GreedyPolicy, TorchRLPolicyController, build_networks, network_spec
from envs.engine import Simulator
from envs.engine.intersections import intersection_layout
from envs.errors import CheckpointError, ConfigError
from envs.rl.sb3_env import IntersectionVecEnv
from tests.deploy_fixtures import OBSERVATIONS, untrained
from tests.scenarios import uneven_grid


def _model(copies: int = 2, ortho_init: bool = False, **env):
    """``(venv, model)``: an untrained SB3 policy on the uneven grid; without orthogonal init its
    large state-dependent logits make the greedy actions vary (as tests/test_action_modes_training.py)."""
    venv = IntersectionVecEnv(copies=copies, scenario=uneven_grid(), episode_s=300, decision_interval_s=5,
                              observations=env.pop("observations", OBSERVATIONS), demand={"mode": "original"}, **env)
    model = MaskablePPO("MlpPolicy", venv, n_steps=8, batch_size=8, seed=0, device="cpu",
                        policy_kwargs={"ortho_init": ortho_init})
    if not ortho_init:
        with torch.no_grad():
            weight = model.policy.action_net.weight
            weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * 5)
    return venv, model


def _sim(venv, copies: int) -> Simulator:
    scenario = venv.core.scenario
    return Simulator(scenario.network, scenario.demand(copies=copies), venv.core.params)


# ---- decisions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["phase", "keep_or_switch", "phase_duration"])
def test_a_copy_decides_on_its_own_clock_when_another_copy_restarts_mid_interval(mode):
    """Copy 1 restarted 7 s in decides at 7, 12, ... s of copy 0's clock: copy 0's commands are
    the ones it gets beside an in-step copy, never re-decided (or its holds restarted) at copy 1's
    decisions. Greens of 6, 9 and 13 s end between copy 0's decisions, where copy 1 decides (a
    hold started there, of a phase the policy chooses again, would end seconds early)."""
    durations = {"green_durations_s": (6, 9, 13)} if mode == "phase_duration" else {}
    venv, model = _model(action_mode=mode, **durations)
    commands = []
    for restart in (False, True):
        controller = PolicyController(model=model, meta={"env": venv.core.describe()})
        sim = _sim(venv, 2)
        controller.reset(sim)
        seen = []
        for second in range(300):
            if restart and second == 7:
                sim.reset_copies(torch.tensor([False, True]))
            command = controller.act(sim)
            seen.append(command[0].clone())
            sim.step(command)
        assert int(sim.state.t[0] - sim.state.t[1]) == (7 if restart else 0)
        commands.append(torch.stack(seen))
    assert torch.equal(commands[0], commands[1])
    assert len(set(commands[0].flatten().tolist())) > 1  # copy 0 did change its commands


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_sampled_actions_differ_between_identical_copies_and_never_take_a_masked_action(trainer):
    """``deterministic=False`` draws each copy's action from the masked distribution (an
    orthogonal init's near-uniform one here); the greedy default gives identical copies one action."""
    copies = 64
    venv, model = _model(copies=1, ortho_init=True)
    meta = {"env": venv.core.describe()}
    if trainer == "torchrl":
        core = venv.core
        agent = AgentConfig(policy="shared", net_arch=[16], activation="tanh", ortho_init=True)
        spec = network_spec(agent, core.layout.num_intersections, core.obs_size, core.max_actions, False)
        torch.manual_seed(0)
        policy = GreedyPolicy(build_networks(spec)[0])
    torch.manual_seed(0)
    chosen = {}
    for deterministic in (True, False):
        if trainer == "sb3":
            controller = PolicyController(model=model, meta=meta, deterministic=deterministic)
        else:
            controller = TorchRLPolicyController(policy=policy, meta=meta, deterministic=deterministic)
        sim = _sim(venv, copies)
        controller.reset(sim)
        chosen[deterministic] = controller.actions(sim)  # [64, 4]: every copy in the same state
    greedy, sampled = chosen[True], chosen[False]
    assert torch.equal(greedy, greedy[:1].expand_as(greedy))
    assert not (greedy[:, 0] == 3).any() and not (sampled[:, 0] == 3).any()  # intersection 0 has 3 actions
    for i in range(4):
        assert len(sampled[:, i].unique()) == (3 if i == 0 else 4), sampled[:, i]


def test_faulty_detectors_reach_the_policys_observations_of_the_faulty_copies_only():
    """evaluate.py sets `detectors` on the controller: a dead intersection's lane counts read
    nothing in the observation of its copy, and a clean copy observes the truth."""
    from envs.incidents.perturbations import DetectorFaults, DetectorFaultSpec, Perturbation

    venv, model = _model(observations=["lane_count"])
    meta = {"env": venv.core.describe()}
    sim = _sim(venv, 2)
    faults = DetectorFaults(Perturbation(seed=1, detectors=DetectorFaultSpec(dead_p=1.0)), sim.network,
                            intersection_layout(sim.network).in_lanes, 2)
    faults.start_episode(1, "eval", 0)  # copy 0 stays clean
    faulty, clean = (PolicyController(model=model, meta=meta) for _ in range(2))
    faulty.detectors = faults
    for controller in (faulty, clean):
        controller.reset(sim)
    for _ in range(60):
        sim.step(clean.act(sim))
    seen, true = faulty.observe(sim), clean.observe(sim)
    assert float(true[1].abs().sum()) > 0  # there are vehicles to count
    assert torch.equal(seen[0], true[0])
    assert float(seen[1].abs().sum()) == 0


# ---- refusals --------------------------------------------------------------------------------------------


def test_a_model_without_its_meta_is_refused_naming_the_meta():
    _, model = _model()
    with pytest.raises(ConfigError) as refused:
        PolicyController(model=model)
    assert refused.value.field == "meta"


def test_a_policy_trained_on_other_intersections_of_the_same_shape_is_refused():
    venv, model = _model()
    meta = venv.core.describe()
    meta["intersections"] = [f"elsewhere_{k}" for k in range(len(meta["intersections"]))]
    controller = PolicyController(model=model, meta={"env": meta})
    with pytest.raises(CheckpointError) as refused:
        controller.reset(_sim(venv, 2))
    assert refused.value.field == "env.intersections"
    assert refused.value.value == list(venv.core.layout.ids)
    # evaluate.py checkpoint=X without the scenario runs grid_4x4: the reason says which scenario to give
    assert refused.value.reason.endswith(f"; run it on its scenario: scenario.name={meta['scenario']}")


def test_probe_samples_need_one_sample_per_copy():
    venv, model = _model(observations=["phase_onehot", "lane_count", "probe_halted"], probes={"p": 0.5})
    controller = PolicyController(model=model, meta={"env": venv.core.describe()})
    controller.probe_samples = [("eval", 0)]
    with pytest.raises(ConfigError) as refused:
        controller.reset(_sim(venv, 2))
    assert (refused.value.field, refused.value.value) == ("probe_samples", 1)


# ---- checkpoints -----------------------------------------------------------------------------------------

META = {"env": {"observations": {"lane_count": {"size": 8}, "phase_onehot": {"size": 4}}, "normalise": True,
                "intersections": ["a"], "decision_interval_s": 5}}


@pytest.mark.parametrize("edit, field", [
    (lambda env: env.pop("intersections"), "env.intersections"),
    (lambda env: env.pop("normalise"), "env.normalise"),
    (lambda env: env.update(observations={}), "env.observations"),
    (lambda env: env["observations"]["phase_onehot"].update(size=True), "env.observations.phase_onehot.size"),
    (lambda env: env.update(decision_interval_s=True), "env.decision_interval_s"),
])
def test_a_meta_the_controller_cannot_read_is_refused_naming_the_key(edit, field):
    check_env_meta(META, "last.zip")
    meta = {"env": {**META["env"], "observations": {k: dict(v) for k, v in META["env"]["observations"].items()}}}
    edit(meta["env"])
    with pytest.raises(CheckpointError) as refused:
        check_env_meta(meta, "last.zip")
    assert (refused.value.source, refused.value.field) == ("last.zip", field)


def test_a_checkpoint_loaded_with_an_env_it_does_not_fit_is_a_mismatch_not_damage(tmp_path):
    checkpoint = untrained(uneven_grid(), "shared", tmp_path / "p.zip")
    other = IntersectionVecEnv(copies=1, scenario=uneven_grid(), episode_s=60, observations=["lane_count"])
    with pytest.raises(ValueError, match="[Oo]bservation") as refused:
        load_policy(checkpoint, env=other)
    assert not isinstance(refused.value, CheckpointError)


def test_the_meta_of_either_trainers_checkpoint_is_read_by_its_suffix(tmp_path):
    from tests.test_export_torchrl import _untrained

    scenario = uneven_grid()
    sb3 = untrained(scenario, "shared", tmp_path / "p.zip")
    torchrl = _untrained(scenario, True, tmp_path / "p.pt")
    for path in (sb3, torchrl):
        meta = checkpoint_meta(path)
        assert meta["env"]["intersections"] == list(intersection_layout(scenario.network).ids)
    assert "networks" in checkpoint_meta(torchrl) and "networks" not in checkpoint_meta(sb3)


def test_acting_before_reset_says_so():
    from envs.errors import CommandError

    venv, model = _model()
    controller = PolicyController(model=model, meta={"env": venv.core.describe()})
    with pytest.raises(CommandError, match=r"reset\(sim\)"):
        controller.act(_sim(venv, 2))
