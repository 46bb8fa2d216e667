"""The runtime's messages for a policy trained on a SUMO network (docs/deployment.md, "Protocol"):
an intersection keyed by its SUMO light id (a TraCI bridge's or a cabinet's name for it) or by
gridlight's id (the junction's), the reply keyed as the message keyed it; an unsignalised junction
(one phase, nothing to decide) needs no readings. On a hand-written net (tests/sumo_fixtures.py:
lights TL1 at junction C and TL2 at E, N unsignalised) and on resco_ingolstadt7."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest

from agents.deploy.export import export_policy
from agents.deploy.runtime import PolicyRuntime
from agents.deploy.service import handle_line, listen, reply_line, serve_tcp
from envs.scenario import load_scenario, scenario_from_sumo
from tests.deploy_fixtures import readings_message, untrained, write_sealed
from tests.sumo_fixtures import two_lights_net, write_tiny

_EXPORTS: dict = {}


def _export(tmp_path_factory, kind: str = "shared", **lights):
    """An untrained `kind` policy (shared, independent: SB3; mappo: TorchRL) on `two_lights_net(**lights)`,
    exported: ``(onnx, json)``."""
    key = (kind, tuple(sorted(lights.items())))
    if key not in _EXPORTS:
        root = tmp_path_factory.mktemp(f"sumo_keys_{kind}")
        scenario = scenario_from_sumo(write_tiny(root / "net", net=two_lights_net(**lights)))
        checkpoint = _mappo(scenario, root / "p.pt") if kind == "mappo" else untrained(scenario, kind, root / "p.zip")
        _EXPORTS[key] = export_policy(checkpoint, root / "out", scenario=scenario)
    return _EXPORTS[key]


def _mappo(scenario, path):
    """A freshly initialised MAPPO (TorchRL: shared actor, centralised critic) saved as a trainer checkpoint."""
    import torch
    from types import SimpleNamespace

    from agents.ppo.torchrl_policy import build_networks, network_spec, save_torchrl_checkpoint
    from envs.rl.sb3_env import IntersectionVecEnv
    from tests.deploy_fixtures import OBSERVATIONS

    core = IntersectionVecEnv(copies=1, scenario=scenario, episode_s=3600, observations=OBSERVATIONS).core
    agent = SimpleNamespace(policy="shared", net_arch=[16, 16], activation="tanh", ortho_init=False)
    spec = network_spec(agent, core.layout.num_intersections, core.obs_size, core.max_actions, True)
    torch.manual_seed(1)
    actor, critic = build_networks(spec)
    meta = {"env": core.describe(), "networks": spec, "config": {"agent": {"name": "mappo"}}, "num_timesteps": 0}
    return save_torchrl_checkpoint(path, actor=actor, critic=critic, optimizer=None, num_timesteps=0, meta=meta)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return _export(tmp_path_factory)


def _readings(runtime, t: float, keys: dict, rng=None) -> dict:
    """`readings_message` of the intersections `keys` names (gridlight id -> the key to send it by);
    with `rng`, lane readings drawn within each lane's capacity."""
    full = readings_message(runtime, t)["intersections"]
    out = {}
    for inter_id, key in keys.items():
        entry = dict(full[inter_id])
        if rng is not None:
            k = runtime.layout.index[inter_id]
            lanes = int(runtime.layout.num_lanes[k])
            for name in runtime.lane_readings:
                top = runtime.layout.lane_max[k, :lanes]
                entry[name] = [float(v) for v in np.floor(rng.uniform(0, 1, lanes) * top / (2 if "halting" in name
                                                                                            else 1))]
            entry["lane_halting"] = [min(h, c) for h, c in zip(entry["lane_halting"], entry["lane_count"])]
        out[key] = entry
    return {"t": t, "intersections": out}


LIGHTS = {"C": "TL1", "E": "TL2"}


def test_the_metadata_marks_the_lights_and_the_unsignalised_junction(exported):
    meta = json.loads(exported[1].read_text())
    assert {e["id"]: e["sumo"]["tls_id"] for e in meta["intersections"]} == {"C": "TL1", "E": "TL2", "N": None}


