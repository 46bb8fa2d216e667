"""Learned signal policies with PPO: the config schema, the SB3 trainer and the on-device
TorchRL trainer, evaluation during training, per-intersection policies and checkpoints.

May import envs and agents.classical; never agents.deploy.
"""
