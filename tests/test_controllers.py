"""Baseline controllers: what they choose, from crafted states."""

from __future__ import annotations

import pytest
import torch

from agents.classical import FixedTime, MaxPressure
from envs.engine import Simulator
from envs.errors import ConfigError
from envs.evaluation.discharge import EAST_OUT, WEST_IN
from tests.scenarios import single_route


def lane(net, road: str, index: int) -> int:
    return int(net.road_lanes[net.road_ids.index(road), index])


def test_max_pressure_picks_the_phase_with_the_highest_pressure():
    scenario = single_route([WEST_IN, EAST_OUT], [0])
    sim = Simulator(scenario.network, scenario.demand(1))
    counts = sim.state.lane_count
    counts[0, lane(sim.network, "road_1_2_3", 1)] = 6  # north approach, straight lane
    counts[0, lane(sim.network, WEST_IN, 1)] = 2  # west approach, straight lane
    controller = MaxPressure(min_green_s=0)
    controller.reset(sim)
    assert controller.act(sim).tolist() == [[1]]  # phase 1: N-S straight


def test_max_pressure_does_not_strand_a_vehicle_when_pressures_tie():
    """One vehicle waits on the north straight lane; vehicles standing on the exit roads
    give the N-S straight phase the same pressure as the E-W straight phase (phase 0). The tie
    must go to the phase with a vehicle waiting, not to the lowest index forever."""
    scenario = single_route([WEST_IN, EAST_OUT], [0])
    sim = Simulator(scenario.network, scenario.demand(1))
    net, counts = sim.network, sim.state.lane_count
    counts[0, lane(net, "road_1_2_3", 1)] = 1  # waiting to go south
    counts[0, lane(net, "road_1_1_3", 0)] = 2  # on the southbound exit road
    counts[0, lane(net, "road_1_1_2", 0)] = 1  # on the westbound exit road
    controller = MaxPressure(min_green_s=0)
    controller.reset(sim)
    pressure = controller.phase_pressure(sim)[0, 0]
    assert pressure[0] == pressure[1] and pressure.argmax() == 0  # a tie plain argmax loses
    assert controller.act(sim).tolist() == [[1]]
    textbook = MaxPressure(min_green_s=0, tie_break_by_inflow=False)
    assert textbook.act(sim).tolist() == [[0]]  # the lowest index: the stranding rule


def test_fixed_time_replays_the_written_plan_and_splits_a_uniform_cycle():
    scenario = single_route([WEST_IN, EAST_OUT], [0])
    sim = Simulator(scenario.network, scenario.demand(1))
    written = FixedTime()
    written.reset(sim)
    seen = []
    for t in range(0, 240, 15):
        sim.state = sim.state._replace(t=torch.tensor([t]))
        seen.append(int(written.act(sim)))
    assert seen == [0, 0, 1, 1, 2, 2, 3, 3] * 2  # 4 phases of 30 s, cycle 120 s
    uniform = FixedTime(plan="uniform", cycle_s=40)
    uniform.reset(sim)
    sim.state = sim.state._replace(t=torch.tensor([35]))
    assert int(uniform.act(sim)) == 3


def test_a_uniform_cycle_too_short_for_the_engines_least_phase_is_refused_naming_cycle_s():
    """cycle_s=20 over 4 phases asked 5 s each; the engine holds a phase 10 s (intergreen + min
    green), so the refused switches pushed the cycle past phase 2, which never showed green."""
    import pytest

    from envs.errors import ConfigError

    scenario = single_route([WEST_IN, EAST_OUT], [0])
    sim = Simulator(scenario.network, scenario.demand(1))
    least = sim.params.yellow_s + sim.params.all_red_s + sim.params.min_green_s
    FixedTime(plan="uniform", cycle_s=4 * least).reset(sim)  # the least that fits
    with pytest.raises(ConfigError, match=f"cycle_s >= {4 * least}") as error:
        FixedTime(plan="uniform", cycle_s=4 * least - 1).reset(sim)
    assert error.value.field == "cycle_s"