def test_lights_keyed_by_their_sumo_light_ids_are_decided_and_answered_by_them(exported):
    by_light, by_junction = PolicyRuntime(exported[0]), PolicyRuntime(exported[0])
    reply = by_light.decide(_readings(by_light, 0.0, LIGHTS))
    same = by_junction.decide(_readings(by_junction, 0.0, {"C": "C", "E": "E"}))
    assert list(reply["commands"]) == ["TL1", "TL2"]
    assert reply["faults"] == []
    assert [c["source"] for c in reply["commands"].values()] == ["policy", "policy"]
    assert list(reply["commands"].values()) == list(same["commands"].values())


def test_an_unsignalised_junction_left_out_is_no_fault_and_not_in_the_reply(exported):
    runtime = PolicyRuntime(exported[0])
    reply = runtime.decide(_readings(runtime, 0.0, {"C": "C", "E": "E"}))
    assert list(reply["commands"]) == ["C", "E"]
    assert all(c["faults"] == [] and c["source"] == "policy" for c in reply["commands"].values())
    assert "readings" not in runtime.fault_counts


def test_an_unsignalised_junction_given_is_answered_as_before(exported):
    runtime = PolicyRuntime(exported[0])
    reply = runtime.decide(readings_message(runtime, 0.0))
    assert list(reply["commands"]) == ["C", "E", "N"]
    assert reply["commands"]["N"]["source"] == "policy" and reply["commands"]["N"]["phase"] == 0
    bad = readings_message(runtime, 10.0)
    bad["intersections"]["N"]["lane_count"][0] = -1
    assert reply_faults(runtime.decide(bad), "N")[0].startswith("lane_count: negative")


def reply_faults(reply: dict, key: str) -> list[str]:
    return reply["commands"][key]["faults"]


def test_a_light_left_out_is_a_fault_keyed_as_the_message_keys_lights(exported):
    runtime = PolicyRuntime(exported[0])
    reply = runtime.decide(_readings(runtime, 0.0, {"C": "TL1"}))
    assert list(reply["commands"]) == ["TL1", "TL2"]  # the message speaks SUMO light ids
    assert reply_faults(reply, "TL2") == ["readings missing"]
    reply = runtime.decide(_readings(runtime, 10.0, {"C": "C"}))
    assert list(reply["commands"]) == ["C", "E"]
    assert reply_faults(reply, "E") == ["readings missing"]
    assert reply_faults(runtime.decide({"t": 20.0, "intersections": {}}), "C") == ["readings missing"]


def test_a_message_may_mix_light_and_junction_ids_for_different_intersections(exported):
    runtime = PolicyRuntime(exported[0])
    reply = runtime.decide(_readings(runtime, 0.0, {"C": "TL1", "E": "E", "N": "N"}))
    assert list(reply["commands"]) == ["TL1", "E", "N"]
    assert all(c["faults"] == [] for c in reply["commands"].values())


def test_an_intersection_keyed_twice_is_a_fault_answered_under_both_keys(exported):
    runtime = PolicyRuntime(exported[0])
    message = _readings(runtime, 0.0, {"C": "C", "E": "TL2"})
    message["intersections"]["TL1"] = message["intersections"]["C"]
    reply = runtime.decide(message)
    assert list(reply["commands"]) == ["C", "TL1", "TL2"]
    for key in ("C", "TL1"):
        assert reply["commands"][key]["source"] == "fallback"
        assert reply_faults(reply, key) == ["readings given twice, keyed 'C' and 'TL1' (SUMO light id): "
                                            "key an intersection once"]


def test_unknown_ids_are_still_named_and_ignored(exported):
    runtime = PolicyRuntime(exported[0])
    message = _readings(runtime, 0.0, LIGHTS)
    message["intersections"]["TL9"] = message["intersections"]["TL1"]
    reply = runtime.decide(message)
    assert reply["faults"] == ["unknown intersection ids ignored: ['TL9']"]
    assert list(reply["commands"]) == ["TL1", "TL2"]


