"""Controllers and what surrounds them, one subpackage per job: classical/ (rule-based signal
controllers), ppo/ (learned policies: config, trainers, evaluation during training), deploy/
(ONNX export and the torch-free runtime), incidents/ (incident classifiers).
Nothing is imported here: each subpackage loads only what it needs."""
