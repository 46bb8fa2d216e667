"""Handing a trained policy to a real signal cabinet: ONNX export with metadata (`export`), the
torch-free `runtime` that runs it, its JSON-lines `service` and its simulator driver (`simulated`).
The runtime and the service import numpy, onnxruntime and envs.errors only (no torch, no
Gymnasium); `export` and `simulated` may import envs and agents.ppo."""
