"""A SUMO net the CityFlow roadnet checks refuse once imported is refused under the net's own element
(``tlLogic[id=C]``, ``edge[id=CE]``, ``connection[3]``, ``junction[id=N]``), not under the path of the
roadnet the importer builds in between (``intersections[1].trafficLight.lightphases``), which no user
wrote and none could find in the .net.xml."""

from __future__ import annotations

import re

import pytest

from envs.errors import ScenarioError
from envs.scenario.sumo import import_sumo
from tests.sumo_fixtures import NET, write_tiny

_PROGRAM = re.search(r"<phase.*?</tlLogic>", NET, re.S).group(0)


def _program(*phases: tuple[float, str]) -> list[tuple[str, str]]:
    return [(_PROGRAM, "".join(f'<phase duration="{d}" state="{s}"/>' for d, s in phases) + "</tlLogic>")]


# the fixture's edge CE, with 33 passenger lanes
_WIDE_CE = '<edge id="CE" from="C" to="E">' + "".join(
    f'<lane id="CE_{k}" index="{k}" speed="10" length="200" shape="110,{k} 310,{k}"/>' for k in range(33)) + "</edge>"


_NO_GREEN = "no phase greens a movement passenger cars may use at junction 'C'"


@pytest.mark.parametrize("edits, field, value, reason", [
    pytest.param(_program((30, "rrr"), (3, "rrr"), (20, "rrr")), "tlLogic[id=C].phase@state",
                 ("rrr", "rrr", "rrr"), _NO_GREEN, id="all-red"),
    pytest.param(_program((30, "rrr")), "tlLogic[id=C].phase@state", ("rrr",),
                 _NO_GREEN, id="one-red-phase"),
    # the program greens only a pedestrian connection (WC's sidewalk, lane 0, left out): no car ever goes
    pytest.param(_program((30, "rrrG"), (3, "rrry")) + [(
        '<connection from=":C_0"',
        '<connection from="WC" to="CN" fromLane="0" toLane="0" tl="C" linkIndex="3" dir="l"/><connection from=":C_0"')],
        "tlLogic[id=C].phase@state", ("rrrG", "rrry"), "linkIndex [0, 1, 2]", id="only-a-left-out-lane-green"),
    # two equal greens (each within gridlight's limit on a time) merge into one phase beyond it
    pytest.param(_program((600000000, "Ggr"), (600000000, "Ggr"), (20, "rrG")),
                 "tlLogic[id=C].phase@duration", (600000000.0, 600000000.0), "phases [0, 1]",
                 id="merged-phase-too-long"),
    # NC -> WC: WC starts at W, not at C where NC ends
    pytest.param([('<connection from=":C_0"',
                   '<connection from="NC" to="WC" fromLane="0" toLane="1" dir="s"/><connection from=":C_0"')],
                 "connection[3]@to", "WC", "starts at junction 'W'", id="connection-to-an-edge-elsewhere"),
    pytest.param([('<edge id="CN" from="C" to="N">', '<edge id="CC" from="C" to="C"><lane id="CC_0" index="0" '
                   'speed="8" length="50" shape="106,5 120,30 106,6"/></edge><edge id="CN" from="C" to="N">')],
                 "edge[id=CC]", "C", "road starts and ends at the same intersection", id="loop-edge"),
    pytest.param([(re.search(r'<edge id="CE".*?</edge>', NET).group(0), _WIDE_CE)],
                 "edge[id=CE]", "<33 lanes>", "more than 32 lanes", id="33-lanes"),
    pytest.param([('junction id="N" type', 'junction id=" " type'), ('to="N"', 'to=" "'), ('from="N"', 'from=" "')],
                 "junction[id= ]", " ", "an id must be a non-empty string", id="blank-junction-id"),
    pytest.param([('edge id="NC"', 'edge id=" "'), ('from="NC"', 'from=" "')],
                 "edge[id= ]", " ", "an id must be a non-empty string", id="blank-edge-id"),
])
def test_what_the_roadnet_checks_refuse_is_named_in_the_net(tmp_path, edits, field, value, reason):
    net = NET
    for old, new in edits:
        assert old in net
        net = net.replace(old, new)
    with pytest.raises(ScenarioError) as error:
        import_sumo(write_tiny(tmp_path / "bad", net))
    assert error.value.source.endswith("tiny.net.xml")
    assert (error.value.field, error.value.value) == (field, value)
    assert reason in error.value.reason
    assert "intersections[" not in error.value.field and "roads[" not in error.value.field


@pytest.mark.parametrize("program, field, value, turn", [
    # WC -> CE (linkIndex 0) red in every phase: the vehicle v0's route WC CE takes it
    (((30, "rgr"), (3, "ryr"), (20, "rrG"), (2, "rry")), "vehicle[id=v0]@edges", "WC CE", "'WC' -> 'CE'"),
    # WC -> CN (linkIndex 1) red in every phase: the trip t0 from WC to CN is routed through it
    (((30, "Grr"), (3, "yrr"), (20, "rrG"), (2, "rry")), "trip[id=t0]@to", "CN", "'WC' -> 'CN'"),
])
def test_a_route_through_a_movement_no_phase_greens_is_named_in_the_route_file(tmp_path, program, field, value,
                                                                                turn):
    # the flow checks refused it as '[1].route[1]' of the .rou.xml, saying to edit a roadnet phase
    (old, new), = _program(*program)
    with pytest.raises(ScenarioError) as error:
        import_sumo(write_tiny(tmp_path / "bad", NET.replace(old, new)))
    assert error.value.source.endswith("tiny.rou.xml")
    assert (error.value.field, error.value.value) == (field, value)
    assert turn in error.value.reason and "tlLogic[id=C]" in error.value.reason
