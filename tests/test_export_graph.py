"""The exported graph's observation for a policy trained without observation normalisation
(``normalise=False``): raw lane counts and raw seconds in phase go into the policy network, and
the ONNX actions equal the torch policy's."""

from __future__ import annotations

import json

import numpy as np

from agents.deploy.export import export_policy
from tests.deploy_fixtures import recorded_decisions, session_actions, untrained
from tests.scenarios import uneven_grid


def test_a_policy_trained_on_raw_features_exports_without_normalisation(tmp_path):
    scenario = uneven_grid(horizon=1800)
    checkpoint = untrained(scenario, "shared", tmp_path / "raw.zip", normalise=False)
    onnx_path, meta_path = export_policy(checkpoint, tmp_path / "out", scenario=scenario, max_green_s=20.0)
    meta = json.loads(meta_path.read_text())
    assert meta["observation"]["normalise"] is False and meta["observation"]["normalisation"] == {}
    rows = recorded_decisions(checkpoint, scenario, 8, seconds=450)
    assert len(np.unique(rows["action"])) >= 2 and rows["time_in_phase"].max() > 0
    assert np.array_equal(session_actions(onnx_path, rows), rows["action"])
