"""Learned signal policies with PPO: the config schema, the SB3 trainer, evaluation during
training, per-intersection policies and checkpoints.

May import envs and agents.classical; never agents.deploy.
"""
