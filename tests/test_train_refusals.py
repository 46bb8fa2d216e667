"""train.py and evaluate.py task=incident_detection refuse, before any work, settings the run
would silently change or not read: a minibatch size that does not fit the rollout, a resume whose
periodic evaluation (episodes, baselines, engine rules) differs from the checkpoint's, detection
options no detector reads."""

from __future__ import annotations

import pytest

import evaluate
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_trainer import train_torchrl
from envs.errors import CheckpointError, ConfigError
from tests.test_evaluate import evaluate_config
from tests.test_train import tiny_run, train_config

# grid_1x1, one copy, 10 decisions: a rollout of 10 agent-steps
ROLLOUT_10 = dict(env__copies=1, agent__n_steps=10, agent__n_epochs=1, eval__seeds=1, eval__steps=100,
                  env__episode_s=100, train__total_agent_steps=20, train__eval_every=0)


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_a_minibatch_larger_than_the_rollout_is_refused_before_any_work(trainer, tmp_path, capsys):
    run = train_torchrl if trainer == "torchrl" else train
    extra = ["trainer=torchrl"] if trainer == "torchrl" else []
    with pytest.raises(ConfigError, match="exceeds the rollout of 10 agent-steps") as error:
        run(train_config(*tiny_run(**ROLLOUT_10, agent__batch_size=20), *extra), tmp_path)
    assert error.value.field == "agent.batch_size"
    assert "baseline" not in capsys.readouterr().out  # before the baselines ran


def test_sb3_refuses_a_minibatch_size_that_leaves_one_agent_step(tmp_path):
    """10 = 3 + 3 + 3 + 1: MaskablePPO normalised the last minibatch's one advantage to NaN."""
    with pytest.raises(ConfigError, match="last minibatch of one agent-step") as error:
        train(train_config(*tiny_run(**ROLLOUT_10, agent__batch_size=3)), tmp_path)
    assert error.value.field == "agent.batch_size"


def test_torchrl_refuses_a_minibatch_below_one_sample_of_all_intersections_and_says_its_rounding(tmp_path, capsys):
    """Its minibatches are whole (copy, step) samples of every intersection: agent.batch_size=8 on
    grid_4x4 trained on 16-row minibatches, and 40 on 32, with nothing said."""
    from omegaconf import OmegaConf

    from agents.ppo.run_setup import check_minibatches

    agent = OmegaConf.create({"n_steps": 10, "batch_size": 8})
    with pytest.raises(ConfigError, match="whole samples of all 16 intersections: at least 16") as error:
        check_minibatches(agent, 1, 16, "torchrl")
    assert (error.value.field, error.value.value) == ("agent.batch_size", 8)
    check_minibatches(agent, 1, 16, "sb3")  # SB3's minibatches are of agent-steps
    check_minibatches(OmegaConf.create({"n_steps": 10, "batch_size": 40}), 1, 16, "torchrl")
    assert capsys.readouterr().out == ("agent.batch_size=40 is rounded down to 2 samples of all 16 intersections: "
                                       "32 agent-steps per minibatch\n")
    check_minibatches(OmegaConf.create({"n_steps": 10, "batch_size": 32}), 1, 16, "torchrl")
    assert capsys.readouterr().out == ""  # whole samples: nothing to say


def test_a_resume_with_other_evaluation_episodes_baselines_or_engine_rules_is_refused_naming_the_key(tmp_path):
    first = train(train_config(*tiny_run(**ROLLOUT_10, agent__batch_size=5)), tmp_path / "a")
    assert first["num_timesteps"] == 20
    checkpoint = tmp_path / "a" / "checkpoints" / "last.zip"
    more = {**ROLLOUT_10, "train__total_agent_steps": 40}
    # each would mix its evaluations with the checkpoint's in the history, reductions and best
    for override, field in (("eval.seeds=2", "eval.seeds"), ("eval.demand.scale=0.5", "eval.demand"),
                            ("eval.baselines=[fixed_time]", "eval.baselines"),
                            ("baseline_params.max_pressure.min_green_s=30", "baseline_params.max_pressure"),
                            ("engine.min_green_s=10", "engine.min_green_s")):
        with pytest.raises(CheckpointError) as error:
            train(train_config(*tiny_run(**more, agent__batch_size=5), override, f"resume={checkpoint}"),
                  tmp_path / field)
        assert error.value.field == field


@pytest.mark.parametrize("overrides, field", [
    (["detection.classifiers=[blockage_rule]", "detection.learned.epochs=1"], "detection.learned.epochs"),
    (["detection.probes.gps_noise_m=25"], "detection.probes.gps_noise_m"),  # probes.p = 0: none recorded
    (["detection.interval_s=200"], "detection.interval_s"),  # longer than eval.steps: not one reading
])
def test_detection_options_nothing_reads_are_refused_before_recording(overrides, field, tmp_path):
    cfg = evaluate_config("task=incident_detection", "scenario=grid_1x1", "eval.steps=100", "perturbation=incident",
                          "eval.progress=false", *overrides)
    with pytest.raises(ConfigError) as error:
        evaluate.evaluate_detection(cfg, tmp_path)
    assert error.value.field == field


