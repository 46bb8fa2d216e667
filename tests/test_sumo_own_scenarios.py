"""What a researcher's own SUMO scenario may hold beyond the registered datasets (tests/sumo_fixtures.py's
scenario, window [100, 160) s): SUMO's clock times ("1:00:00"), flows beginning after the config's end,
vType and vehicle attributes the engine does not follow, and origin/destination forms the import cannot route."""

from __future__ import annotations

import pytest

from envs.errors import ScenarioError
from envs.scenario.sumo import import_sumo
from tests.sumo_fixtures import write_tiny

CAR = '<vType id="car" length="4" minGap="2" accel="3" decel="5" tau="1.5"/>'


def _routes(body: str) -> str:
    return f"<routes>{CAR}{body}</routes>"


@pytest.mark.parametrize("flow, field", [
    # SUMO's default end is the config's (160): before the flow's begin, SUMO refuses "Flow 'f' ends before
    # its begin time"; here the error path unpacked the missing <interval> (a TypeError)
    ('<flow id="f" begin="200" period="10" from="NC" to="CE"/>', "flow[id=f]@begin"),
    ('<flow id="f" begin="200" number="3" from="NC" to="CE"/>', "flow[id=f]@begin"),
    ('<interval begin="200"><flow id="f" period="10" from="NC" to="CE"/></interval>', "interval@begin"),
])
def test_a_flow_beginning_after_the_configs_end_without_its_own_end_is_named(tmp_path, flow, field):
    with pytest.raises(ScenarioError, match=r"ends before its begin \(200\): without an end of its own it ends at "
                                            r"the config's end \(160\)") as error:
        import_sumo(write_tiny(tmp_path, routes=_routes(flow)))
    assert (error.value.field, error.value.value) == (field, "200")