def test_a_light_id_that_is_another_junctions_id_is_refused_as_a_key(tmp_path_factory):
    onnx_path, _ = _export(tmp_path_factory, light_c="N")  # C's light is 'N', N the unsignalised junction
    runtime = PolicyRuntime(onnx_path)
    message = _readings(runtime, 0.0, {"C": "N", "E": "TL2"})
    reply = runtime.decide(message)
    assert reply["faults"] == ["ambiguous intersection ids ignored: 'N' is the SUMO light id of junction 'C' and "
                               "the id of junction 'N'; key junction 'C' by 'C'; junction 'N' needs no readings"]
    assert list(reply["commands"]) == ["C", "TL2"]
    assert reply_faults(reply, "C") == ["readings missing"]
    good = runtime.decide(_readings(runtime, 10.0, {"C": "C", "E": "TL2"}))
    assert good["faults"] == [] and list(good["commands"]) == ["C", "TL2"]


def test_a_light_left_out_is_never_answered_under_a_key_that_names_another_intersection(tmp_path_factory):
    """C's light is 'E', E's light 'TL2': a message keying C by its junction id leaves E out, and E's
    fallback answer went under 'E' — which a client naming lights reads as C's light. It goes under
    E's light id, the key that names E alone."""
    runtime = PolicyRuntime(_export(tmp_path_factory, light_c="E")[0])
    reply = runtime.decide(_readings(runtime, 0.0, {"C": "C"}))
    assert list(reply["commands"]) == ["C", "TL2"]
    assert reply_faults(reply, "TL2") == ["readings missing"]


def test_a_light_id_shared_by_two_junctions_is_refused_as_a_key(tmp_path_factory, tmp_path):
    onnx_path, json_path = _export(tmp_path_factory)
    meta = json.loads(json_path.read_text())
    meta["intersections"][1]["sumo"]["tls_id"] = "TL1"  # a joined light: one tlLogic for C and E
    (tmp_path / "m.onnx").write_bytes(onnx_path.read_bytes())
    write_sealed(tmp_path / "m.json", meta)
    runtime = PolicyRuntime(tmp_path / "m.onnx")
    reply = runtime.decide(_readings(runtime, 0.0, {"C": "TL1"}))
    assert reply["faults"] == ["ambiguous intersection ids ignored: 'TL1' is the SUMO light id of junction 'C' and "
                               "the SUMO light id of junction 'E'; key junction 'C' by 'C'; key junction 'E' by 'E'"]
    assert list(reply["commands"]) == ["C", "E"]


@pytest.mark.parametrize("kind", ["shared", "independent", "mappo"])
def test_a_lights_decision_reads_no_other_intersection(tmp_path_factory, kind):
    """The claim that lets a message leave the unsignalised junctions out: every exported actor
    (ppo_shared and ppo_independent by SB3, mappo's by TorchRL) decides each intersection from its
    own row alone, so the lights decide the same with N's readings as without."""
    onnx_path, _ = _export(tmp_path_factory, kind)
    with_n, without = PolicyRuntime(onnx_path), PolicyRuntime(onnx_path)
    rng = np.random.default_rng(3)
    phases = set()
    for step in range(40):
        t = 5.0 * step
        message = _readings(with_n, t, {"C": "C", "E": "E", "N": "N"}, rng)
        for k, entry in enumerate(message["intersections"].values()):  # signals that did what they were told
            if step:
                entry["phase"] = int(with_n.signals.cur_phase[k])
                entry["time_in_phase"] = float(t - with_n.signals.switched_at[k])
        lights_only = {"t": t, "intersections": {key: message["intersections"][i] for i, key in LIGHTS.items()}}
        a, b = with_n.decide(message), without.decide(lights_only)
        assert [a["commands"][k] for k in "CE"] == [b["commands"][k] for k in LIGHTS.values()], step
        assert a["commands"]["N"]["faults"] == [] and b["faults"] == []
        phases.add(tuple(with_n.signals.cur_phase[:2].tolist()))
    assert len(phases) > 1  # the policy did switch: the comparison saw decisions, not one phase held


def _keyings(runtime, t: float) -> list[dict]:
    """Messages keyed each way: lights by light id, by junction id, mixed with N, left out, twice, unknown."""
    twice = _readings(runtime, t, {"C": "C", "E": "TL2"})
    twice["intersections"]["TL1"] = twice["intersections"]["C"]
    unknown = _readings(runtime, t, LIGHTS)
    unknown["intersections"]["X"] = unknown["intersections"]["TL1"]
    return [_readings(runtime, t, LIGHTS), _readings(runtime, t, {"C": "C", "E": "E"}),
            _readings(runtime, t, {"C": "TL1", "E": "E", "N": "N"}), _readings(runtime, t, {"E": "TL2"}),
            twice, unknown]


