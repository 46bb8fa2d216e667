"""Webster fixed time and SOTL: the plan against a hand computation, SOTL's rules on crafted
counts, timing rules over whole runs, and sanity on grid_4x4 and hangzhou_4x4."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from agents.classical import CONTROLLERS, SOTL, FixedTime, FixedTimeWebster
from agents.classical.webster import OversaturationWarning
from envs.engine import EngineParams, Simulator
from envs.engine.signals import green_elapsed
from envs.errors import ConfigError
from envs.evaluation.metrics import episode_metrics
from envs.evaluation.mixture import ControllerMix
from envs.scenario import load_scenario, scenario_from_dicts
from envs.scenario.demand import stack_demand
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet
from envs.scenario.splits import DemandSpec, sample_trips

# 1x1 generated grid: phase 0 = E-W straight, 1 = N-S straight, 2 = E-W left, 3 = N-S left;
# right turns are green in every phase. Movement slots k (intersection 0):
W_LEFT, W_STRAIGHT, W_RIGHT = 0, 1, 2
S_LEFT, S_STRAIGHT = 3, 4
E_LEFT, E_STRAIGHT = 6, 7
N_LEFT, N_STRAIGHT = 9, 10
ROUTES = {
    "w_straight": ["road_0_1_0", "road_1_1_0"],
    "e_straight": ["road_2_1_2", "road_1_1_2"],
    "n_straight": ["road_1_2_3", "road_1_1_3"],
    "w_left": ["road_0_1_0", "road_1_1_1"],
    "s_left": ["road_1_0_1", "road_1_1_2"],
    "w_right": ["road_0_1_0", "road_1_1_3"],
}


def one_intersection(counts: dict[str, int], horizon: int = 3600, extra: list[dict] | None = None):
    """A 1x1 grid with `counts[route]` vehicles spread evenly over [0, horizon); one more right
    turn at horizon - 1 fixes the demand horizon."""
    flow = []
    for name, n in counts.items():
        for k in range(n):
            t = (k * horizon) // n
            flow.append({"vehicle": DEFAULT_VEHICLE, "route": ROUTES[name], "interval": 1.0,
                         "startTime": t, "endTime": t})
    flow.append({"vehicle": DEFAULT_VEHICLE, "route": ROUTES["w_right"], "interval": 1.0,
                 "startTime": horizon - 1, "endTime": horizon - 1})
    flow += extra or []
    return scenario_from_dicts(grid_roadnet(1, 1), flow, name="test_webster")


# y = 360/1800 = 0.2 (phase 0; E-W's 180 is below it), 0.1 (phase 1), 0.05 (2), 0.05 (3);
# 1000 right turns (always green) must not count.
HAND = {"w_straight": 360, "e_straight": 180, "n_straight": 180, "w_left": 90, "s_left": 90,
        "w_right": 1000}


@pytest.fixture(scope="module")
def hand_scenario():
    return one_intersection(HAND)


def planned(scenario, params=None, trips=None, **kwargs) -> FixedTimeWebster:
    demand = scenario.demand(1) if trips is None else stack_demand(trips, scenario.network)
    sim = Simulator(scenario.network, demand, params)
    controller = FixedTimeWebster(**kwargs)
    controller.reset(sim)
    return controller


def test_webster_plan_matches_a_hand_computation(hand_scenario):
    c = planned(hand_scenario, EngineParams(min_green_s=0), min_green_s=2)
    flow = c.flow_vph[0]
    assert flow[W_STRAIGHT] == pytest.approx(360.0)
    assert flow[E_STRAIGHT] == pytest.approx(180.0)
    assert flow[W_LEFT] == pytest.approx(90.0)
    assert flow[W_RIGHT] == pytest.approx(1001.0)
    assert c.flow_ratio[0].tolist() == pytest.approx([0.2, 0.1, 0.05, 0.05])
    assert float(c.critical_sum[0]) == pytest.approx(0.4)
    assert float(c.lost_time_s[0]) == pytest.approx(4 * (3 + 2))
    c0 = (1.5 * 20 + 5) / (1 - 0.4)  # 58.33 s
    assert float(c.optimal_cycle_s[0]) == pytest.approx(c0, rel=1e-5)
    assert float(c.design_cycle_s[0]) == pytest.approx(c0, rel=1e-5)
    green = [(c0 - 20) * y / 0.4 for y in (0.2, 0.1, 0.05, 0.05)]  # 19.17, 9.58, 4.79, 4.79
    assert c.green_s[0].tolist() == pytest.approx(green, rel=1e-5)
    assert c.durations[0].tolist() == [24.0, 15.0, 10.0, 10.0]  # round(green + 5)
    assert float(c.cycle_s[0]) == 59.0
    assert c.phases_used[0].all() and not bool(c.oversaturated[0])


def test_webster_min_green_is_paid_by_a_longer_cycle(hand_scenario):
    """With 10 s minimum greens the cycle is first raised to L + 4 * 10 = 60 s (C0 = 58.3 is
    too short for them); shares 20, 10, 5, 5: phases 2 and 3 are held at 10 s and the others get
    Webster's cycle for L' = 20 + 20, Y' = 0.3: C = (1.5 * 40 + 5) / 0.7 = 92.86 s."""
    c = planned(hand_scenario, min_green_s=10)
    assert float(c.optimal_cycle_s[0]) == pytest.approx(35 / 0.6, rel=1e-5)
    cycle = 65 / 0.7
    assert float(c.design_cycle_s[0]) == pytest.approx(cycle, rel=1e-5)
    green = [(cycle - 40) * 2 / 3, (cycle - 40) / 3, 10.0, 10.0]  # 35.24, 17.62, 10, 10
    assert c.green_s[0].tolist() == pytest.approx(green, rel=1e-5)
    assert c.durations[0].tolist() == [40.0, 23.0, 15.0, 15.0]
    assert float(c.cycle_s[0]) == 93.0
    # the naive split (minimums raised inside C0) would leave phase 0 x = y C / g > 1 at 360 veh/h
    assert 0.2 * float(c.design_cycle_s[0]) / float(c.green_s[0, 0]) < 0.6


