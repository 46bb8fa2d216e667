"""Python API misuse that ran on silently or failed deep inside torch/numpy, each now a clear
error naming the argument (found by a review of the adapters, the simulator and the classical
controllers): the single env outside an episode, autoreset switched off where it is the contract,
SB3 actions past Discrete(A), PettingZoo actions for no agent, the simulator's run / reset_copies /
set_demand / params, controllers acting before reset, and max pressure's NaN minimum green."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

import envs
from agents.classical import CONTROLLERS, MaxPressure
from envs.engine import Simulator
from envs.errors import CommandError, ConfigError
from envs.rl.gym_env import TrafficSignalEnv
from envs.scenario import load_scenario


def _simulator(name: str = "grid_1x1", copies: int = 1) -> Simulator:
    scenario = load_scenario(name, horizon=120)
    return Simulator(scenario.network, scenario.demand(copies=copies))


def test_the_single_env_refuses_a_step_outside_an_episode_and_a_reset_after_close():
    env = TrafficSignalEnv(scenario="grid_1x1", episode_s=20)
    action = np.zeros(1, dtype=np.int64)
    with pytest.raises(CommandError, match="call reset"):
        env.step(action)
    env.reset(seed=0)
    ended = False
    while not ended:
        *_, terminated, truncated, _ = env.step(action)
        ended = terminated or truncated
    with pytest.raises(CommandError, match="the episode ended"):  # the clock ran on past episode_s
        env.step(action)
    env.reset()
    env.step(action)
    env.close()
    with pytest.raises(CommandError, match="closed"):
        env.reset()


def _vector_step(env, copies: int = 2):
    return env.step(np.zeros((copies, 1), dtype=np.int64))


def _sb3_step(env, copies: int = 2):
    env.step_async(np.zeros(copies, dtype=np.int64))
    return env.step_wait()


def _torchrl_step(env, copies: int = 2):
    return env.step(env.full_action_spec.zero())


@pytest.mark.parametrize("make, step", [
    (lambda: gymnasium.make_vec(envs.ENV_ID, vectorization_mode="vector_entry_point", num_envs=2,
                                scenario="grid_1x1", episode_s=20), _vector_step),
    (lambda: envs.sb3_vec_env(scenario="grid_1x1", copies=2, episode_s=20), _sb3_step),
    (lambda: envs.torchrl_env(scenario="grid_1x1", copies=2, episode_s=20), _torchrl_step),
], ids=["gymnasium_vector", "sb3", "torchrl"])
def test_the_batched_adapters_refuse_a_step_before_reset_and_after_close(make, step):
    env = make()  # the core steps from its construction state: an unseeded episode, and after close it ran on
    with pytest.raises(CommandError, match="call reset"):
        step(env)
    env.reset()
    step(env)
    env.close()
    with pytest.raises(CommandError, match="closed"):
        step(env)


def test_pettingzoo_refuses_a_reset_after_close():
    env = envs.parallel_env(scenario="grid_1x1")
    env.reset(seed=0)
    env.close()
    for call in (env.reset, lambda: env.step({agent: 0 for agent in env.possible_agents})):
        with pytest.raises(CommandError, match="closed"):
            call()


def test_after_an_autoreset_the_vector_info_clock_is_the_new_episodes():
    env = gymnasium.make_vec(envs.ENV_ID, vectorization_mode="vector_entry_point", num_envs=2,
                             scenario="grid_1x1", episode_s=20)
    env.reset(seed=0)
    steps = 0
    while True:  # the returned observation is the new episode's first, so is the clock beside it
        _, _, terminated, truncated, info = _vector_step(env)
        steps += 1
        if (terminated | truncated).all():
            break
    assert info["t"].tolist() == [0, 0]
    assert info["final_info"]["episode"]["length_s"].tolist() == [20.0, 20.0]


@pytest.mark.parametrize("make", [
    lambda: gymnasium.make_vec(envs.ENV_ID, vectorization_mode="vector_entry_point", num_envs=2,
                               scenario="grid_1x1", autoreset=False),
    lambda: envs.sb3_vec_env(scenario="grid_1x1", copies=2, autoreset=False),
])
def test_autoreset_cannot_be_switched_off_where_it_is_the_contract(make):
    with pytest.raises(ConfigError, match="always autoresets") as error:  # the clock ran on, dones every step
        make()
    assert error.value.field == "autoreset"


def test_the_vector_env_names_num_envs():
    with pytest.raises(ConfigError) as error:  # was named 'copies', which it tells users not to pass
        gymnasium.make_vec(envs.ENV_ID, vectorization_mode="vector_entry_point", num_envs=0, scenario="grid_1x1")
    assert (error.value.field, error.value.value) == ("num_envs", 0)


def test_sb3_actions_past_discrete_a_are_refused():
    venv = envs.sb3_vec_env(scenario="grid_1x1", copies=2)
    venv.reset()
    venv.step(np.array([0, 1]))
    with pytest.raises(CommandError, match=r"outside Discrete\(4\)") as error:  # kept the phase silently
        venv.step(np.array([99, 0]))
    assert error.value.value == 99


def test_pettingzoo_refuses_actions_for_no_agent_and_arrays_for_one():
    env = envs.parallel_env(scenario="grid_4x4")
    env.reset(seed=0)
    actions = {agent: 0 for agent in env.agents}
    with pytest.raises(CommandError, match="not agents of this environment"):
        env.step({**actions, "bogus_agent": 3})
    with pytest.raises(CommandError, match="expected one action"):
        env.step({**actions, env.agents[0]: np.array([1])})
    env.step(actions)


def test_the_simulator_checks_run_reset_copies_set_demand_and_params():
    sim = _simulator(copies=2)
    for steps in (-5, 2.5, "3", True):
        with pytest.raises(CommandError, match="whole number of seconds"):
            sim.run(steps)
    with pytest.raises(CommandError, match="expected a controller"):
        sim.run(3, controller="max_pressure")
    for mask in (torch.tensor([True]), torch.tensor([1, 0]), [True, False]):
        with pytest.raises(CommandError, match=r"bool tensor of shape \[2\]"):  # [True] reset both copies
            sim.reset_copies(mask)
    with pytest.raises(ConfigError):  # another network's demand: a shape error at the next step
        sim.set_demand(load_scenario("grid_4x4", horizon=120).demand(copies=2))
    scenario = load_scenario("grid_1x1", horizon=120)
    with pytest.raises(ConfigError, match=r"EngineParams\(\.\.\.\)"):
        Simulator(scenario.network, scenario.demand(copies=1), {"min_green_s": 3})


@pytest.mark.parametrize("name", ["fixed_time", "sotl", "fixed_time_webster"])
def test_a_controller_acting_before_reset_says_so(name):
    with pytest.raises(CommandError, match=r"call reset\(sim\) before act\(sim\)"):  # AttributeError before
        CONTROLLERS[name]().act(_simulator())


@pytest.mark.parametrize("value", [float("nan"), "10"])
def test_max_pressure_refuses_a_minimum_green_that_is_not_a_finite_number(value):
    with pytest.raises(ConfigError, match="must be a finite number >= 0"):  # NaN: it never switched
        MaxPressure(min_green_s=value).reset(_simulator())


@pytest.mark.parametrize("name, values, field", [
    ("fixed_time", {"plan": "uniform", "cycle_s": -1.0}, "cycle_s"),
    ("fixed_time", {"cycle_s": 90.0}, "cycle_s"),  # the roadnet plan ran its written durations, 90 ignored
    ("fixed_time_webster", {"min_cycle_s": 0.0}, "min_cycle_s"),
    ("max_pressure", {"min_green_s": -1}, "min_green_s"),
    ("sotl", {"theta": float("nan")}, "theta"),
    ("efficient_mp", {"min_green_s": -5.0}, "min_green_s"),
    ("advanced_mp", {"horizon_s": 0.0}, "horizon_s"),
])
def test_a_controller_refuses_a_bad_value_when_built_not_when_its_run_starts(name, values, field):
    with pytest.raises(ConfigError) as error:
        CONTROLLERS[name](**values)
    assert (error.value.field, error.value.value) == (field, values[field])


def test_a_reward_whose_every_weight_is_0_is_refused():
    from envs.rl.signal_env import BatchedSignalEnv

    with pytest.raises(ConfigError, match="every weight is 0") as error:  # a zero weight drops a term: all dropped
        BatchedSignalEnv("grid_1x1", reward={"queue": 0.0, "delay": 0})
    assert error.value.field == "reward"


def test_switches_given_as_strings_are_refused_not_read_as_true():
    from envs.rl.signal_env import BatchedSignalEnv

    # bool("false") is True: each of these compiled, normalised or counted halting vehicles only
    for make, field in ((lambda: BatchedSignalEnv("grid_1x1", normalise="false"), "normalise"),
                        (lambda: BatchedSignalEnv("grid_1x1", compile="no"), "compile"),
                        (lambda: envs.torchrl_env(scenario="grid_1x1", copies=1, compile_engine="false"),
                         "compile_engine"),
                        (lambda: MaxPressure(use_halting="no").reset(_simulator()), "use_halting")):
        with pytest.raises(ConfigError, match="expected true or false") as error:
            make()
        assert error.value.field == field


def test_a_policy_run_under_other_engine_rules_than_it_learned_is_refused(tmp_path):
    from agents.ppo.policy import PolicyController
    from envs.engine.state import EngineParams
    from tests.deploy_fixtures import untrained

    scenario = load_scenario("grid_1x1", horizon=120)
    checkpoint = untrained(scenario, "shared", tmp_path / "p.zip", engine={"min_green_s": 15, "yellow_s": 4})
    policy = PolicyController(str(checkpoint))
    # evaluate.py ran it under its own defaults (5 s, 3 s) while the export kept 15 s, 4 s: the rows differed
    with pytest.raises(ConfigError, match=r"trained with engine.yellow_s=4") as error:
        policy.reset(Simulator(scenario.network, scenario.demand(copies=1), EngineParams(min_green_s=15)))
    assert (error.value.field, error.value.value) == ("engine.yellow_s", 3)
    policy.reset(Simulator(scenario.network, scenario.demand(copies=1), EngineParams(min_green_s=15, yellow_s=4,
                                                                                     max_vehicles=500)))


def test_a_policy_from_before_an_engine_rule_existed_is_held_to_its_default(tmp_path):
    """A checkpoint written before junction_yielding (29d0314) records no such rule: it learned the
    engine without it, today's default (off). Run with the rule on it passed unchecked, while a newer
    checkpoint trained with it off is refused."""
    from agents.ppo.policy import PolicyController, load_policy
    from envs.engine.state import EngineParams
    from tests.deploy_fixtures import untrained

    scenario = load_scenario("grid_1x1", horizon=120)
    model, meta = load_policy(untrained(scenario, "shared", tmp_path / "p.zip"))
    for rule in ("junction_yielding", "yield_gap_s"):
        del meta["env"]["engine"][rule]
    policy = PolicyController(str(tmp_path / "p.zip"), model=model, meta=meta)
    with pytest.raises(ConfigError, match=r"trained with engine.junction_yielding=False") as error:
        policy.reset(Simulator(scenario.network, scenario.demand(copies=1), EngineParams(junction_yielding=True)))
    assert (error.value.field, error.value.value) == ("engine.junction_yielding", True)
    policy.reset(Simulator(scenario.network, scenario.demand(copies=1), EngineParams()))


def test_numpy_integers_count_as_integers_where_a_whole_number_is_asked_for():
    # np.int64 read from an array is an integer to numpy users; these were refused ("need an
    # integer") while a bool and a float still are
    n = np.arange(5, dtype=np.int64)
    scenario = load_scenario("grid_1x1", horizon=120)
    assert scenario.demand(copies=n[2]).max_trips == scenario.demand(copies=2).max_trips
    sim = Simulator(scenario.network, scenario.demand(copies=1))
    assert sim.run(n[4]).t.tolist() == [4]
    vector = gymnasium.make_vec("gridlight/TrafficSignal-v0", num_envs=n[2], vectorization_mode="vector_entry_point",
                                scenario="grid_1x1")
    assert vector.num_envs == 2 and type(vector.num_envs) is int
    vector.unwrapped.core.reset(seed=n[3])  # Gymnasium's own reset(seed=) asks for a Python int
    torchrl = envs.torchrl_env(scenario="grid_1x1", copies=1, episode_s=20)
    torchrl.set_seed(n[3])
    torchrl.reset()
    for bad in (True, 2.0):
        with pytest.raises(ConfigError):
            scenario.demand(copies=bad)
        with pytest.raises(CommandError):
            sim.run(bad)