def test_fixed_time_folds_a_transition_phase_only_where_the_engine_would_hold_it_and_the_lights_stay():
    from agents.classical.fixed_time import folded_transitions

    r, a, b, c = range(4)  # movement slots: a right turn, then three others

    def phase_greens(*phases):
        return [[k in greens for k in range(4)] for greens in phases]

    # each row: the greens of phases 0..2, which of them are signal phases, the written seconds;
    # the cycle runs 0, 1, 2; the engine's intergreen is 5 s and its minimum green 5 s
    rows = [
        (phase_greens({r}, {r, a}, {r, b}), [False, True, True], [5, 30, 30]),  # CityFlow's: folds into 1
        (phase_greens({r}, {r, a}, {r, b}), [False, True, True], [10, 30, 30]),  # shown 10 s as written: kept
        (phase_greens({r, c}, {r, a}, {r, b}), [False, True, True], [5, 30, 30]),  # c would lose its green
        (phase_greens({r, a}, {r}, {r, a, b}), [True, False, True], [30, 5, 30]),  # a is cut between 0 and 2
        (phase_greens({r}, {r, a}, {r}), [True, True, False], [30, 30, 3]),  # wraps: 2 folds into 0
    ]
    green = torch.tensor([greens for greens, _, _ in rows])
    signal = torch.tensor([signals for _, signals, _ in rows])
    durations = torch.tensor([seconds for _, _, seconds in rows], dtype=torch.float32)
    phases = torch.arange(3).expand(len(rows), -1)
    used = torch.ones(len(rows), 3, dtype=torch.bool)
    assert folded_transitions(green, signal, phases, durations, used, 5, 5).tolist() == [
        [1, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 0]]
    # no intergreen and no minimum green (the CityFlow fidelity runs): every transition is shown as written
    assert folded_transitions(green, signal, phases, durations, used, 0, 0).tolist() == [[0, 1, 2]] * 5


def test_controllers_by_config_name_are_built_once_and_bad_parameters_name_the_field():
    import agents.classical as classical

    assert classical.CONTROLLERS is classical.CONTROLLERS
    assert classical.CONTROLLERS["max_pressure"] is MaxPressure
    scenario = single_route([WEST_IN, EAST_OUT], [0])
    sim = Simulator(scenario.network, scenario.demand(1))
    nan, inf = float("nan"), float("inf")
    for make, field, value in (  # refused when built (it was when the run started), and at reset
            (lambda: FixedTime(plan="uniform", cycle_s=0), "cycle_s", 0),
            (lambda: FixedTime(plan="written"), "plan", "written"),
            (lambda: MaxPressure(min_green_s=-1), "min_green_s", -1),
            # bool("no") is True: the inflow tie-break stayed on (use_halting was checked, this one not)
            (lambda: MaxPressure(tie_break_by_inflow="no"), "tie_break_by_inflow", "no"),
            # NaN and inf pass `x <= 0`: a uniform plan of a NaN cycle ran phase 0 forever
            (lambda: FixedTime(plan="uniform", cycle_s=nan), "cycle_s", nan),
            (lambda: FixedTime(plan="uniform", cycle_s=inf), "cycle_s", inf),
            (lambda: FixedTime(offset_s=inf), "offset_s", inf),
            (lambda: FixedTime(plan="uniform", offset_s=nan), "offset_s", nan)):
        with pytest.raises(ConfigError) as err:
            make()
        assert err.value.field == field and err.value.source.startswith("<controller:")
        assert repr(value) in str(err.value) and field in str(err.value)
    changed = FixedTime(plan="uniform")
    changed.cycle_s = 0  # set after building: reset checks again
    with pytest.raises(ConfigError, match="cycle_s"):
        changed.reset(sim)


def _at_green(sim, phase: int, green_s: int):
    """`sim` showing `phase` for `green_s` s of green (no switch before it: no intergreen)."""
    sim.state = sim.state._replace(phase=torch.tensor([[phase]]), prev_phase=torch.tensor([[phase]]),
                                   phase_timer=torch.tensor([[green_s]]))
    return sim


def test_max_pressure_switches_once_the_green_has_shown_exactly_min_green():
    scenario = single_route([WEST_IN, EAST_OUT], [0])
    sim = Simulator(scenario.network, scenario.demand(1))
    sim.state.lane_count[0, lane(sim.network, "road_1_2_3", 1)] = 4  # N-S straight (phase 1) is the best
    controller = MaxPressure(min_green_s=10)
    controller.reset(sim)
    assert controller.act(_at_green(sim, 0, 9)).tolist() == [[-1]]  # 9 s < min green: keep
    assert controller.act(_at_green(sim, 0, 10)).tolist() == [[1]]  # "once it has shown" 10 s


def _with_lane_counts(sim):
    """`sim` whose lane counts are those of the vehicles placed in its state."""
    state = sim.state
    lane = state.veh_lane[:, :-1]
    counts = torch.zeros_like(state.lane_count)
    counts.scatter_add_(1, torch.where(lane >= 0, lane, counts.shape[1] - 1),
                        (lane >= 0).to(counts.dtype))
    sim.state = state._replace(lane_count=counts)
    return sim


def test_max_pressure_with_use_halting_counts_only_halting_vehicles_upstream():
    """Placed vehicles (tests/test_movement_readings.py): the west straight lane holds 3 halting and
    2 running vehicles before an exit road of 3 halting ones; the north straight lane 1 halting
    vehicle. Counting all of them E-W straight wins (5 - 3 > 1); counting the halting ones only,
    N-S straight does (3 - 3 < 1). Downstream counts every vehicle either way."""
    from tests.test_movement_readings import W_STRAIGHT, placed

    sim = _with_lane_counts(placed(phase=2, prev_phase=2, timer=100))
    every, halting = MaxPressure(min_green_s=0), MaxPressure(min_green_s=0, use_halting=True)
    for controller in (every, halting):
        controller.reset(sim)
    assert float(every.movement_counts(sim)[0][0, W_STRAIGHT]) == 5
    assert float(halting.movement_counts(sim)[0][0, W_STRAIGHT]) == 3
    assert float(halting.movement_counts(sim)[1][0, W_STRAIGHT]) == 3  # the exit road: all vehicles
    assert every.act(sim).tolist() == [[0]] and halting.act(sim).tolist() == [[1]]


