"""Interrupts held back over a PPO update (agents/ppo/interrupts.py): a SIGINT or SIGTERM inside
`interrupts_deferred` takes effect after the block's last statement, the previous handlers come
back (also when the block raises), and an SB3 run interrupted inside its update saves the whole
update. The TorchRL trainer's case is in tests/test_torchrl_trainer.py."""

from __future__ import annotations

import signal
import threading

import pytest
import torch

from agents.ppo.interrupts import (
    Terminated, interrupts_deferred, is_sweep_command, saved_on_interrupt, sigterm_interrupts,
)
from agents.ppo.policy import load_policy, read_meta
from agents.ppo.sb3_trainer import train
from tests.test_train import tiny_run, train_config


def test_a_sigint_in_the_block_raises_after_its_last_statement():
    before, ran = signal.getsignal(signal.SIGINT), []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            ran.append("the block's last statement")
    assert ran == ["the block's last statement"]
    assert signal.getsignal(signal.SIGINT) is before


def test_the_previous_handlers_come_back_when_the_block_raises():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError), interrupts_deferred():
        raise ValueError("the update failed")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    # a signal recorded before the failure: the failure ends the block as itself, the signal
    # named in its notes (a KeyboardInterrupt would have a trainer save the half-done update)
    with pytest.raises(ValueError, match="the update failed") as caught, interrupts_deferred():
        signal.raise_signal(signal.SIGINT)
        raise ValueError("the update failed")
    assert caught.value.__notes__ == ["SIGINT arrived during the block; this error ends the run instead"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_sigterm_does_what_the_previous_handler_does_after_the_block():
    ran = []
    with pytest.raises(Terminated), sigterm_interrupts():  # train.py's SIGTERM handler
        with interrupts_deferred():
            signal.raise_signal(signal.SIGTERM)
            ran.append("the block's last statement")
    assert ran == ["the block's last statement"]


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def block():
        with interrupts_deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    worker = threading.Thread(target=block)
    worker.start()
    worker.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


def sigint_in_the_first_optimiser_step(monkeypatch, then_fail: bool = False) -> list:
    """Ctrl-C in the middle of the first update (both trainers use Adam); the steps are counted.
    With `then_fail`, the second step raises "the update failed"."""
    step, calls = torch.optim.Adam.step, []

    def interrupted_in_the_first_step(optimizer, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)
        if then_fail and len(calls) == 2:
            raise RuntimeError("the update failed")
        return step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupted_in_the_first_step)
    return calls


def _sb3_config(rollouts: int):
    # rollouts of 2 copies x 10 decisions on grid_1x1, two epochs of two minibatches each
    return train_config(*tiny_run(env__copies=2, agent__n_steps=10, agent__batch_size=10, agent__n_epochs=2,
                                  train__total_agent_steps=20 * rollouts, train__eval_every=0,
                                  train__checkpoint_every=0, eval__seeds=1, eval__steps=100))


