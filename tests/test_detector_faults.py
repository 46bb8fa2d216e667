"""Detector faults (envs/incidents/detector_faults.py): stuck, dead, noisy and dropped readings,
and how max pressure, SOTL, Efficient-/Advanced-MP and the RL observations read through them."""

from __future__ import annotations

import torch

from agents.classical import FixedTime, MaxPressure
from envs.engine import EngineParams, Simulator
from envs.rl.features import movement_lane_sums
from envs.incidents.perturbations import Perturbation
from tests.scenarios import small_grid


def _faults(scenario, copies=2, **spec):
    from envs.engine.intersections import intersection_layout
    from envs.incidents.perturbations import DetectorFaults, DetectorFaultSpec

    perturbation = Perturbation(seed=1, detectors=DetectorFaultSpec(**spec))
    faults = DetectorFaults(perturbation, scenario.network, intersection_layout(scenario.network).in_lanes, copies)
    return faults


def test_detector_faults_freeze_stuck_lanes_kill_dead_intersections_and_leave_clean_copies_true():
    scenario = small_grid(2, 2, horizon=100)
    lanes = scenario.network.num_lanes
    faults = _faults(scenario, stuck_p=0.5, dead_p=0.5, stuck_at_s=10)
    faults.start_episode(1, "eval", 0)  # copy 0 stays clean
    t = torch.tensor([20, 20])
    first = torch.arange(2 * lanes, dtype=torch.float32).reshape(2, lanes)
    seen = faults.apply("lane_count", first, t, missing=float("nan"))
    assert torch.equal(seen[0], first[0])  # a clean copy reads the truth
    dead, stuck = faults.dead[1], faults.stuck[1] & ~faults.dead[1]
    assert bool(dead.any()) and bool(stuck.any())
    assert torch.isnan(seen[1][dead]).all()
    later = faults.apply("lane_count", first + 100, t + 10, missing=float("nan"))
    assert torch.equal(later[1][stuck], first[1][stuck])  # frozen at the reading from stuck_at_s
    healthy = ~faults.dead[1] & ~faults.stuck[1]
    assert torch.equal(later[1][healthy], first[1][healthy] + 100)
    # every lane of a dead intersection is dead: its incoming lanes, nothing else
    owner = faults.lane_owner
    for i in owner[dead].unique().tolist():
        assert bool(dead[owner == i].all())


def test_a_stuck_detector_holds_what_it_showed_even_with_noise_on():
    scenario = small_grid(2, 2, horizon=100)
    faults = _faults(scenario, copies=1, stuck_p=1.0, stuck_at_s=50, noise_std=1.0)
    faults.start_episode(0, "eval", 0)
    lanes = scenario.network.num_lanes
    shown = [faults.apply("lane_count", torch.full((1, lanes), float(t)), torch.tensor([t]))
             for t in range(40, 80, 5)]
    frozen = shown[2]  # at t = 50: the noisy value it showed then
    for later in shown[3:]:  # new noise on top moved it (47..53 for a reading of t)
        assert torch.equal(later, frozen)
    assert not torch.equal(shown[0], shown[1])  # before stuck_at_s it follows the reading


def test_detector_noise_is_drawn_per_split_and_per_reading():
    scenario = small_grid(2, 2, horizon=100)
    lanes = scenario.network.num_lanes
    faults = _faults(scenario, noise_std=1.0)
    faults.start_episode(0, "train", 0)
    faults.start_episode(1, "eval", 0)  # the same index in the other split
    values, t = torch.full((2, lanes), 5.0), torch.tensor([30, 30])
    count = faults.apply("lane_count", values, t)
    # evaluation never sees a training draw (as stuck lanes and dead intersections, drawn per split)
    assert not torch.equal(count[0], count[1])
    # each reading has its own noise stream: a lane's count and halting count err independently
    assert not torch.equal(count, faults.apply("lane_halting", values, t))


def test_a_stuck_lane_freezes_afresh_in_each_episode():
    scenario = small_grid(2, 2, horizon=100)
    lanes = scenario.network.num_lanes
    faults = _faults(scenario, copies=1, stuck_p=1.0, stuck_at_s=10)
    faults.start_episode(0, "eval", 0)
    assert (faults.apply("lane_count", torch.full((1, lanes), 3.0), torch.tensor([20])) == 3).all()
    faults.start_episode(0, "eval", 1)  # the copy's next episode: what it froze before is gone
    assert (faults.apply("lane_count", torch.full((1, lanes), 7.0), torch.tensor([20])) == 7).all()


