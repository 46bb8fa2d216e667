"""Driver imperfection (SUMO's Krauss ``sigma``): the cut against hand-computed values, the flow
file's field and its errors, and the engine with dawdling drivers — slower discharge and cruise,
reproducible draws, the invariants kept."""

from __future__ import annotations

import json

import pytest
import torch

from agents.classical import FixedTime, MaxPressure
from envs.engine import EngineParams, Simulator
from envs.engine.following import dawdle
from envs.engine.ops import unit_hash
from envs.errors import ScenarioError
from envs.evaluation.discharge import EAST_OUT, WEST_IN, entry_rate, saturation_flow, single_route
from envs.scenario import scenario_from_dicts
from envs.scenario.cityflow import load_flow, load_roadnet
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet, uniform_demand
from tests.engine_checks import run_controller_checked


def cut(wanted, speed, sigma, draw, accel=2.6, decel=4.5) -> float:
    t = lambda x: torch.tensor([x], dtype=torch.float32)  # noqa: E731
    return float(dawdle(t(wanted), t(speed), t(accel), t(decel), t(sigma), t(draw))[0])


def test_dawdle_cuts_a_share_of_one_steps_acceleration_or_of_a_slow_speed():
    # cruising: 10 - 0.5 x 0.5 x 2.6 = 9.35
    assert cut(10.0, 10.0, 0.5, 0.5) == pytest.approx(9.35)
    # below one step's acceleration the cut is a share of the speed itself: 1 - 0.5 x 1 x 1
    assert cut(1.0, 0.0, 0.5, 1.0) == pytest.approx(0.5)
    # a standing vehicle that may start still starts (2.6 m/s allowed, at most half lost)
    assert cut(2.6, 0.0, 0.5, 0.999) == pytest.approx(2.6 - 0.5 * 0.999 * 2.6, rel=1e-5)
    # never below what comfortable braking from 12 m/s leaves (7.5), never above what is allowed
    assert cut(9.0, 12.0, 1.0, 0.99) == pytest.approx(7.5)
    assert cut(3.0, 12.0, 1.0, 0.5) == pytest.approx(3.0)
    assert cut(5.0, 5.0, 0.0, 0.7) == 5.0  # sigma 0: no cut at all


def test_the_draw_is_uniform_and_independent_across_trips_and_seconds():
    trips = torch.arange(1000).repeat_interleave(200)
    seconds = torch.arange(200).repeat(1000)
    u = unit_hash(trips, seconds)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0
    assert float(u.mean()) == pytest.approx(0.5, abs=0.005)  # 200k draws: sd of the mean 0.0006
    assert float(u.std()) == pytest.approx((1 / 12) ** 0.5, abs=0.005)
    hist = torch.histc(u, bins=10, min=0.0, max=1.0)
    assert float((hist - 20_000).abs().max()) < 600  # each decile 20k +- 4 sd
    grid = u.view(1000, 200)
    lag = torch.corrcoef(torch.stack([grid[:, :-1].flatten(), grid[:, 1:].flatten()]))[0, 1]
    assert abs(float(lag)) < 0.01
    assert torch.equal(unit_hash(trips, seconds), u)  # the same pair, the same number


def test_an_int32_trip_id_and_second_draw_what_the_same_int64_ones_draw():
    """The state holds trip ids as int32 (state.INDEX): the hash must widen them before its
    products, which outgrow 32 bits, or the step's draws would differ from the documented ones."""
    trips = torch.arange(0, 10_000_000, 997)  # ids up to the 10 M a flow file may hold
    seconds = torch.arange(trips.numel()) % 3600
    wide = unit_hash(trips, seconds)
    assert torch.equal(unit_hash(trips.to(torch.int32), seconds.to(torch.int32)), wide)
    assert torch.equal(unit_hash(trips.to(torch.int32), seconds), wide)


def sumo_like(sigma: float, tau: float) -> dict:
    """SUMO's default passenger car (accel 2.6, decel 4.5) with the given sigma and tau."""
    return dict(DEFAULT_VEHICLE, headwayTime=tau, sigma=sigma, maxPosAcc=2.6, usualPosAcc=2.6,
                usualNegAcc=4.5, maxSpeed=13.89, minGap=2.5, length=5.0)


def test_dawdling_lowers_the_saturation_flow_as_in_sumo():
    """SUMO 1.28 on the same approach (`python benchmarks/sumo_discharge.py`) discharges 2182
    veh/h with sigma 0 and 1878 with sigma 0.5 (tau 1 s), 14% less; the engine must lose a
    similar share."""
    crisp = saturation_flow(sumo_like(0.0, 1.0))
    dawdling = saturation_flow(sumo_like(0.5, 1.0))
    assert 1700 <= dawdling <= 1900, dawdling
    assert 0.10 <= 1 - dawdling / crisp <= 0.20, (crisp, dawdling)