def test_webster_clamps_the_cycle_and_warns_when_oversaturated(hand_scenario):
    low = planned(
        hand_scenario, EngineParams(min_green_s=0), min_green_s=2, saturation_flow_vph=18000.0
    )
    assert float(low.optimal_cycle_s[0]) == pytest.approx(35 / 0.96, rel=1e-5)  # 36.5 < 40
    assert float(low.design_cycle_s[0]) == pytest.approx(40.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unsaturated plan warns about nothing
        planned(hand_scenario)
    with pytest.warns(OversaturationWarning, match="oversaturated"):
        high = planned(hand_scenario, saturation_flow_vph=300.0, max_cycle_s=150.0)  # Y = 2.4
    assert float(high.critical_sum[0]) == pytest.approx(2.4, rel=1e-5)
    assert bool(high.oversaturated[0]) and math.isinf(float(high.optimal_cycle_s[0]))
    assert float(high.design_cycle_s[0]) == pytest.approx(150.0)
    assert float(high.cycle_s[0]) == pytest.approx(150.0, abs=2)  # up to rounding


def test_webster_takes_the_mean_flow_over_copies_and_the_busiest_window(hand_scenario):
    doubled = one_intersection({**HAND, "w_straight": 720})
    c = planned(hand_scenario, trips=[hand_scenario.trips, doubled.trips])
    assert float(c.flow_vph[0, W_STRAIGHT]) == pytest.approx((360 + 720) / 2)
    # a burst of 60 straight-through vehicles in [1000, 1300): the busiest 300 s hold them
    burst = [{"vehicle": DEFAULT_VEHICLE, "route": ROUTES["n_straight"], "interval": 1.0,
              "startTime": 1000 + 5 * k, "endTime": 1000 + 5 * k} for k in range(60)]
    scenario = one_intersection({"w_straight": 36}, extra=burst)
    busy = planned(scenario, window="busiest", window_s=300)
    assert 1295 - 300 < int(busy.window_start[0]) <= 1000 and busy.window_length_s == 300  # earliest
    assert float(busy.flow_vph[0, N_STRAIGHT]) == pytest.approx(60 * 12)
    whole = planned(scenario)
    assert float(whole.flow_vph[0, N_STRAIGHT]) == pytest.approx(60.0)


def test_webster_rejects_bad_parameters(hand_scenario):
    sim = Simulator(hand_scenario.network, hand_scenario.demand(1))
    for field, value in [("saturation_flow_vph", 0.0), ("min_cycle_s", -1.0), ("max_cycle_s", 10.0),
                         ("window", "peak"), ("window_s", 0), ("phase_set", "some"),
                         ("min_green_s", float("nan")),
                         ("offset_s", True)]:  # a bool passed as 1 s (fixed_time refuses it)
        with pytest.raises(ConfigError) as err:
            FixedTimeWebster(**{field: value}).reset(sim)
        assert err.value.field == field and (err.value.value == value or value != value)


# --------------------------------------------------------------------------------------------
# SOTL's rules on crafted approach counts


class CraftedSOTL(SOTL):
    """SOTL fed with given counts: `near[k]` within distance_m, `close[k]` within omega_m."""

    near: dict[int, float]
    close: dict[int, float]

    def approaching(self, sim, distance):
        counts = torch.zeros(sim.batch_size, 1, sim.network.movements_per_intersection)
        for k, n in (self.close if distance == self.omega_m else self.near).items():
            counts[:, 0, k] = n
        return counts


def crafted(near, close=None, **kwargs):
    scenario = one_intersection({"w_straight": 4})
    sim = Simulator(scenario.network, scenario.demand(1))
    controller = CraftedSOTL(**kwargs)
    controller.near, controller.close = near, close or {}
    controller.reset(sim)
    return sim, controller


def commands(sim, controller, steps):
    return [int(controller.act(sim)[0, 0]) for _ in range(steps)]


def test_sotl_switches_when_red_vehicle_seconds_reach_theta():
    # 2 vehicles wait on N-S straight (red), 5 approach on E-W straight (green, none within omega)
    sim, c = crafted({N_STRAIGHT: 2, W_STRAIGHT: 5}, theta=10.0)
    assert commands(sim, c, 5) == [-1, -1, -1, -1, 1]  # kappa = 2, 4, 6, 8, 10
    assert float(c.kappa[0, 0]) == 10.0


def test_sotl_does_not_cut_a_short_platoon_but_cuts_a_long_one():
    sim, c = crafted({N_STRAIGHT: 2, W_STRAIGHT: 5}, {W_STRAIGHT: 3}, theta=10.0, mu=3)
    assert commands(sim, c, 20) == [-1] * 20  # 3 vehicles about to cross green: not cut
    sim, c = crafted({N_STRAIGHT: 2, W_STRAIGHT: 5}, {W_STRAIGHT: 4}, theta=10.0, mu=3)
    assert commands(sim, c, 5)[-1] == 1  # 4 > mu: a platoon that may be cut
    sim, c = crafted(
        {N_STRAIGHT: 2, W_STRAIGHT: 5}, {W_STRAIGHT: 3}, theta=10.0, mu=3, max_green_s=60.0
    )
    assert commands(sim, c, 1) == [1]  # max green (the initial phase counts as long green)


def test_sotl_switches_at_once_when_green_is_empty_and_red_is_not():
    sim, c = crafted({S_STRAIGHT: 1}, theta=100.0)
    assert commands(sim, c, 1) == [1]
    sim, c = crafted({}, theta=100.0)
    assert commands(sim, c, 10) == [-1] * 10  # nobody anywhere: keep


def test_sotl_respects_min_green_and_restarts_kappa_on_a_switch():
    sim, c = crafted({N_STRAIGHT: 2}, theta=1.0, min_green_s=12.0)
    # the phase just switched to 0 from 1: intergreen 5 s, then 12 s of green before a switch
    sim.state = sim.state._replace(phase=torch.tensor([[1]]))
    c.reset(sim)  # the controller last saw phase 1
    sim.state = sim.state._replace(phase=torch.tensor([[0]]), prev_phase=torch.tensor([[1]]),
                                   phase_timer=torch.tensor([[0]]))
    seen = []
    for _ in range(20):
        seen.append(int(c.act(sim)[0, 0]))
        sim.state = sim.state._replace(phase_timer=sim.state.phase_timer + 1)
    assert seen.index(1) == 5 + 12 and set(seen[:17]) == {-1}
    assert float(c.kappa[0, 0]) == 2 * 20  # restarted at the phase change, then 2 per step


def test_sotl_picks_the_phase_serving_most_vehicles_on_red_and_breaks_ties_cyclically():
    sim, c = crafted({N_LEFT: 3, N_STRAIGHT: 1})
    assert commands(sim, c, 1) == [3]
    sim, c = crafted({N_STRAIGHT: 2, N_LEFT: 2})  # phases 1 and 3 tie: 1 comes next after 0
    assert commands(sim, c, 1) == [1]
    sim.state = sim.state._replace(phase=torch.tensor([[2]]))
    assert commands(sim, c, 1) == [3]  # from 2 the cycle runs 3, 0, 1: 3 before the lower 1
    sim, c = crafted({N_LEFT: 3}, switch_to="cyclic")
    assert commands(sim, c, 1) == [1]


def test_sotl_counts_a_real_vehicle_from_distance_m_and_lets_it_through():
    flow = [{"vehicle": DEFAULT_VEHICLE, "route": ROUTES["n_straight"], "interval": 1.0,
             "startTime": 0, "endTime": 0}]
    scenario = scenario_from_dicts(grid_roadnet(1, 1), flow, name="one_vehicle")
    sim = Simulator(scenario.network, scenario.demand(1))
    c = SOTL(distance_m=80.0)
    c.reset(sim)
    length = float(sim.network.road_length[sim.network.road_ids.index("road_1_2_3")])
    first = None
    for t in range(90):
        command = int(c.act(sim)[0, 0])
        live = sim.state.veh_lane[0, :-1] >= 0
        on_road = bool(live.any()) and int(sim.state.veh_leg[0, :-1][live][0]) == 0
        to_stop = length - float(sim.state.veh_pos[0, :-1][live][0]) if on_road else math.inf
        if command >= 0 and first is None:
            first = t
            assert command == 1 and to_stop <= 80.0
        elif first is None:
            assert to_stop > 80.0 or not on_road
        sim.step(torch.tensor([[command]]))
    assert first is not None
    assert int(sim.state.trip_finish[0, 0]) >= 0 and int(sim.state.trip_stops[0, 0]) == 0


def test_sotl_rejects_bad_parameters(hand_scenario):
    sim = Simulator(hand_scenario.network, hand_scenario.demand(1))
    for field, value in [("theta", 0.0), ("distance_m", -5.0), ("omega_m", float("inf")), ("mu", -1),
                         ("mu", 1.5), ("min_green_s", -1.0), ("max_green_s", 5.0), ("switch_to", "x")]:
        with pytest.raises(ConfigError) as err:
            SOTL(**{field: value}).reset(sim)
        assert err.value.field == field


# --------------------------------------------------------------------------------------------
# whole runs


def drive(sim, controller, steps, min_green):
    """Run, checking every command: -1 or a signal phase; a switch only after `min_green` s of
    green (from the engine state, before and after the step). Returns the switches made."""
    controller.reset(sim)
    net = sim.network
    inter = torch.arange(net.num_intersections)
    switches = 0
    for _ in range(steps):
        command = controller.act(sim)
        assert command.dtype == torch.int64
        assert tuple(command.shape) == (sim.batch_size, net.num_intersections)
        chosen = command >= 0
        assert bool(net.signal_phase[inter, command.clamp(min=0)][chosen].all()), "non-signal phase"
        elapsed = green_elapsed(net, sim.params, sim.state)
        asks = chosen & (command != sim.state.phase)
        assert bool((elapsed[asks] >= min_green).all()), "switch requested before min green"
        before = sim.state.phase.clone()
        sim.step(command)
        changed = sim.state.phase != before
        assert bool((elapsed[changed] >= min_green).all())
        switches += int(changed.sum())
    return switches


@pytest.fixture(scope="module")
def grid_4x4():
    return load_scenario("grid_4x4", horizon=900)


# the engine's own minimum green is off: each controller's 10 s rule is what holds
@pytest.mark.parametrize("name", ["fixed_time_webster", "sotl", "max_pressure", "efficient_mp", "advanced_mp"])
def test_controllers_respect_min_green_on_batched_resampled_demand(grid_4x4, name):
    trips = [sample_trips(grid_4x4, DemandSpec("poisson"), "train", k) for k in range(2)]
    sim = Simulator(grid_4x4.network, grid_4x4.demand(trips=trips), EngineParams(min_green_s=0))
    controller = CONTROLLERS[name]()
    switches = drive(sim, controller, 400, min_green=10)
    assert switches > 2 * 16  # both copies, every intersection switched, on average
    if name == "sotl":  # adaptive: the copies' own traffic makes their phases differ
        assert not torch.equal(sim.state.phase[0], sim.state.phase[1]) or not torch.equal(
            sim.state.phase_timer[0], sim.state.phase_timer[1])


def test_webster_and_sotl_are_within_a_sensible_factor_of_fixed_time(grid_4x4):
    names = ("fixed_time", "fixed_time_webster", "sotl")
    sim = Simulator(grid_4x4.network, grid_4x4.demand(3))  # one copy each, the same trips, one batched run
    sim.run(900, ControllerMix([FixedTime(), FixedTimeWebster(), SOTL()], torch.arange(3)))
    metrics = episode_metrics(sim.demand, sim.state)
    results = {name: {k: float(metrics[k][c]) for k in ("travel_time/mean", "throughput")}
               for c, name in enumerate(names)}
    base = results["fixed_time"]
    assert base["throughput"] > 500
    for name in ("fixed_time_webster", "sotl"):
        assert results[name]["throughput"] >= 0.8 * base["throughput"], results
        assert results[name]["travel_time/mean"] <= 1.25 * base["travel_time/mean"], results


@pytest.mark.datasets
def test_webster_and_sotl_run_on_hangzhou(datasets_dir, capsys):
    scenario = load_scenario("hangzhou_4x4", data_dir=datasets_dir, horizon=900)
    net = scenario.network
    assert not bool(net.signal_phase[:, 0].any())  # phase 0 is the right-turn transition phase
    report = {}
    for name in ("fixed_time_webster", "sotl"):
        demand = scenario.demand(1)
        sim = Simulator(scenario.network, demand, EngineParams(min_green_s=0))
        controller = CONTROLLERS[name]()
        drive(sim, controller, 900, min_green=10)
        metrics = episode_metrics(demand, sim.state)
        report[name] = {k: round(float(metrics[k][0]), 1) for k in ("travel_time/mean", "throughput")}
        assert report[name]["throughput"] > 0.5 * float(metrics["vehicles/departed"][0])
        if name == "fixed_time_webster":
            # "cover": every competing movement is green in a used phase, with fewer than 8 phases
            used = controller.phases_used
            green = net.phase_green & used.unsqueeze(-1)
            signal_green = net.phase_green & net.signal_phase.unsqueeze(-1)
            always = signal_green.sum(1) == net.signal_phase.sum(1, keepdim=True)
            compete = net.movement_valid.reshape(16, -1) & ~always
            assert bool((green.any(1) | ~compete).all())
            assert int(used.sum(1).max()) < 8 and not bool(used[:, 0].any())
    with capsys.disabled():
        print(f"\nhangzhou_4x4, 900 s: {report}")


def test_webster_phase_set_all_uses_every_signal_phase(grid_4x4):
    sim = Simulator(grid_4x4.network, grid_4x4.demand(1))
    cover, every = FixedTimeWebster(), FixedTimeWebster(phase_set="all")
    cover.reset(sim)
    every.reset(sim)
    assert torch.equal(every.phases_used, grid_4x4.network.signal_phase)
    assert torch.equal(cover.phases_used, every.phases_used)  # on the grid each movement has one phase
    assert np.allclose(cover.cycle_s.numpy(), cover.durations.sum(1).numpy())


def test_webster_in_an_evaluation_designs_its_plan_from_the_clean_demand_not_the_surged_copies(tmp_path):
    """evaluate.py runs the clean and the perturbed demands in one batch: under a surge Webster's
    plan stays the one designed for the usual demand, so its clean rows are those of a clean run
    (before, the plan averaged in the surged copies' trips and its clean rows moved)."""
    import csv

    import evaluate
    from tests.test_evaluate import evaluate_config

    rows = {}
    for perturbation in ("clean", "surge"):
        out = tmp_path / perturbation
        out.mkdir()
        evaluate.evaluate(evaluate_config("scenario=grid_1x1", "eval.steps=600", "eval.seeds=2", "eval.progress=false",
                                          "eval.plots=false", "controllers=[fixed_time_webster]",
                                          f"perturbation={perturbation}", "perturbation.surge.start_s=0"
                                          if perturbation == "surge" else "perturbation.seed=0"), out)
        rows[perturbation] = {(r["condition"], r["seed"]): r["travel_time/mean"]
                              for r in csv.DictReader(open(out / "metrics.csv"))}
    clean = {key: value for key, value in rows["surge"].items() if key[0] == "clean"}
    assert clean == rows["clean"] and len(clean) == 2
    assert all(rows["surge"][("surge", s)] != rows["clean"][("clean", s)] for s in "01")  # the surge is felt