def test_detector_noise_reads_whole_vehicles_within_the_lane_and_dropouts_hit_at_their_rate():
    scenario = small_grid(2, 2, horizon=100)
    faults = _faults(scenario, copies=64, noise_std=2.0, dropout_p=0.2)
    for b in range(64):
        faults.start_episode(b, "eval", b)
    true = torch.full((64, scenario.network.num_lanes), 3.0)
    upper = torch.full((scenario.network.num_lanes,), 6.0)
    seen = faults.apply("lane_count", true, torch.zeros(64, dtype=torch.int64), upper=upper)
    assert torch.equal(seen, seen.round()) and float(seen.min()) >= 0 and float(seen.max()) <= 6
    lost = faults.apply("lane_count", true, torch.zeros(64, dtype=torch.int64), missing=float("nan"))
    assert 0.15 < float(torch.isnan(lost).float().mean()) < 0.25


def test_max_pressure_reads_faulty_detectors_and_runs_fixed_time_where_they_are_all_dead():
    scenario = small_grid(2, 2, rate=900.0, horizon=900, seed=3)
    sim = Simulator(scenario.network, scenario.demand(copies=2), EngineParams(min_green_s=0))
    sim.run(300, MaxPressure(min_green_s=0))  # load the network
    truth = MaxPressure(min_green_s=0)
    truth.reset(sim)
    # copy 1 gets faults: dead intersections (all their incoming detectors silent); copy 0 is clean
    faults = _faults(scenario, dead_p=0.5)
    faults.start_episode(1, "eval", 0)
    dead_inter = faults.lane_owner[faults.dead[1]].unique()
    assert 0 < len(dead_inter) < scenario.network.num_intersections  # some dead, some alive
    faulty = MaxPressure(min_green_s=0, detectors=faults)
    faulty.reset(sim)
    plan = FixedTime()
    plan.reset(sim)
    seen, true_command, fixed = faulty.act(sim), truth.act(sim), plan.act(sim)
    assert torch.equal(seen[0], true_command[0])  # the clean copy reads the truth
    dead = torch.zeros(scenario.network.num_intersections, dtype=torch.bool)
    dead[dead_inter] = True
    assert torch.equal(seen[1][dead], fixed[1][dead])  # blind intersections run the plan
    # live intersections decide on their own (true) counts: here only the dead lanes differ,
    # and a dead lane reads 0 where it is some live intersection's exit, so compare pressures
    inflow, outflow = faulty.movement_counts(sim)
    lanes = scenario.network.num_lanes
    counts = torch.where(faults.dead[1], 0.0, sim.state.lane_count[1, :lanes].to(torch.float32))
    expected_in, expected_out = movement_lane_sums(scenario.network, counts.unsqueeze(0), counts.unsqueeze(0))
    assert torch.equal(inflow[1:], expected_in) and torch.equal(outflow[1:], expected_out)


def test_sotl_reads_faulty_approach_detectors_split_by_true_shares_and_falls_back_when_blind():
    from agents.classical import SOTL

    scenario = small_grid(2, 2, rate=900.0, horizon=900, seed=3)
    sim = Simulator(scenario.network, scenario.demand(copies=2), EngineParams(min_green_s=0))
    sim.run(300, MaxPressure(min_green_s=0))
    truth = SOTL(min_green_s=0)
    truth.reset(sim)
    faults = _faults(scenario, dead_p=0.5)
    faults.start_episode(1, "eval", 0)
    faulty = SOTL(min_green_s=0, detectors=faults)
    faulty.reset(sim)
    true_counts, seen = truth.approaching(sim, 80.0), faulty.approaching(sim, 80.0)
    assert torch.equal(seen[0], true_counts[0])  # the clean copy reads the truth
    dead_inter = faults.lane_owner[faults.dead[1]].unique()
    assert float(seen[1, dead_inter].sum()) == 0.0 < float(true_counts[1, dead_inter].sum())
    alive = torch.ones(scenario.network.num_intersections, dtype=torch.bool)
    alive[dead_inter] = False
    assert torch.equal(seen[1, alive], true_counts[1, alive])  # live detectors report the truth
    plan = FixedTime()
    plan.reset(sim)
    assert torch.equal(faulty.act(sim)[1, ~alive], plan.act(sim)[1, ~alive])
    # noise: a lane's reported count is split over its vehicles' movements; counts stay >= 0
    noisy = SOTL(min_green_s=0, detectors=_faults(scenario, noise_std=3.0))
    noisy.detectors.start_episode(1, "eval", 0)
    noisy.reset(sim)
    counts = noisy.approaching(sim, 80.0)
    assert torch.equal(counts[0], true_counts[0]) and not torch.equal(counts[1], true_counts[1])
    assert float(counts.min()) >= 0.0


