"""The RL environments over the batched engine: the batched core (`signal_env`), the
observation/reward registry (`features`), the Gymnasium, PettingZoo, SB3 and TorchRL adapters,
and rendering.
May import envs.scenario, envs.engine, envs.incidents and envs.evaluation; never agents."""
