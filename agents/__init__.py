"""Controllers and what surrounds them, one subpackage per job.

classical/ the rule-based signal controllers · ppo/ learned policies: config, training,
evaluation during training · deploy/ ONNX export and the torch-free runtime · incidents/
incident detection. Nothing is imported here: each subpackage loads only what it needs.
"""