def _loaded_grid():
    scenario = small_grid(2, 2, rate=900.0, horizon=900, seed=3)
    sim = Simulator(scenario.network, scenario.demand(copies=2), EngineParams(min_green_s=0))
    sim.run(300, MaxPressure(min_green_s=0))  # load the network
    return scenario, sim


def test_efficient_and_advanced_mp_read_faulty_halting_and_running_detectors_and_fall_back_when_blind():
    from agents.classical import AdvancedMaxPressure, EfficientMaxPressure
    from envs.engine.movement_readings import effective_running, movement_queue

    scenario, sim = _loaded_grid()
    network = scenario.network
    faults = _faults(scenario, dead_p=0.5)
    faults.start_episode(1, "eval", 0)  # copy 0 stays clean
    dead_inter = faults.lane_owner[faults.dead[1]].unique()
    assert 0 < len(dead_inter) < network.num_intersections
    alive = torch.ones(network.num_intersections, dtype=torch.bool)
    alive[dead_inter] = False
    plan = FixedTime()
    plan.reset(sim)
    fixed = plan.act(sim)
    for cls in (EfficientMaxPressure, AdvancedMaxPressure):
        truth, faulty = cls(min_green_s=0), cls(min_green_s=0, detectors=faults)
        truth.reset(sim)
        faulty.reset(sim)
        (true_pressure, true_queue), (pressure, queue) = truth.movement_pressure(sim), faulty.movement_pressure(sim)
        assert torch.equal(pressure[0], true_pressure[0]) and torch.equal(queue[0], true_queue[0])
        per_inter = queue[1].reshape(network.num_intersections, -1)  # movements are grouped by intersection
        true_per_inter = true_queue[1].reshape(network.num_intersections, -1)
        assert float(per_inter[~alive].sum()) == 0.0 < float(true_per_inter[~alive].sum())  # dead: nothing seen
        assert torch.equal(per_inter[alive], true_per_inter[alive])  # live detectors report the truth
        seen, true_command = faulty.act(sim), truth.act(sim)
        assert torch.equal(seen[0], true_command[0])
        assert torch.equal(seen[1, ~alive], fixed[1, ~alive])  # blind intersections run the plan
    assert torch.equal(movement_queue(network, sim.state), EfficientMaxPressure().movement_pressure(sim)[1])
    # noise reaches the running count too: its own stream, a lane's count split over its movements, >= 0
    noisy = AdvancedMaxPressure(min_green_s=0, detectors=_faults(scenario, noise_std=3.0))
    noisy.detectors.start_episode(1, "eval", 0)
    noisy.reset(sim)
    clean = AdvancedMaxPressure(min_green_s=0)
    clean.reset(sim)
    running, true_running = noisy.running_on_green(sim), clean.running_on_green(sim)
    assert float(effective_running(network, sim.state, 10.0).sum()) > 0  # vehicles to count
    assert torch.equal(running[0], true_running[0]) and not torch.equal(running[1], true_running[1])
    assert float(running.min()) >= 0.0


def test_controllers_counting_different_zones_never_freeze_each_others_stuck_readings():
    """In an evaluation every controller reads one faults object: a stuck lane shows, to each
    controller, what that controller's own zone counted when it froze (SOTL's approach distance,
    Advanced-MP's horizon), not what another controller counted there first."""
    from agents.classical import SOTL, AdvancedMaxPressure

    scenario, sim = _loaded_grid()

    def reading(controller):
        controller.reset(sim)
        if isinstance(controller, SOTL):
            return controller.approaching(sim, controller.distance_m)
        return controller.running_on_green(sim)

    def read(build, other=None):
        faults = _faults(scenario, stuck_p=1.0, stuck_at_s=0)
        faults.start_episode(1, "eval", 0)
        if other is not None:  # another controller reads (and freezes) first
            reading(other(faults))
        return reading(build(faults))

    def near(faults):
        return SOTL(min_green_s=0, distance_m=40.0, detectors=faults)

    def far(faults):
        return SOTL(min_green_s=0, distance_m=150.0, detectors=faults)

    def short(faults):
        return AdvancedMaxPressure(min_green_s=0, horizon_s=3.0, detectors=faults)

    def long(faults):
        return AdvancedMaxPressure(min_green_s=0, horizon_s=30.0, detectors=faults)

    assert float(read(near).sum()) < float(read(far).sum())  # the zones count different vehicles ...
    assert torch.equal(read(near, far), read(near))  # ... and each freezes its own
    assert float(read(short).sum()) < float(read(long).sum())
    assert torch.equal(read(short, long), read(short))


