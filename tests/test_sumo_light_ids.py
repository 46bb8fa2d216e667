"""A SUMO light's own id and program phases reach the export's metadata: a cabinet (or a TraCI
bridge) knows its light by the tlLogic id, which SUMO need not give the junction's id (RESCO's
Ingolstadt lights `gneJ143` ... control junctions `cluster_...`), and reports SUMO's phase
index, which counts the yellows the import folds into the next green."""

from __future__ import annotations

import json

from agents.deploy.export import export_policy
from agents.deploy.runtime import PolicyRuntime
from envs.scenario import load_scenario, scenario_from_sumo
from tests.deploy_fixtures import untrained
from tests.sumo_fixtures import NET, write_tiny

# the tiny junction C run by a light whose id is not the junction's
RENAMED_LIGHT = NET.replace('tlLogic id="C"', 'tlLogic id="TL1"').replace('tl="C"', 'tl="TL1"')


def test_import_records_each_junctions_light_id_and_program_phases(tmp_path):
    scenario = scenario_from_sumo(write_tiny(tmp_path / "tiny", net=RENAMED_LIGHT))
    # 'Ggr' (0) with the cycle's last transition 'rry' (3) folded into it; 'yyr' (1) into 'rrG' (2)
    assert scenario.info["sumo_lights"] == {"C": {"tls_id": "TL1", "program_phases": [[3, 0], [1, 2]],
                                                  "transition_s": [2.0, 3.0]}}


def test_export_metadata_names_the_sumo_light_and_its_program_phases(tmp_path):
    scenario = scenario_from_sumo(write_tiny(tmp_path / "tiny", net=RENAMED_LIGHT))
    checkpoint = untrained(scenario, "shared", tmp_path / "p.zip")
    onnx_path, json_path = export_policy(checkpoint, tmp_path / "out", scenario=scenario)
    (entry,) = json.loads(json_path.read_text())["intersections"]
    assert entry["id"] == "C"
    assert entry["sumo"] == {"tls_id": "TL1", "program_phases": [[3, 0], [1, 2]], "transition_s": [2.0, 3.0]}
    assert len(entry["phases"]) == len(entry["sumo"]["program_phases"])
    # 'Ggr': the straight movement has priority, the left turn (SUMO's lowercase 'g') yields
    assert [p["green_movements"] for p in entry["phases"]] == [[0, 1], [2]]
    assert [p["permissive_movements"] for p in entry["phases"]] == [[1], []]
    PolicyRuntime(onnx_path)  # the checksum covers the new entry as written


def test_ingolstadt7_lights_named_by_their_tlLogic_ids(datasets_dir):
    lights = load_scenario("resco_ingolstadt7", data_dir=datasets_dir).info["sumo_lights"]
    signalised = {j: v["tls_id"] for j, v in lights.items() if v["tls_id"] is not None}
    assert sorted(signalised.values()) == sorted(
        ["32564122", "cluster_1757124350_1757124352", "gneJ143", "gneJ207", "gneJ210", "gneJ260",
         "cluster_306484187_cluster_1200363791_1200363826_1200363834_1200363898_1200363927_1200363938_"
         "1200363947_1200364074_1200364103_1507566554_1507566556_255882157_306484190"])
    assert signalised["32564122"] == "32564122"
    assert lights["32564122"]["program_phases"] == [[3, 0], [1, 2]]  # 42 s G, 3 s y, 42 s G, 3 s y
    assert lights["32564122"]["transition_s"] == [3.0, 3.0]
    assert lights["1195228772"] == {"tls_id": None, "program_phases": [[]], "transition_s": [0.0]}  # priority


def test_the_fallback_plan_runs_the_sumo_programs_greens(tmp_path):
    """The roadnet phase's time holds the SUMO transitions folded into it (32 s = the 2 s 'rry' +
    30 s 'Ggr'), and the runtime adds its own clearance before each green of the plan: the plan's
    greens are the program's (30 s, 20 s), not 32 s and 23 s, which ran a cycle of 65 s for
    SUMO's 55 s (ingolstadt7's 90 s cycles ran 100 and 105 s)."""
    scenario = scenario_from_sumo(write_tiny(tmp_path / "tiny"))
    checkpoint = untrained(scenario, "shared", tmp_path / "p.zip")
    _, json_path = export_policy(checkpoint, tmp_path / "out", scenario=scenario)
    (entry,) = json.loads(json_path.read_text())["intersections"]
    assert [p["plan_duration_s"] for p in entry["phases"]] == [32.0, 23.0]  # the roadnet's, as before
    assert entry["fallback_plan"] == [{"phase": 0, "green_s": 30.0}, {"phase": 1, "green_s": 20.0}]
