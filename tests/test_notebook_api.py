"""Python API arguments that a notebook user passes and that were silently ignored or failed
deep inside the code, each now one error naming the argument (found by a review of the API as
README.md and docs/engine.md, docs/environments.md show it)."""

from __future__ import annotations

import pytest

from envs.errors import ConfigError
from envs.rl.signal_env import BatchedSignalEnv
from envs.scenario import load_scenario


def test_load_scenario_refuses_a_seed_that_a_dataset_does_not_read():
    # the dataset's flow file was loaded as for seed 0, whatever seed was asked for (refused before
    # any file is read, so no dataset is needed here)
    with pytest.raises(ConfigError, match="'seed' = 3"):
        load_scenario("hangzhou_4x4", seed=3)
    with pytest.raises(ConfigError, match="'scenario_seed' = 3"):
        BatchedSignalEnv("hangzhou_4x4", scenario_seed=3)


def test_the_env_refuses_a_data_dir_that_a_generated_preset_does_not_read(tmp_path):
    with pytest.raises(ConfigError, match="'data_dir'.*generated"):
        BatchedSignalEnv("grid_1x1", data_dir=str(tmp_path))
    assert load_scenario("grid_1x1", seed=2).name == "grid_1x1"  # a preset reads its seed


def test_scenario_demand_refuses_copies_beside_trips_and_trips_that_are_not_trip_tables():
    scenario = load_scenario("grid_1x1", horizon=60)
    assert scenario.demand(trips=[scenario.trips] * 2).batch_size == 2
    assert scenario.demand(copies=3).batch_size == 3
    with pytest.raises(ConfigError, match="'copies' = 3"):  # was B = 1, the length of trips
        scenario.demand(copies=3, trips=[scenario.trips])
    with pytest.raises(ConfigError, match="'trips'"):  # was an AttributeError on str.num_trips
        scenario.demand(trips="abc")
    with pytest.raises(ConfigError, match="'trips'"):
        scenario.demand(trips=scenario.trips)  # one Trips, not a list of them


def test_simulator_run_refuses_a_controller_class_and_an_on_step_that_is_not_callable():
    from agents.classical import MaxPressure
    from envs.engine import Simulator
    from envs.errors import CommandError

    scenario = load_scenario("grid_1x1", horizon=60)
    sim = Simulator(scenario.network, scenario.demand(copies=1))
    with pytest.raises(CommandError, match="'controller'.*MaxPressure"):  # was a TypeError: reset() missing 'sim'
        sim.run(5, MaxPressure)
    with pytest.raises(CommandError, match="'on_step' = 3"):  # was a TypeError after the first step
        sim.run(5, on_step=3)
    assert int(sim.state.t[0]) == 0  # refused before any step
    sim.run(5, MaxPressure(), on_step=lambda s: None)
    assert int(sim.state.t[0]) == 5


def test_the_numpy_adapters_refuse_bool_actions_as_the_torch_ones_do():
    # BatchedSignalEnv and the TorchRL env refuse a bool tensor; the Gymnasium, SB3 and
    # PettingZoo adapters cast True/False to actions 1/0 silently (a mask passed as actions ran)
    import gymnasium
    import numpy as np

    import envs
    from envs.errors import CommandError

    vec = gymnasium.make_vec("gridlight/TrafficSignal-v0", num_envs=2, vectorization_mode="vector_entry_point",
                             scenario="grid_1x1", episode_s=20)
    vec.reset(seed=0)
    with pytest.raises(CommandError, match="<env:gym>: field 'actions'.*bool"):
        vec.step(np.array([[True], [False]]))
    sb3 = envs.sb3_vec_env(scenario="grid_1x1", copies=2, episode_s=20)
    sb3.reset()
    with pytest.raises(CommandError, match="<env:sb3>: field 'actions'.*bool"):
        sb3.step(np.array([True, False]))
    par = envs.parallel_env(scenario="grid_1x1", episode_s=20)
    par.reset(seed=0)
    agent = par.possible_agents[0]
    with pytest.raises(CommandError, match=f"<env:pettingzoo>: field 'actions\\[{agent}\\]' = True"):
        par.step({agent: True})
    vec.step(np.array([[1], [0]]))  # whole numbers still step
    par.step({agent: np.int64(1)})


def test_an_unknown_adapter_keyword_lists_the_keywords_that_adapter_takes():
    # the list was BatchedSignalEnv's: it offered autoreset (and copies, compile) where the adapter
    # refuses them, and left out num_envs, render_mode and compile_engine
    import gymnasium

    import envs

    def known(make) -> list[str]:
        with pytest.raises(ConfigError, match="unknown keyword") as error:
            make()
        return str(error.value).split("known: ")[1].split(", ")

    vec = known(lambda: gymnasium.make_vec("gridlight/TrafficSignal-v0", num_envs=1,
                                           vectorization_mode="vector_entry_point", copy=2))
    assert "num_envs" in vec and "render_mode" in vec and "copies" not in vec and "autoreset" not in vec
    trl = known(lambda: envs.torchrl_env(num_envs=2))
    assert "compile_engine" in trl and "compile" not in trl and "autoreset" not in trl
    assert "copies" in known(lambda: envs.sb3_vec_env(num_envs=2))
    assert "autoreset" not in known(lambda: envs.parallel_env(num_envs=2))


def test_the_env_refuses_a_perturbation_given_by_name_naming_the_argument():
    # Hydra's perturbation=incident typed in Python was a ValueError from dict('incident')
    for given in ("incident", ["incident"], 3):
        with pytest.raises(ConfigError, match="<env>: field 'perturbation'"):
            BatchedSignalEnv("grid_1x1", episode_s=20, demand={"mode": "poisson"}, perturbation=given)


def test_the_one_copy_envs_refuse_a_copies_that_is_not_the_integer_1():
    import gymnasium

    import envs

    for given in (1.0, 1.5):  # 1.0 passed (1.0 == 1) where the vector envs refuse a float
        with pytest.raises(ConfigError, match=f"'copies' = {given}"):
            gymnasium.make("gridlight/TrafficSignal-v0", scenario="grid_1x1", copies=given)
        with pytest.raises(ConfigError, match=f"'copies' = {given}"):
            envs.parallel_env(scenario="grid_1x1", copies=given)
    envs.parallel_env(scenario="grid_1x1", copies=1, episode_s=20)