def test_detector_faults_change_observations_never_rewards():
    from envs.rl.signal_env import BatchedSignalEnv

    faulty = {"name": "f", "detectors": {"noise_std": 2.0, "dropout_p": 0.3}}
    envs = [BatchedSignalEnv("grid_1x1", copies=2, episode_s=300, demand={"mode": "poisson"}, perturbation=p)
            for p in (None, faulty)]
    for env in envs:
        env.reset(seed=0)
    differ = False
    for _ in range(20):
        actions = torch.zeros(2, 1, dtype=torch.int64)
        (o0, r0, *_), (o1, r1, *_) = (env.step(actions) for env in envs)
        assert torch.equal(r0, r1)  # the same traffic, the same rewards
        differ |= not torch.equal(o0, o1)
    assert differ and torch.equal(envs[0].sim.state.veh_pos, envs[1].sim.state.veh_pos)


def test_detector_faults_reach_the_approach_observations_as_the_runtime_reads_them():
    """Dead detectors zero an intersection's approach counts in the observation, as they do its
    lane counts; the env draws the same faults the deployment runtime's readings get."""
    from envs.rl.signal_env import BatchedSignalEnv

    names = ["lane_count", "approach_moving", "approach_halting"]
    faulty = {"name": "f", "detectors": {"dead_p": 1.0}}
    clean, dead = (BatchedSignalEnv("grid_1x1", copies=1, episode_s=300, observations=names, normalise=False,
                                    demand={"mode": "poisson"},
                                    perturbation=p) for p in (None, faulty))
    for env in (clean, dead):
        env.reset(seed=0)
    for _ in range(12):
        (seen, *_), (blind, *_) = (env.step(torch.zeros(1, 1, dtype=torch.int64)) for env in (clean, dead))
    assert float(seen.sum()) > 0  # vehicles on the approaches ...
    assert float(blind.abs().sum()) == 0.0  # ... and none of them reported by dead detectors


def test_detector_noise_is_the_same_for_every_copy_on_one_episode_sample():
    scenario = small_grid(2, 2, horizon=100)
    faults = _faults(scenario, copies=3, noise_std=2.0, dropout_p=0.3)
    for copy, index in enumerate((4, 4, 5)):  # two controllers on seed 4, one on seed 5
        faults.start_episode(copy, "eval", index)
    true = torch.full((3, scenario.network.num_lanes), 5.0)
    seen = faults.apply("lane_count", true, torch.tensor([30, 30, 30]), missing=float("nan"))
    assert torch.equal(torch.nan_to_num(seen[0], -1.0), torch.nan_to_num(seen[1], -1.0))
    assert not torch.equal(torch.nan_to_num(seen[0], -1.0), torch.nan_to_num(seen[2], -1.0))


def test_features_that_faults_do_not_reach_are_refused_under_faults(tmp_path):
    import pytest

    import evaluate
    from envs.errors import ConfigError
    from envs.rl.signal_env import BatchedSignalEnv
    from tests.deploy_fixtures import untrained
    from tests.test_evaluate import evaluate_config

    faults = {"name": "detector_faults", "detectors": {"noise_std": 1.0, "dead_p": 1.0}}
    # with every detector dead, segment_counts (where each vehicle is along its lane) reads the true state
    with pytest.raises(ConfigError, match="detector faults do not reach") as error:
        BatchedSignalEnv("grid_1x1", demand={"mode": "poisson"}, perturbation=faults,
                         observations=["phase_onehot", "lane_count", "pressure", "segment_counts"])
    assert (error.value.field, error.value.value) == ("observations", ["segment_counts"])
    BatchedSignalEnv("grid_1x1", demand={"mode": "poisson"}, perturbation=faults,  # all read through faults
                     observations=["phase_onehot", "lane_count", "approach_halting", "pressure", "movement_queue"])
    checkpoint = untrained(small_grid(1, 1, horizon=60), "shared", tmp_path / "p.zip",
                           observations=["phase_onehot", "segment_counts"])
    with pytest.raises(ConfigError, match="detector faults do not reach") as error:
        evaluate.evaluate(evaluate_config("scenario=grid_1x1", "eval.steps=60", "eval.progress=false",
                                          "perturbation=detector_faults", "controllers=[]",
                                          f"checkpoint={checkpoint}"), tmp_path)
    assert error.value.source == str(checkpoint) and error.value.field == "env.observations"