def test_an_sb3_interrupt_inside_the_update_saves_the_whole_update(tmp_path, monkeypatch, capsys):
    train(_sb3_config(1), tmp_path / "whole")  # the same seed, uninterrupted: last.zip after the update
    calls = sigint_in_the_first_optimiser_step(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(_sb3_config(2), tmp_path / "cut")  # it takes effect as the second rollout starts
    assert len(calls) == 4  # every minibatch of both epochs of the first update, then no more
    last = tmp_path / "cut" / "checkpoints" / "last.zip"
    assert read_meta(last)["num_timesteps"] == 20  # the rollout counts: it was learnt from
    assert f"interrupted at 20 agent-steps; resume with resume={last}" in capsys.readouterr().out
    cut, _ = load_policy(str(last), device="cpu")
    whole, _ = load_policy(str(tmp_path / "whole" / "checkpoints" / "last.zip"), device="cpu")
    for name, value in whole.policy.state_dict().items():
        assert torch.equal(cut.policy.state_dict()[name], value), name


def test_an_sb3_update_that_fails_after_an_interrupt_ends_on_its_error_and_saves_nothing(tmp_path, monkeypatch):
    sigint_in_the_first_optimiser_step(monkeypatch, then_fail=True)
    with pytest.raises(RuntimeError, match="the update failed") as caught:
        train(_sb3_config(2), tmp_path)
    assert caught.value.__notes__ == ["SIGINT arrived during the block; this error ends the run instead"]
    assert not (tmp_path / "checkpoints" / "last.zip").exists()  # no half-done update saved as last


def test_an_sb3_interrupt_inside_a_rollout_saves_the_steps_learnt_from(tmp_path, monkeypatch, capsys):
    import agents.ppo.sb3_callback as sb3_callback

    on_step, calls = sb3_callback.TrainingCallback._on_step, []

    def interrupted_in_the_second_rollout(callback):
        calls.append(1)
        if len(calls) == 15:  # rollouts of 10 steps (2 copies): the 5th step of the second
            raise KeyboardInterrupt
        return on_step(callback)

    monkeypatch.setattr(sb3_callback.TrainingCallback, "_on_step", interrupted_in_the_second_rollout)
    with pytest.raises(KeyboardInterrupt):
        train(_sb3_config(3), tmp_path)
    last = tmp_path / "checkpoints" / "last.zip"
    assert read_meta(last)["num_timesteps"] == 20  # the first rollout; not the 10 agent-steps of the cut one
    assert f"interrupted at 20 agent-steps; resume with resume={last}" in capsys.readouterr().out


def test_a_sigterm_before_training_began_says_nothing_was_saved_and_exits_143(tmp_path):
    """It exited 143 without a word once train.py's first status line was out (before the baselines'
    evaluation): no checkpoint, and nothing said why. The baselines' evaluation of 8 seeds takes seconds
    after that line on grid_1x1, so the signal lands in it."""
    import os
    import subprocess
    import sys

    from agents.ppo.interrupts import STOPPED_BEFORE_TRAINING
    from tests.conftest import REPO_ROOT

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    started = subprocess.Popen([sys.executable, "train.py", "scenario=grid_1x1", "eval.seeds=8", "train.progress=false",
                                f"hydra.run.dir={run}"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = started.stdout.readline()
        assert first.startswith("train.total_agent_steps="), first  # the rounding: said before the baselines run
        started.send_signal(signal.SIGTERM)
        out, err = started.communicate(timeout=120)
    finally:
        started.kill()
    assert started.returncode == 143, err[-2000:]
    assert out == STOPPED_BEFORE_TRAINING + "\n" and err == ""
    # no tb/ either (made once the baselines have run): the folder is not an earlier run's to the next train.py
    assert not (run / "checkpoints").exists() and not (run / "tb").exists()
    assert STOPPED_BEFORE_TRAINING in (run / "train.log").read_text()  # with the other status lines


def test_an_interrupt_is_told_apart_by_whether_the_trainer_saved():
    from agents.ppo.interrupts import saved_on_interrupt, training_began

    saved = []
    with pytest.raises(Terminated) as caught, saved_on_interrupt(lambda: saved.append("last")):
        raise Terminated()
    assert saved == ["last"] and training_began(caught.value)
    assert not training_began(Terminated()) and not training_began(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt) as caught, saved_on_interrupt(lambda: signal.raise_signal(signal.SIGINT)):
        raise Terminated()  # a second interrupt while the trainer saves: training had begun
    assert training_began(caught.value)


def test_a_second_sigterm_while_last_is_saved_does_not_cut_the_save():
    # a SIGTERM to a sweep's process group reaches each worker twice: from the kernel and forwarded by
    # the sweep's own process (forward_sigterm_to_workers); the second arrives while the job saves `last`
    saved = []

    def save() -> None:
        signal.raise_signal(signal.SIGTERM)  # the forwarded copy, mid-save
        saved.append("last")

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with sigterm_interrupts(), saved_on_interrupt(save):
            signal.raise_signal(signal.SIGTERM)
    assert saved == ["last"]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("argv, sweep", [
    (["-m", "seed=0,1"], True), (["--multirun", "seed=0,1"], True), (["hydra.mode=MULTIRUN", "seed=0,1"], True),
    (["seed=0"], False), (["hydra.mode=RUN"], False),
])
def test_a_sweep_is_told_by_its_command_line_however_multirun_is_asked_for(argv, sweep):
    assert is_sweep_command(argv) is sweep