class _Undercounting:
    """Detectors whose west-straight count detector reports 1 vehicle; every other reading true."""

    def __init__(self, lane_id: int):
        self.lane_id = lane_id

    def apply(self, name, true, t, upper=None, missing=None, zone=None):
        seen = true.clone()
        if name == "lane_count":
            seen[:, self.lane_id] = 1.0
        return seen


def test_max_pressure_never_reads_more_halting_vehicles_than_the_same_detector_counts():
    """The module doc: under faulty detectors the halting count is never above the vehicle count of
    the same detector station (3 vehicles halt there, but the station counts only 1)."""
    from tests.test_movement_readings import W_STRAIGHT, W_STRAIGHT_LANE, placed

    sim = _with_lane_counts(placed(phase=2, prev_phase=2, timer=100))
    controller = MaxPressure(min_green_s=0, use_halting=True, detectors=_Undercounting(W_STRAIGHT_LANE))
    controller.reset(sim)
    assert float(controller.movement_counts(sim)[0][0, W_STRAIGHT]) == 1


def test_fixed_time_shows_a_transition_that_ends_no_green_for_its_written_time():
    """A transition that keeps every green of the phase before it has no intergreen, so the engine
    holds it only min green (5 s): written for 7 s it is shown as written, not folded into the next
    phase (folding it needs written time < intergreen + min green, and the intergreen is 0 here)."""
    from agents.classical.fixed_time import folded_transitions

    r, a, b = range(3)  # movement slots: a right turn, then two others
    green = torch.tensor([[[k in greens for k in range(3)] for greens in ({r, a}, {r, a}, {r, a, b})]])
    signal = torch.tensor([[True, False, True]])
    durations = torch.tensor([[30.0, 7.0, 30.0]])
    used = torch.ones(1, 3, dtype=torch.bool)
    assert folded_transitions(green, signal, torch.arange(3).expand(1, -1), durations, used, 5, 5).tolist() == [
        [0, 1, 2]]
    # written for 4 s, less than the engine's minimum green: folded into phase 2
    assert folded_transitions(green, signal, torch.arange(3).expand(1, -1), durations - torch.tensor(
        [[0.0, 3.0, 0.0]]), used, 5, 5).tolist() == [[0, 2, 2]]


def transition_first():
    """A 1x1 grid whose plan starts with a 5 s right-turns-only transition phase (as CityFlow's
    datasets' phase 0), and one vehicle, turning right at the end of the hour."""
    from envs.scenario import scenario_from_dicts
    from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet

    roadnet = grid_roadnet(1, 1)
    light = next(x for x in roadnet["intersections"] if not x["virtual"])["trafficLight"]
    light["lightphases"].insert(0, {"time": 5, "availableRoadLinks": [2, 5, 8, 11]})  # the right turns
    flow = [{"vehicle": DEFAULT_VEHICLE, "route": ["road_0_1_0", "road_1_1_3"], "interval": 1.0,
             "startTime": 3599, "endTime": 3599}]
    scenario = scenario_from_dicts(roadnet, flow, name="transition_first")
    assert scenario.network.signal_phase[0].tolist() == [False, True, True, True, True]
    return scenario


def test_a_uniform_fixed_time_plan_splits_the_cycle_among_the_signal_phases_only():
    # a uniform 120 s cycle gives the 4 signal phases 30 s each and never commands the transition
    scenario = transition_first()
    sim = Simulator(scenario.network, scenario.demand(1))
    uniform = FixedTime(plan="uniform", cycle_s=120)
    uniform.reset(sim)
    seen = []
    for t in range(120):
        sim.state = sim.state._replace(t=torch.tensor([t]))
        seen.append(int(uniform.act(sim)))
    assert seen == [1] * 30 + [2] * 30 + [3] * 30 + [4] * 30


def test_pressure_controllers_never_command_a_transition_phase():
    """On an empty network every pressure is 0, the transition phase's (it serves right turns
    only) too: the choice is the lowest signal phase, 1, never the transition phase 0."""
    from agents.classical import AdvancedMaxPressure, EfficientMaxPressure

    scenario = transition_first()
    sim = Simulator(scenario.network, scenario.demand(1))
    for controller in (MaxPressure(min_green_s=0), EfficientMaxPressure(min_green_s=0),
                       AdvancedMaxPressure(min_green_s=0)):
        controller.reset(sim)
        assert controller.act(sim).tolist() == [[1]], type(controller).__name__
