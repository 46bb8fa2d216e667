"""Observation features against environments.md's table where the registry's own tests look
only at same-shaped intersections: the zero padding of an intersection with fewer incoming
lanes or fewer actions, `segment_counts`' normalisation, and `phase_onehot` in a phase that is
no action (the datasets' transition phase)."""

from __future__ import annotations

import torch

from envs.rl.features import OBSERVATIONS
from envs.rl.signal_env import BatchedSignalEnv
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import grid_roadnet, uniform_demand
from tests.scenarios import uneven_grid


def _one_road_short():
    """A 1x2 grid whose first intersection lost its western entry road: 9 incoming lanes, not 12."""
    roadnet = grid_roadnet(1, 2, road_length=150.0)
    gone = "road_0_1_0"
    roadnet["roads"] = [r for r in roadnet["roads"] if r["id"] != gone]
    for x in roadnet["intersections"]:
        x["roads"] = [r for r in x["roads"] if r != gone]
        keep = [k for k, link in enumerate(x["roadLinks"]) if link["startRoad"] != gone]
        renumber = {old: new for new, old in enumerate(keep)}
        x["roadLinks"] = [x["roadLinks"][k] for k in keep]
        if not x["virtual"]:
            x["trafficLight"]["roadLinkIndices"] = list(range(len(keep)))
            for p in x["trafficLight"]["lightphases"]:
                p["availableRoadLinks"] = [renumber[k] for k in p["availableRoadLinks"] if k in renumber]
    flow = uniform_demand(roadnet, rate_per_origin=900.0, horizon=300, seed=0)
    return scenario_from_dicts(roadnet, flow, name="one_road_short")


def _run(scenario, features, normalise, steps=10):
    env = BatchedSignalEnv(scenario, 1, episode_s=300, observations=features, normalise=normalise)
    env.reset(seed=0)
    for _ in range(steps):
        obs, *_ = env.step(torch.zeros(1, env.num_intersections, dtype=torch.int64))
    return env, obs


def test_lane_features_of_an_intersection_with_fewer_lanes_are_padded_with_zeros():
    env, obs = _run(_one_road_short(), ["lane_count", "segment_counts"], normalise=False, steps=5)
    lanes = env.layout.max_in_lanes
    real = int((env.layout.in_lanes[0] >= 0).sum())
    assert (lanes, real) == (12, 9)
    # the padding columns must stay 0 while every lane at their edges is busy: the first and the
    # last lane of the network hold vehicles now, so padding that read a real lane would show them
    counts = env.sim.state.lane_count[0, : env.network.num_lanes]
    assert counts[0] > 0 and counts[-1] > 0
    assert torch.all(obs[0, 0, real:lanes] == 0)
    segments = obs[0, 0, lanes:].reshape(lanes, 3)
    assert torch.all(segments[real:] == 0)
    assert segments[:real].sum() > 0  # the real lanes' segments do count vehicles


def test_segment_counts_are_normalised_by_a_segments_storage_of_50_m_over_7_5_m():
    scenario = _one_road_short()
    _, raw = _run(scenario, ["segment_counts"], normalise=False)
    _, norm = _run(scenario, ["segment_counts"], normalise=True)
    assert raw.max() >= 2  # a queue long enough that the scale shows
    torch.testing.assert_close(norm, raw / (50.0 / 7.5))


def test_pressure_is_zero_for_the_actions_an_intersection_does_not_have():
    env, obs = _run(uneven_grid(), ["pressure"], normalise=False, steps=12)
    assert env.layout.num_actions.tolist() == [3, 4, 4, 4]
    assert obs[0, 0, :3].abs().sum() > 0 and obs[0, 1:].abs().sum() > 0  # traffic to show
    assert obs[0, 0, 3] == 0  # a padding column, whatever phase 0's pressure is


def test_phase_onehot_is_all_zero_in_the_transition_phase_episodes_start_in(datasets_dir):
    env = BatchedSignalEnv("hangzhou_4x4", 1, episode_s=300, observations=["phase_onehot"])
    obs, _ = env.reset(seed=0)
    transition = env.sim.state.phase[0] == 0
    assert transition.all() and not (env.layout.action_phase == 0).any()  # phase 0 is no action
    assert torch.all(obs == 0)


def test_intersection_id_is_the_one_hot_of_each_intersections_own_index():
    env, obs = _run(uneven_grid(), ["intersection_id"], normalise=True, steps=1)
    # row i (intersection i, in layout order) has its 1 in column i: a shared policy tells them apart
    assert torch.equal(obs[0], torch.eye(env.num_intersections))


def _shared_lane_net():
    """The tiny SUMO fixture with a road CS south of C and both of WC's car lanes turning to each of CE, CN and CS
    in phase 0: each lane feeds three green movements, so pressure's per-movement sum counts it three times."""
    from tests.sumo_fixtures import NET
    extra = (
        '<edge id="CS" from="C" to="S"><lane id="CS_0" index="0" speed="8" length="50" shape="104,-5 104,-55"/>'
        '</edge>\n'
        '  <junction id="S" type="dead_end" x="105" y="-60"/>\n'
        '  <connection from="WC" to="CS" fromLane="1" toLane="0" tl="C" linkIndex="3" dir="r"/>\n'
        '  <connection from="WC" to="CE" fromLane="2" toLane="0" tl="C" linkIndex="4" dir="s"/>\n'
        '  <connection from="WC" to="CN" fromLane="1" toLane="0" tl="C" linkIndex="5" dir="l"/>\n'
        '  <connection from="WC" to="CS" fromLane="2" toLane="0" tl="C" linkIndex="6" dir="r"/>\n'
        '  <connection from="NC" to="CE"'
    )
    net = NET.replace('<connection from="NC" to="CE"', extra)
    for old, new in (("Ggr", "GgrGGgg"), ("yyr", "yyryyyy"), ("rrG", "rrGrrrr"), ("rry", "rryrrrr")):
        net = net.replace(f'state="{old}"', f'state="{new}"')
    return net


def test_pressure_stays_within_its_bounds_when_a_full_lane_feeds_several_green_movements(tmp_path):
    # Cologne 3 under poisson demand x5 showed pressure 16.5 over its declared high of 16.1: the bound summed each
    # incoming lane once while the feature counts a lane once per green movement it feeds
    from envs.scenario import scenario_from_sumo
    from tests.sumo_fixtures import write_tiny
    scenario = scenario_from_sumo(write_tiny(tmp_path / "shared", net=_shared_lane_net()), name="shared")
    for normalise in (False, True):
        env = BatchedSignalEnv(scenario, 1, episode_s=300, observations=["pressure"], normalise=normalise)
        env.reset(seed=0)
        most = env.feature_base.lane_max_vehicles
        state = env.sim.state
        counts = state.lane_count.clone()
        in_lanes = env.layout.in_lanes[env.layout.in_lanes >= 0]
        for full, empty in ((in_lanes, None), (None, in_lanes)):  # every entry full, exits empty; and the reverse
            counts.zero_()
            lanes = torch.arange(env.network.num_lanes)
            chosen = full if full is not None else lanes[~torch.isin(lanes, empty)]
            counts[0, chosen] = most[chosen].to(counts.dtype)
            obs = OBSERVATIONS["pressure"].compute(env.feature_base.at(state._replace(lane_count=counts)), normalise)
            assert obs.abs().max() > 0
            assert bool((obs <= env.obs_high).all() and (obs >= env.obs_low).all()), (normalise, obs, env.obs_high)
