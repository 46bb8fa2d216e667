"""The deployment benchmarks (benchmarks/controller_latency.py, service_decision.py,
service_soak.py) time the policy, not its fallback: the messages they replay carry every
reading a policy of today's defaults takes (the approach counts beside the lane totals)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from controller_latency import policy_checkpoint, recorded_messages  # noqa: E402

from agents.deploy.export import export_policy  # noqa: E402
from agents.deploy.runtime import PolicyRuntime  # noqa: E402
from envs.scenario import load_scenario  # noqa: E402


def test_recorded_messages_are_answered_by_a_default_policy(tmp_path):
    scenario = load_scenario("grid_4x4")  # generated: no dataset
    message = recorded_messages(scenario, 1)[0]
    onnx_path, _ = export_policy(policy_checkpoint(scenario, "ppo_shared", tmp_path / "policy.zip"), tmp_path,
                                 scenario=scenario)
    reply = PolicyRuntime(onnx_path, deadline_ms=1e6).decide(message)
    faults = {inter_id: c["faults"] for inter_id, c in reply["commands"].items() if c["source"] != "policy"}
    assert not faults, faults
    assert reply["faults"] == []