def test_the_fast_path_takes_each_intersection_keyed_once_and_answers_as_the_slow_path(exported):
    fast, slow = PolicyRuntime(exported[0]), PolicyRuntime(exported[0])
    shapes = [fast.whole_message.decode(message) is not None for message in _keyings(fast, 0.0)]
    assert shapes == [True, True, True, False, False, True]  # left out and keyed twice: named one by one
    for t in (0.0, 5.0, 10.0, 40.0):
        for message in _keyings(fast, t):
            line = json.dumps(message)
            assert json.loads(reply_line(fast, line.encode(), 1)) == handle_line(slow, line, 1)


def test_decoding_workers_answer_light_ids_as_the_service_without_them(exported):
    pytest.importorskip("orjson")
    reference = PolicyRuntime(exported[0])
    lines = [json.dumps(message).encode() + b"\n" for t in (0.0, 5.0, 10.0) for message in _keyings(reference, t)]
    expected = [json.dumps(handle_line(reference, line, k)) for k, line in enumerate(lines, 1)]
    server = listen(PolicyRuntime(exported[0]), "127.0.0.1", 0, decoders=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=30) as conn:
            conn.sendall(b"".join(lines))
            conn.shutdown(socket.SHUT_WR)
            replies = conn.makefile("rb").read().decode().splitlines()
    finally:
        server.shutdown()
    assert [json.loads(r) for r in replies] == [json.loads(e) for e in expected]
    assert list(json.loads(replies[0])["commands"]) == ["TL1", "TL2"]


