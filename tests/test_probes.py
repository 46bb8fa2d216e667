"""Probe-vehicle sensing (envs/incidents/probes.py): probes are drawn reproducibly and without
bias, reports hold probes only and only what a probe knows, noise and dropouts have the requested
size, the per-lane summary is what it says, a mid-lane blockage shows in it, and a learned
policy's environment serves probe features (and refuses them without probes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.classical import FixedTime
from envs.engine import Simulator
from envs.errors import ConfigError
from envs.incidents.perturbations import Incident, with_incidents
from envs.incidents.probes import (
    ProbeReports,
    ProbeSensor,
    ProbeSpec,
    copy_key,
    lane_summary,
    probe_reports,
    probe_trips,
    probe_vehicles,
    probes_from_config,
    slot_reports,
)
from envs.rl.signal_env import BatchedSignalEnv
from envs.scenario.network import lane_ids
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import small_grid

Z99 = 2.576  # two-sided 99% normal quantile


def _within_binomial_ci(hits: int, n: int, p: float) -> bool:
    return abs(hits / n - p) <= Z99 * math.sqrt(p * (1 - p) / n)


def _keys(spec: ProbeSpec, copies: int, split: str = "eval") -> torch.Tensor:
    return torch.tensor([copy_key(spec, split, k) for k in range(copies)])


@pytest.fixture(scope="module")
def run():
    """Four copies of a busy 2x2 grid under fixed time: the state at every 5th second."""
    scenario = small_grid(2, 2, rate=700.0, horizon=600, seed=1)
    sim = Simulator(scenario.network, scenario.demand(4))
    controller = FixedTime()
    controller.reset(sim)
    states = []
    for _ in range(600):
        sim.step(controller.act(sim))
        if int(sim.state.t[0]) % 5 == 0:
            states.append(sim.snapshot())
    return scenario.network, states


def test_probe_config_is_checked_naming_the_field():
    for field, value in (("p", 1.5), ("p", -0.1), ("dropout_p", 2.0), ("interval_s", 0), ("interval_s", 2.5),
                         ("gps_noise_m", -1.0), ("speed_noise", float("nan")), ("seed", -3)):
        with pytest.raises(ConfigError, match=f"probes.{field}"):
            ProbeSpec(**{field: value})
    with pytest.raises(ConfigError, match="probes.rate") as refused:
        probes_from_config({"rate": 0.1})
    assert_names_everything(refused.value, "<probes>", "probes.rate", 0.1)
    assert 'unknown key' in refused.value.reason
    assert probes_from_config(None) == ProbeSpec() and probes_from_config({"p": 0.05}).p == 0.05


def test_probe_config_errors_name_the_path_the_user_typed():
    # the spec names its own field (`probes.p`); from a config it is `env.probes.p` / `detection.probes.p`
    for config, field, value in (({"p": 1.5}, "env.probes.p", 1.5), ({"rate": 0.1}, "env.probes.rate", 0.1)):
        with pytest.raises(ConfigError) as caught:
            probes_from_config(config, "<config>", "env.probes")
        assert (caught.value.source, caught.value.field, caught.value.value) == ("<config>", field, value)
        assert f"<config>: field {field!r} = {value!r}:" in str(caught.value)


def test_probes_are_reproducible_per_seed_copy_and_split():
    spec, other = ProbeSpec(p=0.2, seed=1), ProbeSpec(p=0.2, seed=2)
    trips = torch.arange(2000).expand(3, -1)
    a = probe_trips(spec, _keys(spec, 3), trips)
    assert torch.equal(a, probe_trips(spec, _keys(spec, 3), trips))  # same seed: same probes
    assert not torch.equal(a, probe_trips(other, _keys(other, 3), trips))  # another seed: others
    assert not torch.equal(a[0], a[1])  # per copy
    assert copy_key(spec, "train", 0) != copy_key(spec, "eval", 0)  # distinct keys (with probability 1 - 2^-32)


@pytest.mark.parametrize("p", [0.05, 0.2])
def test_the_probe_share_matches_p(p, run):
    spec = ProbeSpec(p=p, seed=7)
    trips = torch.arange(4000).expand(50, -1)  # 200 000 trips
    assert _within_binomial_ci(int(probe_trips(spec, _keys(spec, 50), trips).sum()), trips.numel(), p)
    # and through the reports: the share of the vehicles seen on a lane that ever report
    network, states = run
    key = _keys(spec, 4)
    seen, reported = set(), set()
    for state in states:
        on_lane = (state.veh_lane[:, :-1] >= 0) & (state.veh_pos[:, :-1] >= 0)
        valid = slot_reports(spec, key, state).valid
        for b, slot in torch.nonzero(on_lane).tolist():
            seen.add((b, int(state.veh_trip[b, slot])))
            if bool(valid[b, slot]):
                reported.add((b, int(state.veh_trip[b, slot])))
    assert len(seen) > 1500 and _within_binomial_ci(len(reported), len(seen), p)


def test_reports_hold_the_probes_only_and_only_what_a_probe_knows(run):
    network, states = run
    spec = ProbeSpec(p=0.2, seed=3)
    key = _keys(spec, 4)
    assert ProbeReports._fields == ("valid", "lane", "pos", "speed", "t")
    length = network.lane_length
    total = 0
    for state in states[::6]:
        reports = probe_reports(spec, key, state)
        probe = probe_vehicles(spec, key, state) & (state.veh_pos[:, :-1] >= 0)
        for b in range(4):
            truth = sorted(zip(state.veh_lane[b, :-1][probe[b]].tolist(), state.veh_pos[b, :-1][probe[b]].tolist(),
                               state.veh_speed[b, :-1][probe[b]].tolist()))
            n = int(reports.valid[b].sum())
            assert bool(reports.valid[b, :n].all()) and not bool(reports.valid[b, n:].any())  # valid first
            got = list(zip(reports.lane[b, :n].tolist(), reports.pos[b, :n].tolist(), reports.speed[b, :n].tolist()))
            assert got == truth  # exactly the probes, ordered by lane then position
            assert all(0.0 <= pos <= float(length[lane]) for lane, pos, _ in got)
            total += n
        assert torch.equal(reports.t, state.t)
    assert total > 100


def test_position_and_speed_noise_have_the_requested_size(run):
    network, states = run
    spec = ProbeSpec(p=0.5, gps_noise_m=3.0, speed_noise=0.5, seed=4)
    clean = ProbeSpec(p=0.5, seed=4)
    key = _keys(spec, 4)
    pos_err, speed_err = [], []
    for state in states:
        noisy, true = slot_reports(spec, key, state), slot_reports(clean, key, state)
        assert torch.equal(noisy.valid, true.valid) and torch.equal(noisy.lane, true.lane)
        pos_err.append((noisy.pos - true.pos)[true.valid])
        fast = true.valid & (true.speed > 5 * spec.speed_noise)  # far from the clamp at 0
        speed_err.append((noisy.speed - true.speed)[fast])
    pos_err, speed_err = torch.cat(pos_err).numpy(), torch.cat(speed_err).numpy()
    assert pos_err.size > 5000 and speed_err.size > 1000
    for err, std in ((pos_err, 3.0), (speed_err, 0.5)):
        assert abs(err.mean()) < 4 * std / math.sqrt(err.size)
        assert abs(err.std() / std - 1) < 0.05
    # every reported position lies on its lane within the noise
    lengths = network.lane_length.numpy()
    for state in states[::10]:
        r = probe_reports(spec, key, state)
        lane, pos = r.lane[r.valid].numpy(), r.pos[r.valid].numpy()
        assert ((pos >= -6 * 3.0) & (pos <= lengths[lane] + 6 * 3.0)).all()


def test_dropouts_lose_reports_at_the_requested_rate(run):
    _, states = run
    spec, clean = ProbeSpec(p=0.3, dropout_p=0.25, seed=5), ProbeSpec(p=0.3, seed=5)
    key = _keys(spec, 4)
    kept = sum(int(slot_reports(spec, key, s).valid.sum()) for s in states)
    sent = sum(int(slot_reports(clean, key, s).valid.sum()) for s in states)
    assert sent > 5000 and _within_binomial_ci(kept, sent, 0.75)


def test_no_probes_no_reports(run):
    network, states = run
    spec = ProbeSpec(p=0.0)
    assert all(int(probe_reports(spec, _keys(spec, 4), s).valid.sum()) == 0 for s in states)
    sensor = ProbeSensor(spec, network, 4)
    sensor.observe(states[-1])
    assert not sensor.active and all(float(x.abs().sum()) == 0 for x in sensor.latest)


def test_lane_summary_by_hand():
    network = small_grid(1, 1).network
    length = float(network.lane_length[2])
    #       lane 2: halted at 10 m and 50 m, moving at 30 m; lane 5: one moving; then two invalid rows
    reports = ProbeReports(
        valid=torch.tensor([[True, True, True, True, False, False]]),
        lane=torch.tensor([[2, 2, 2, 5, -1, -1]]),
        pos=torch.tensor([[10.0, 30.0, 50.0, 20.0, 0.0, 0.0]]),
        speed=torch.tensor([[0.0, 8.0, 0.05, 3.0, 0.0, 0.0]]),
        t=torch.tensor([5]),
    )
    summary = lane_summary(network, reports)
    assert summary.reports[0, 2] == 3 and summary.reports[0, 5] == 1 and summary.reports.sum() == 4
    assert summary.halted[0, 2] == 2 and summary.halted.sum() == 2
    assert float(summary.halted_nearest_m[0, 2]) == pytest.approx(length - 50.0)
    assert float(summary.halted_furthest_m[0, 2]) == pytest.approx(length - 10.0)
    assert float(summary.halted_nearest_m[0, 5]) == 0.0  # no halted probe there


def test_position_noise_is_drawn_afresh_at_each_report_and_speeds_never_read_below_zero(run):
    _, states = run
    spec = ProbeSpec(p=1.0, gps_noise_m=3.0, speed_noise=2.0, seed=4)
    clean = ProbeSpec(p=1.0, seed=4)
    key = _keys(spec, 4)
    state = states[40]
    later = state._replace(t=state.t + 5)  # the same vehicles where they are, at the next report time
    true, now, then = (slot_reports(s, key, x) for s, x in ((clean, state), (spec, state), (spec, later)))
    err_now, err_then = (now.pos - true.pos)[true.valid].numpy(), (then.pos - true.pos)[true.valid].numpy()
    assert err_now.size > 100
    # a GPS error per report, not one per vehicle: a probe's errors at two reports are uncorrelated
    assert abs(np.corrcoef(err_now, err_then)[0, 1]) < 0.3
    # a speed reads max(0, speed + noise), as a speedometer does: never negative, 0 for many halted probes
    speeds = torch.cat([slot_reports(spec, key, s).speed[slot_reports(spec, key, s).valid] for s in states[::10]])
    assert float(speeds.min()) == 0.0 and int((speeds == 0).sum()) > 10


def test_the_sensor_reads_reports_only_at_the_reporting_period(run):
    network, states = run
    sensor = ProbeSensor(ProbeSpec(p=1.0, interval_s=5), network, 4)
    sensor.observe(states[10])
    read = sensor.latest
    # the vehicles of a later second that is no report time: the summary does not change
    off_period = states[12]._replace(t=states[10].t + 2)
    sensor.observe(off_period)
    assert all(torch.equal(a, b) for a, b in zip(sensor.latest, read))
    sensor.observe(states[12])  # the next report time reads them
    assert not torch.equal(sensor.latest.reports, read.reports)


def test_the_summary_counts_halted_probes_only_below_the_halting_speed_and_measures_them_alone():
    network = small_grid(1, 1).network
    length = float(network.lane_length[2])
    # lane 2: halted at 10 m, one at exactly the halting speed at 60 m, a moving one nearer the line at 80 m
    reports = ProbeReports(
        valid=torch.tensor([[True, True, True]]), lane=torch.tensor([[2, 2, 2]]),
        pos=torch.tensor([[10.0, 60.0, 80.0]]), speed=torch.tensor([[0.0, 0.1, 5.0]]), t=torch.tensor([5]),
    )
    summary = lane_summary(network, reports)
    assert summary.reports[0, 2] == 3 and summary.halted[0, 2] == 1  # 0.1 m/s is not < 0.1 m/s
    # the nearest and furthest halted probe are the one at 10 m: moving probes do not count
    assert float(summary.halted_nearest_m[0, 2]) == pytest.approx(length - 10.0)
    assert float(summary.halted_furthest_m[0, 2]) == pytest.approx(length - 10.0)


def test_the_sensor_reads_each_report_time_once_until_a_restart(run):
    network, states = run
    state = states[10]
    sensor = ProbeSensor(ProbeSpec(p=1.0), network, 4)
    sensor.observe(state)
    assert float(sensor.latest.reports.sum()) > 0
    marked = sensor.latest._replace(reports=torch.full_like(sensor.latest.reports, -1.0))
    sensor.latest = marked
    sensor.observe(state)  # the same report time again: nothing recomputed
    assert torch.equal(sensor.latest.reports, marked.reports)
    restarted = torch.tensor([True, False, False, False])
    sensor.restart(restarted, state)  # a restarted copy reads the same time afresh
    assert float(sensor.latest.reports[0].min()) >= 0 and bool((sensor.latest.reports[1:] == -1).all())


def test_a_mid_lane_blockage_shows_as_a_halted_probe_far_from_the_stop_line():
    scenario = small_grid(1, 1, rate=900.0, horizon=400, seed=3, road_length=300.0)
    net = scenario.network
    names = lane_ids(net)
    closed = next(lane for lane, name in enumerate(names)
                  if int(net.road_end[net.lane_road[lane]]) >= 0 and name.endswith("_1"))
    place = 120.0
    sim = Simulator(net, with_incidents(scenario.demand(1), [[Incident(closed, 0, 10_000, 0.0, place)]]))
    sensor = ProbeSensor(ProbeSpec(p=1.0), net, 1)
    controller = FixedTime()
    controller.reset(sim)
    for _ in range(300):
        sim.step(controller.act(sim))
        sensor.observe(sim.state)
    assert int(sensor.latest.halted[0, closed]) >= 1
    gap = float(net.lane_length[closed]) - (place - 2.5)  # the first vehicle stands a min gap short of it
    assert float(sensor.latest.halted_nearest_m[0, closed]) == pytest.approx(gap, abs=1e-3)


def test_the_environment_serves_probe_features_and_refuses_them_without_probes():
    observations = ["phase_onehot", "lane_halting", "probe_halted", "probe_queue_gap"]
    with pytest.raises(ConfigError, match="probe_halted") as refused:
        BatchedSignalEnv(small_grid(2, 2, rate=900.0), 2, episode_s=300, observations=observations)
    assert_names_everything(refused.value, "<env>", "observations", "probe_halted")
    assert 'set probes.p > 0' in refused.value.reason
    env = BatchedSignalEnv(small_grid(2, 2, rate=900.0), 2, episode_s=300, observations=observations,
                           demand={"mode": "poisson"}, probes={"p": 1.0, "interval_s": 5})
    env.reset(seed=0)
    keep = torch.full((2, env.num_intersections), -1, dtype=torch.int64)
    for _ in range(12):
        obs, *_ = env.step(keep)
    where = env.describe()["observations"]

    def part(name):
        return obs[..., where[name]["start"]:where[name]["start"] + where[name]["size"]]

    # every vehicle a probe, reported at the decision time: probes see the detectors' queue
    # (but for vehicles halted inside a junction box, which report nothing)
    halting, probe_halted = part("lane_halting"), part("probe_halted")
    assert float(probe_halted.sum()) > 0 and bool((probe_halted <= halting + 1e-6).all())
    assert float(probe_halted.sum()) >= 0.9 * float(halting.sum())
    assert env.describe()["probes"]["p"] == 1.0
    assert bool((obs >= env.obs_low).all() and (obs <= env.obs_high).all())
    np.testing.assert_array_equal(env.probes.key.numpy(), _keys(ProbeSpec(p=1.0), 2, "train").numpy())


def test_probe_keys_are_32_bit_and_equal_keys_draw_alike():
    """docs/incidents.md: the key is one 32-bit word, so copies of different split seeds are
    distinct only with high probability; copies with equal keys pick the same probes."""
    spec = ProbeSpec(p=0.3, seed=7)
    train = {copy_key(spec, "train", k) for k in range(256)}
    evaluation = {copy_key(spec, "eval", k) for k in range(256)}
    assert all(0 <= key < 2**32 for key in train | evaluation)
    assert len(train) == 256 and len(evaluation) == 256 and not train & evaluation  # no collision here
    trips = torch.arange(5000).expand(2, -1)
    same = probe_trips(spec, torch.tensor([next(iter(train))] * 2), trips)
    assert torch.equal(same[0], same[1]) and 0 < int(same[0].sum()) < 5000
    other = probe_trips(spec, torch.tensor(sorted(train)[:2]), trips)
    assert not torch.equal(other[0], other[1])