def test_a_checkpoint_from_before_an_engine_rule_existed_still_resumes():
    from omegaconf import OmegaConf

    from agents.ppo.run_setup import check_evaluation

    cfg = train_config(*tiny_run(**ROLLOUT_10))
    saved = OmegaConf.to_container(cfg, resolve=True)
    del saved["engine"]["yield_gap_s"]  # written before the rule: it ran under today's default
    check_evaluation("old.zip", {"config": saved}, cfg)
    saved["engine"]["min_green_s"] = 10
    with pytest.raises(CheckpointError, match="evaluations ran 10") as error:
        check_evaluation("old.zip", {"config": saved}, cfg)
    assert error.value.field == "engine.min_green_s"
    saved["engine"]["min_green_s"], saved["engine"]["max_vehicles"] = cfg.engine.min_green_s, 7
    check_evaluation("old.zip", {"config": saved}, cfg)  # it sizes the slot table only, as evaluate.py reads it
    # ... and held to that default: its evaluations ran without yielding (a resume with it on mixed the two)
    yielding = train_config(*tiny_run(**ROLLOUT_10), "engine.junction_yielding=true")
    del saved["engine"]["junction_yielding"]
    with pytest.raises(CheckpointError, match="evaluations ran False") as error:
        check_evaluation("old.zip", {"config": saved}, yielding)
    assert (error.value.field, error.value.value) == ("engine.junction_yielding", True)


def test_a_checkpoint_from_before_a_baseline_parameter_existed_still_resumes():
    """max_pressure's sensing came after 29d0314: a checkpoint written before it records max_pressure
    without it, and the resume compared the dicts whole, refusing every such checkpoint with no override
    that could make them equal (Hydra cannot delete a structured config's key)."""
    from omegaconf import OmegaConf

    from agents.ppo.run_setup import check_evaluation

    cfg = train_config(*tiny_run(**ROLLOUT_10))
    saved = OmegaConf.to_container(cfg, resolve=True)
    del saved["baseline_params"]["max_pressure"]["sensing"]  # written before it: ran as today's default 'lane'
    check_evaluation("old.zip", {"config": saved}, cfg)
    approach = train_config(*tiny_run(**ROLLOUT_10), "baseline_params.max_pressure.sensing=approach")
    with pytest.raises(CheckpointError, match="evaluations ran") as error:  # not what the checkpoint's ran
        check_evaluation("old.zip", {"config": saved}, approach)
    assert (error.value.field, error.value.value["sensing"]) == ("baseline_params.max_pressure", "approach")


def test_a_checkpoint_from_before_its_wall_clock_was_kept_goes_on_from_its_last_evaluations():
    """Checkpoints of 29d0314 keep no wall_s: a resume restarted the clock at 0, so the resumed run's
    eval_history read wall_s 0.7 at 40 agent-steps and 0.6 at 80, the curve going back in time."""
    from agents.ppo.run_setup import RunRecord

    history = [{"agent_steps": 0, "wall_s": 0.1}, {"agent_steps": 40, "wall_s": 0.7}]
    assert RunRecord({"eval_history": history}).wall_s() >= 0.7
    assert RunRecord({"eval_history": history, "wall_s": 2.5}).wall_s() >= 2.5  # a newer one's own clock
    assert RunRecord(None).wall_s() < 0.5


@pytest.mark.parametrize("pool, held", [(0, 4), (2, 2)])
def test_a_scale_whose_samples_held_at_once_exceed_memory_is_refused_naming_env_demand_scale(pool, held, monkeypatch,
                                                                                             tmp_path):
    """Each of env.copies=4 copies holds its own sample (or the pool's env.demand_pool): one sample of the scale
    fit in memory, so it passed, and 4 (2) together did not. A machine with room for 1.5 samples."""
    import envs.scenario.demand_size as demand_size
    from envs.scenario import load_scenario
    from envs.scenario.demand_size import engine_table_bytes, trip_table_bytes

    trips = load_scenario("grid_1x1", horizon=600).trips  # the training scenario: cut at the 600 s episode
    width = trips.routes.shape[1]
    memory = int(1.5 * 1000 * trips.num_trips * (trip_table_bytes(width) + engine_table_bytes(width)))
    monkeypatch.setattr(demand_size, "physical_memory", lambda: memory)
    overrides = tiny_run(env__copies=4, env__demand_pool=pool, env__demand__mode="jitter", env__demand__scale=1000.0)
    with pytest.raises(ConfigError, match=f"{held} jitter samples held at once would hold about "
                                          f"{1000 * trips.num_trips:,} trips each") as refused:
        train(train_config(*overrides), tmp_path)
    assert (refused.value.source, refused.value.field, refused.value.value) == ("<config>", "env.demand.scale", 1000.0)
