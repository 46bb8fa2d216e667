"""Handing a trained policy to a real signal controller: ONNX export with metadata, the
torch-free runtime that runs it (numpy + onnxruntime), its line service and its simulator driver.

`runtime` imports no torch and nothing from envs; `export` and `simulated` may import envs and
agents.ppo.
"""
