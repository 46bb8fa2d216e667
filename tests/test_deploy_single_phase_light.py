"""A SUMO light whose program has one green phase (one phase, one action: nothing to decide) still
needs its readings, unlike an unsignalised junction (docs/deployment.md, "SUMO networks: light ids
and unsignalised junctions"): it is a cabinet the city's bridge runs and expects a command for, and a
light left out of a message is how a silent cabinet shows. On tests/sumo_fixtures.py's two-lights net
with TL2 (junction E) running one phase."""

from __future__ import annotations

import json

import pytest

from agents.deploy.export import export_policy
from agents.deploy.runtime import PolicyRuntime
from envs.scenario import scenario_from_sumo
from tests.deploy_fixtures import readings_message, untrained
from tests.sumo_fixtures import two_lights_net, write_tiny

_TL2_PROGRAM = ('<phase duration="25" state="Gr"/>\n    <phase duration="3" state="yr"/>\n'
                '    <phase duration="25" state="rG"/>\n    <phase duration="3" state="ry"/>')


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("single_phase_light")
    net = two_lights_net()
    assert _TL2_PROGRAM in net
    net = net.replace(_TL2_PROGRAM, '<phase duration="60" state="GG"/>')
    scenario = scenario_from_sumo(write_tiny(root / "net", net=net))
    return export_policy(untrained(scenario, "shared", root / "p.zip"), root / "out", scenario=scenario)


def test_the_light_has_one_phase_one_action_and_its_sumo_light(exported):
    meta = {e["id"]: e for e in json.loads(exported[1].read_text())["intersections"]}
    assert (len(meta["E"]["phases"]), len(meta["E"]["actions"]), meta["E"]["sumo"]["tls_id"]) == (1, 1, "TL2")
    assert (len(meta["N"]["phases"]), len(meta["N"]["actions"]), meta["N"]["sumo"]["tls_id"]) == (1, 1, None)


def test_left_out_it_is_answered_by_its_fallback_with_readings_missing(exported):
    runtime = PolicyRuntime(exported[0])
    message = readings_message(runtime, 0.0)
    del message["intersections"]["E"], message["intersections"]["N"]
    reply = runtime.decide(message)
    assert list(reply["commands"]) == ["C", "E"]  # the unsignalised N left out: not answered
    assert reply["commands"]["E"]["faults"] == ["readings missing"]
    assert reply["commands"]["E"]["source"] == "fallback" and reply["commands"]["E"]["phase"] == 0
    assert reply["commands"]["C"]["faults"] == []


def test_given_its_readings_are_checked_as_any_lights(exported):
    runtime = PolicyRuntime(exported[0])
    reply = runtime.decide(readings_message(runtime, 0.0))
    assert (reply["commands"]["E"]["source"], reply["commands"]["E"]["phase"], reply["commands"]["E"]["faults"]) == (
        "policy", 0, [])
    bad = readings_message(runtime, 10.0)
    bad["intersections"]["E"]["lane_count"][0] = -1
    assert runtime.decide(bad)["commands"]["E"]["faults"][0].startswith("lane_count: negative")