def test_a_dawdling_driver_cruises_slower_by_the_mean_cut():
    travel = {}
    for sigma in (0.0, 0.5):
        scenario = single_route([WEST_IN, EAST_OUT], [5], road_length=800.0, vehicle=sumo_like(sigma, 1.0))
        sim = Simulator(scenario.network, scenario.demand(1))
        sim.run(400, FixedTime(plan="uniform", cycle_s=10_000))  # east-west stays green
        travel[sigma] = int(sim.state.trip_finish[0, 0]) - 5
    # 1600 m at 13.89 m/s; a cruising dawdler averages 0.5 x 2.6 / 2 = 0.65 m/s less: +5%
    assert travel[0.5] > travel[0.0]
    assert travel[0.5] / travel[0.0] == pytest.approx(13.89 / (13.89 - 0.65), abs=0.03)


def dawdling_grid(sigma: float, seed: int = 0):
    roadnet = grid_roadnet(2, 2, road_length=150.0)
    flow = uniform_demand(roadnet, rate_per_origin=700.0, horizon=300, seed=seed)
    for entry in flow:
        entry["vehicle"] = dict(entry["vehicle"], sigma=sigma)
    return scenario_from_dicts(roadnet, flow, name=f"dawdling_{sigma}")


def test_no_imperfection_means_no_draw_and_the_plain_step():
    assert dawdling_grid(0.0).demand(1).sigma is None
    demand = dawdling_grid(0.5).demand(2)
    assert demand.sigma is not None and float(demand.sigma[0, :-1].min()) == 0.5
    assert float(demand.sigma[0, -1]) == 0.0  # the scratch trip never dawdles


def test_dawdling_runs_repeat_exactly_and_keep_the_invariants():
    scenario = dawdling_grid(0.5)
    runs = []
    for _ in range(2):
        sim = Simulator(scenario.network, scenario.demand(1), EngineParams())
        run_controller_checked(sim, MaxPressure(), 400)
        runs.append(sim.state)
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    crisp = Simulator(scenario.network, dawdling_grid(0.0).demand(1), EngineParams())
    crisp.run(400, MaxPressure())
    finished = lambda s: s.trip_finish[0, :-1][s.trip_finish[0, :-1] >= 0]  # noqa: E731
    enter = lambda s: s.trip_enter[0, :-1][s.trip_finish[0, :-1] >= 0]  # noqa: E731
    slow = (finished(runs[0]) - enter(runs[0])).float().mean()
    fast = (finished(crisp.state) - enter(crisp.state)).float().mean()
    assert slow > fast


def write_flow(tmp_path, sigma) -> tuple:
    roadnet = grid_roadnet(1, 1, road_length=300.0)
    flow = [{"vehicle": dict(DEFAULT_VEHICLE, sigma=sigma), "route": [WEST_IN, EAST_OUT],
             "interval": 5.0, "startTime": 0, "endTime": 10}]
    (tmp_path / "roadnet.json").write_text(json.dumps(roadnet))
    (tmp_path / "flow.json").write_text(json.dumps(flow))
    return load_roadnet(tmp_path / "roadnet.json"), tmp_path / "flow.json"


@pytest.mark.parametrize("sigma", [1.5, -0.1, "0.5"])
def test_a_bad_sigma_names_the_file_the_field_and_the_value(tmp_path, sigma):
    roadnet, flow_path = write_flow(tmp_path, sigma)
    with pytest.raises(ScenarioError) as err:
        load_flow(flow_path, roadnet)
    assert str(flow_path) in str(err.value) and "[0].vehicle.sigma" in str(err.value)
    assert str(sigma) in str(err.value)


def test_sigma_is_read_and_a_file_without_it_drives_crisply(tmp_path):
    roadnet, flow_path = write_flow(tmp_path, 0.3)
    assert load_flow(flow_path, roadnet).flows[0].vehicle.sigma == pytest.approx(0.3)
    flow = json.loads(flow_path.read_text())
    del flow[0]["vehicle"]["sigma"]
    flow_path.write_text(json.dumps(flow))
    assert load_flow(flow_path, roadnet).flows[0].vehicle.sigma == 0.0


def test_entries_admit_a_vehicle_every_three_seconds():
    """The engine places a new vehicle at rest once the one ahead has moved its length plus
    the minimum gap (7.5 m): 3 s with the ballistic update, sometimes 4 s when the one ahead
    dawdles. SUMO's Euler update needs 2 s (1800 veh/h in `python benchmarks/sumo_discharge.py`),
    which is why busy origins queue longer in gridlight (docs/scenarios.md)."""
    assert entry_rate(sumo_like(0.0, 1.0)) == 1200.0
    assert 1050 <= entry_rate(sumo_like(0.5, 1.0)) < 1200
