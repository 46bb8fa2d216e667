"""The torch.compile path computes what the eager path computes."""

from __future__ import annotations

import torch

from agents import MaxPressure
from envs.engine import Simulator
from tests.engine_checks import check_all
from tests.scenarios import small_grid


def test_compiled_step_matches_eager_step():
    scenario = small_grid(2, 2, rate=600.0, horizon=300, seed=5)
    eager = Simulator(scenario.network, scenario.demand(2))
    compiled = Simulator(scenario.network, scenario.demand(2), compile=True)
    controller = MaxPressure(min_green_s=5)
    controller.reset(eager)
    for _ in range(300):
        before = compiled.snapshot()
        eager.step(controller.act(eager))
        compiled.step(controller.act(compiled))
        check_all(compiled.network, compiled.demand, compiled.params, before, compiled.state)
    assert eager.num_slots == compiled.num_slots
    for name in ("trip_enter", "trip_finish", "lane_count", "phase", "veh_lane"):
        assert torch.equal(getattr(eager.state, name), getattr(compiled.state, name)), name
    for name in ("veh_pos", "veh_speed", "trip_delay"):
        torch.testing.assert_close(getattr(eager.state, name), getattr(compiled.state, name), rtol=1e-4, atol=1e-3)