def test_a_policys_rows_under_stuck_detectors_do_not_depend_on_the_controllers_beside_it(tmp_path):
    """A stuck lane freezes at its reader's first reading from `stuck_at_s` on: a policy reads at
    its decisions, max pressure every second. Each controller of an evaluation gets its own
    faults, so beside max pressure the policy still sees what it froze itself (before, it saw
    max pressure's reading at 603 s instead of its own at 605 s)."""
    import csv

    import evaluate
    from tests.deploy_fixtures import untrained
    from tests.test_evaluate import evaluate_config

    checkpoint = untrained(small_grid(4, 4, horizon=60), "shared", tmp_path / "p.zip")  # grid_4x4's layout
    rows = {}
    for beside in ("[]", "[max_pressure]"):
        out = tmp_path / f"beside{len(beside)}"
        out.mkdir()
        evaluate.evaluate(evaluate_config(
            "scenario=grid_4x4", "eval.steps=1200", "eval.seeds=2", "eval.progress=false", "eval.plots=false",
            f"controllers={beside}", f"checkpoint={checkpoint}", "perturbation=detector_faults",
            "perturbation.detectors.stuck_p=1.0", "perturbation.detectors.stuck_at_s=603"), out)
        rows[beside] = {(r["condition"], r["seed"]): r["travel_time/mean"]
                        for r in csv.DictReader(open(out / "metrics.csv")) if r["controller"] == "ppo_shared"}
    assert rows["[]"] == rows["[max_pressure]"] and len(rows["[]"]) == 4


class _OneLaneReporting:
    """Lane-count detectors of which only `lane_id` reports (4 vehicles); every other reading is lost."""

    def __init__(self, lane_id: int | None):
        self.lane_id = lane_id

    def apply(self, name, true, t, upper=None, missing=None, zone=None):
        seen = torch.full_like(true, missing)
        if self.lane_id is not None:
            seen[:, self.lane_id] = 4.0
        return seen


def test_an_intersection_with_one_detector_still_reporting_is_not_blind():
    """Blind (the fixed-time fail-safe) is all incoming detectors silent: 35 s into the run the plan
    shows phase 1, but with the west straight lane still reporting, max pressure decides on it (E-W
    straight, phase 0); with that one silent too, the plan runs."""
    from envs.evaluation.discharge import EAST_OUT, WEST_IN
    from tests.scenarios import single_route

    scenario = single_route([WEST_IN, EAST_OUT], [0])
    sim = Simulator(scenario.network, scenario.demand(1))
    sim.state = sim.state._replace(t=torch.tensor([35]))
    west_straight = int(sim.network.road_lanes[sim.network.road_ids.index(WEST_IN), 1])
    plan = FixedTime()
    plan.reset(sim)
    assert plan.act(sim).tolist() == [[1]]
    for detectors, command in ((_OneLaneReporting(west_straight), 0), (_OneLaneReporting(None), 1)):
        controller = MaxPressure(min_green_s=0, detectors=detectors)
        controller.reset(sim)
        assert controller.act(sim).tolist() == [[command]]


def test_each_copy_and_episode_of_the_env_draws_its_own_stuck_lanes():
    from envs.rl.signal_env import BatchedSignalEnv

    # faults are drawn per copy from its episode's sample (split, index), as incidents are: copies
    # on different samples get different stuck lanes, and the next episodes new ones
    faulty = {"name": "f", "detectors": {"stuck_p": 0.5}}
    env = BatchedSignalEnv(small_grid(2, 2, horizon=100), 3, episode_s=100, demand={"mode": "poisson"},
                           perturbation=faulty)
    env.reset(seed=0)
    first = env.detectors.stuck.clone()
    assert all(not torch.equal(first[a], first[b]) for a, b in ((0, 1), (0, 2), (1, 2)))
    env.reset()
    assert not torch.equal(first, env.detectors.stuck)
