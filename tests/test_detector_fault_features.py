"""Detector faults reach the observation features computed from detector readings (pressure and
the per-movement counts), checked against a per-vehicle reference: each lane's reported count
split over its vehicles' next movements in their true shares, a count reported on an empty lane
evenly over the movements the lane feeds (`envs.incidents.movement_split`)."""

from __future__ import annotations

import pytest
import torch

from envs.engine.intersections import lane_movements
from envs.rl.signal_env import BatchedSignalEnv

NOISY = {"name": "noisy", "detectors": {"noise_std": 2.0, "dropout_p": 0.3}}  # stateless faults: re-readable
APPROACH_M, HORIZON_S = 100.0, 10.0  # the features' zones (envs.rl.movement_features)


def _run(features, perturbation, steps=30):
    env = BatchedSignalEnv("grid_4x4", copies=2, episode_s=600, observations=features, normalise=False,
                           demand={"mode": "poisson"}, perturbation=perturbation)
    env.reset(seed=3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        obs, *_ = env.step(torch.randint(0, 4, (2, env.network.num_intersections), generator=generator))
    return env, obs


def _vehicles(env):
    """Per copy: (lane, next movement, distance to the stop line, speed) of every vehicle."""
    state, network = env.sim.state, env.network
    out = []
    for b in range(state.veh_lane.shape[0]):
        rows = []
        for s in range(state.veh_lane.shape[1] - 1):
            lane = int(state.veh_lane[b, s])
            if lane >= 0:
                rows.append((lane, int(state.veh_move[b, s]), float(network.lane_length[lane] - state.veh_pos[b, s]),
                             float(state.veh_speed[b, s])))
        out.append(rows)
    return out


def _reported(env, name, counted):
    """What the env's detectors report of the counted vehicles, per lane ``[B, L]``, and the truth."""
    lanes = env.network.num_lanes
    true = torch.zeros(len(counted), lanes)
    for b, rows in enumerate(counted):
        for lane, *_ in rows:
            true[b, lane] += 1
    seen = env.detectors.apply(name, true, env.sim.state.t, upper=env.feature_base.lane_max_vehicles)
    return seen, true


def _split(env, name, counted):
    """The reference split ``[B, M]`` and the per-lane report ``[B, L]``."""
    seen, true = _reported(env, name, counted)
    feeds = lane_movements(env.network)
    out = torch.zeros(len(counted), env.network.num_movements, dtype=torch.float64)
    for b, rows in enumerate(counted):
        for lane, move, *_ in rows:
            if move >= 0:
                out[b, move] += float(seen[b, lane]) / float(true[b, lane])
        for lane in range(env.network.num_lanes):
            fed = torch.nonzero(feeds[lane]).flatten().tolist()
            if true[b, lane] == 0 and seen[b, lane] > 0 and fed:
                out[b, fed] += float(seen[b, lane]) / len(fed)
    return out, seen


def _halting(rows, env):
    return [r for r in rows if r[3] < env.sim.params.halting_speed]


def _expected(env, feature):
    vehicles, network = _vehicles(env), env.network
    halting_speed = env.sim.params.halting_speed
    if feature == "movement_queue":
        return _split(env, "lane_halting", [_halting(rows, env) for rows in vehicles])[0]
    if feature in ("movement_approach_moving", "movement_approach_halting"):
        want_halting = feature.endswith("halting")
        counted = [[r for r in rows if r[2] <= APPROACH_M and (r[3] < halting_speed) == want_halting]
                   for rows in vehicles]
        return _split(env, feature.removeprefix("movement_"), counted)[0]
    if feature == "effective_running":
        reach = network.lane_max_speed * HORIZON_S
        counted = [[r for r in rows if r[3] >= halting_speed and r[2] <= float(reach[r[0]])] for rows in vehicles]
        return _split(env, "lane_running", counted)[0]
    assert feature == "efficient_pressure"
    queue, seen = _split(env, "lane_halting", [_halting(rows, env) for rows in vehicles])
    for m in range(network.num_movements):
        exits = [lane for lane in network.movement_out_lanes[m].tolist() if lane >= 0]
        if not bool(network.movement_valid[m]):
            queue[:, m] = 0.0
        elif exits:
            queue[:, m] -= seen[:, exits].to(torch.float64).mean(1)
    return queue


@pytest.mark.parametrize("feature", ["movement_queue", "movement_approach_moving", "movement_approach_halting",
                                     "effective_running", "efficient_pressure"])
def test_per_movement_features_read_faulty_detectors_split_by_the_true_shares(feature):
    env, obs = _run([feature], NOISY)
    observed = obs.reshape(obs.shape[0], -1).to(torch.float64)  # [B, I, K] -> [B, M], m = i * K + k
    expected = _expected(env, feature)
    assert torch.allclose(observed, expected, atol=1e-4), float((observed - expected).abs().max())
    _, clean = _run([feature], None)
    assert not torch.equal(obs, clean)  # the same traffic (faults touch observations only), other readings
    assert float(expected.abs().sum()) > 0


def test_pressure_reads_faulty_lane_counts_on_both_sides_of_each_movement():
    env, obs = _run(["pressure"], NOISY)
    counts = env.sim.state.lane_count[:, : env.network.num_lanes].to(torch.float32)
    seen = env.detectors.apply("lane_count", counts, env.sim.state.t, upper=env.feature_base.lane_max_vehicles)
    network, layout = env.network, env.layout
    expected = torch.zeros_like(obs)
    for b in range(obs.shape[0]):
        for i in range(network.num_intersections):
            for a, phase in enumerate(layout.action_phase[i].tolist()):
                if phase < 0:
                    continue
                for k in torch.nonzero(network.phase_green[i, phase]).flatten().tolist():
                    m = i * network.phase_green.shape[2] + k
                    ins = [lane for lane in network.movement_in_lanes[m].tolist() if lane >= 0]
                    outs = [lane for lane in network.movement_out_lanes[m].tolist() if lane >= 0]
                    expected[b, i, a] += float(seen[b, ins].sum() - seen[b, outs].sum())
    assert torch.allclose(obs, expected, atol=1e-4)
    _, clean = _run(["pressure"], None)
    assert not torch.equal(obs, clean)


def test_only_segment_counts_stays_refused_under_faults_wrapped_or_not():
    from envs.errors import ConfigError
    from envs.rl.features import OBSERVATIONS
    from envs.rl.fault_reach import features_faults_miss

    # a new feature must say how faults reach it
    assert features_faults_miss(sorted(OBSERVATIONS)) == ["segment_counts"]
    assert features_faults_miss(["neighbour_mean:segment_counts", "neighbour_mean:movement_queue"]) == [
        "neighbour_mean:segment_counts"]
    with pytest.raises(ConfigError, match="detector faults do not reach") as error:
        BatchedSignalEnv("grid_1x1", demand={"mode": "poisson"}, perturbation=NOISY,
                         observations=["pressure", "neighbour_mean:segment_counts"])
    assert (error.value.field, error.value.value) == ("observations", ["neighbour_mean:segment_counts"])


def test_detectors_whose_faults_are_all_zero_refuse_no_feature():
    from envs.errors import ConfigError
    from envs.incidents.perturbations import DetectorFaultSpec
    from envs.rl.fault_reach import check_faults_reach

    # a detectors block with every fault at 0 changes no reading: segment_counts reads no worse
    # than a clean run's, so it is not refused (a fault that is on still refuses it)
    check_faults_reach(["segment_counts"], DetectorFaultSpec(), "<env>")
    check_faults_reach(["segment_counts"], None, "<env>")
    with pytest.raises(ConfigError, match="detector faults do not reach"):
        check_faults_reach(["segment_counts"], DetectorFaultSpec(dropout_p=0.1), "<env>")