def test_the_tcp_service_answers_light_ids(exported):
    runtime = PolicyRuntime(exported[0])
    ready, servers = threading.Event(), []
    thread = threading.Thread(target=serve_tcp, args=(runtime, "127.0.0.1", 0,
                                                      lambda s: (servers.append(s), ready.set())), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        with socket.create_connection(servers[0].server_address[:2], timeout=10) as client:
            client.sendall((json.dumps(_readings(runtime, 0.0, LIGHTS)) + "\n").encode())
            reply = json.loads(client.makefile("rb").readline())
    finally:
        servers[0].shutdown()
    assert list(reply["commands"]) == ["TL1", "TL2"] and reply["faults"] == []


def test_ingolstadt7s_seven_lights_keyed_by_their_light_ids(datasets_dir, tmp_path):
    scenario = load_scenario("resco_ingolstadt7", data_dir=datasets_dir)
    onnx_path, json_path = export_policy(untrained(scenario, "shared", tmp_path / "p.zip"), tmp_path / "out",
                                         scenario=scenario)
    meta = json.loads(json_path.read_text())
    lights = {e["id"]: e["sumo"]["tls_id"] for e in meta["intersections"] if e["sumo"]["tls_id"] is not None}
    assert len(meta["intersections"]) == 43 and len(lights) == 7
    assert sum(tls != inter_id for inter_id, tls in lights.items()) == 4
    runtime = PolicyRuntime(onnx_path)
    reply = runtime.decide(_readings(runtime, 0.0, lights))
    assert sorted(reply["commands"]) == sorted(lights.values())
    assert reply["faults"] == [] and all(c["faults"] == [] for c in reply["commands"].values())
    left_out = dict(list(lights.items())[1:])
    first_id, first_light = next(iter(lights.items()))
    reply = runtime.decide(_readings(runtime, 10.0, left_out))
    assert sorted(reply["commands"]) == sorted(lights.values())
    assert reply_faults(reply, first_light) == ["readings missing"]
    assert "readings" in runtime.fault_counts and runtime.fault_counts["readings"] == 1


def test_an_intersection_left_with_no_unambiguous_key_is_named_at_load(tmp_path_factory, tmp_path, caplog):
    onnx_path, json_path = _export(tmp_path_factory)
    meta = json.loads(json_path.read_text())
    meta["intersections"][0]["sumo"]["tls_id"] = "E"  # C run by light 'E', E by light 'C': every key ambiguous
    meta["intersections"][1]["sumo"]["tls_id"] = "C"
    (tmp_path / "m.onnx").write_bytes(onnx_path.read_bytes())
    write_sealed(tmp_path / "m.json", meta)
    with caplog.at_level("WARNING", logger="gridlight.runtime"):
        runtime = PolicyRuntime(tmp_path / "m.onnx")
    assert [r.getMessage() for r in caplog.records if r.name == "gridlight.runtime" and r.levelname == "WARNING"] == [
        "intersection 'C' cannot be given readings: 'C' is the id of junction 'C' and the SUMO light id of junction "
        "'E'; junction 'C' has no other key; junction 'E' has no other key",
        "intersection 'E' cannot be given readings: 'E' is the SUMO light id of junction 'C' and the id of junction "
        "'E'; junction 'C' has no other key; junction 'E' has no other key",
    ]
    reply = runtime.decide(_readings(runtime, 0.0, {"C": "C"}))
    assert reply["faults"][0].startswith("ambiguous intersection ids ignored: 'C' is")
    assert reply_faults(reply, "C") == ["readings missing"]


def test_the_fast_path_takes_the_lights_alone_where_each_light_is_named_as_its_junction(tmp_path_factory):
    # resco_cologne8's eight lights are named as their junctions, beside 58 unsignalised junctions: a message of the
    # lights alone went the slow way every time (its keys were taken as every intersection's id, N's included)
    onnx_path, _ = _export(tmp_path_factory, light_c="C", light_e="E")
    fast, slow = PolicyRuntime(onnx_path), PolicyRuntime(onnx_path)
    for t in (0.0, 5.0, 10.0):
        message = _readings(fast, t, {"C": "C", "E": "E"})
        assert fast.whole_message.decode(message) is not None
        line = json.dumps(message)
        reply = handle_line(slow, line, 1)
        assert json.loads(reply_line(fast, line.encode(), 1)) == reply
        assert list(reply["commands"]) == ["C", "E"] and reply["faults"] == []


def test_an_unsignalised_junction_left_out_after_a_fault_is_not_logged_back_on_the_policy(exported, caplog):
    # it runs its one phase by its fallback plan, answered to no one: the log said "N back on the policy"
    runtime = PolicyRuntime(exported[0])
    bad = readings_message(runtime, 0.0)
    bad["intersections"]["N"]["lane_count"][0] = -1
    runtime.decide(bad)
    with caplog.at_level("INFO", logger="gridlight.runtime"):
        runtime.decide(_readings(runtime, 5.0, LIGHTS))
    cleared = [r.getMessage() for r in caplog.records
               if r.name == "gridlight.runtime" and r.getMessage().startswith("N ")]
    assert cleared == ["N left out of the message: needs no readings (lane_count cleared)"]


@pytest.mark.parametrize("sumo, field, value", [
    ({"tls_id": 5}, "intersections[0].sumo.tls_id", 5),  # was no key at all: C needed readings under 'C' alone
    ({"tls_id": ""}, "intersections[0].sumo.tls_id", ""),
    ({"program_phases": [[0], [2]]}, "intersections[0].sumo.tls_id", None),  # missing: read as no light
    ("TL1", "intersections[0].sumo", "TL1"),
])
def test_a_sumo_entry_the_keys_cannot_read_is_refused_at_load(tmp_path_factory, tmp_path, sumo, field, value):
    # the runtime keys a light by its sumo.tls_id and lets a junction whose tls_id is null be left out
    from envs.errors import ModelError

    onnx_path, json_path = _export(tmp_path_factory)
    meta = json.loads(json_path.read_text())
    meta["intersections"][0]["sumo"] = sumo
    (tmp_path / "m.onnx").write_bytes(onnx_path.read_bytes())
    write_sealed(tmp_path / "m.json", meta)
    with pytest.raises(ModelError) as error:
        PolicyRuntime(tmp_path / "m.onnx")
    assert (error.value.field, error.value.value) == (field, value)
    assert str(tmp_path / "m.json") in str(error.value) and "'C'" in str(error.value)
