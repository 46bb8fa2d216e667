"""What a rendered frame shows (envs/rl/render.py): every incoming lane of a signal ends in a stop
bar of its movements' colour in the copy asked for (green, amber on yellow, red otherwise), every
lane is coloured by its queue, and the adapters' render() hands out those frames. The expected
colours are worked out here from the network's phase table, lane by lane, not by render's code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import envs
from envs.errors import CommandError
from envs.rl.features import VEHICLE_SPACING_M
from envs.rl.gym_env import TrafficSignalVectorEnv
from envs.rl.render import _GEOMETRY, SIZE_PX, STOP_COLOURS, _queue_colour, render_frame, write_gif
from envs.rl.signal_env import BatchedSignalEnv
from envs.scenario import load_scenario
from tests.conftest import find_datasets_dir

GREY, YELLOW, RED = (190, 190, 190), (250, 220, 40), (250, 20, 20)


def _pixel(frame: np.ndarray, point) -> tuple[int, ...]:
    x, y = (int(round(float(v))) for v in point)
    return tuple(int(c) for c in frame[y, x])


def _lanes_of(network, phase: int) -> set[int]:
    """The incoming lanes of intersection 0 that start a movement green in `phase`."""
    green = network.phase_green[0, phase].tolist()
    return {lane for k, on in enumerate(green) if on for lane in network.movement_in_lanes[k].tolist() if lane >= 0}


def _stop_bars(core, frame) -> dict[int, tuple[int, ...]]:
    geometry = _GEOMETRY[core.network]
    return {lane: _pixel(frame, geometry.lanes[lane][1])
            for lane, enters in enumerate(geometry.lane_enters_signal) if enters}


def _one_junction(decision_interval_s: int = 1) -> BatchedSignalEnv:
    core = BatchedSignalEnv("grid_1x1", 2, decision_interval_s=decision_interval_s, episode_s=600,
                            autoreset=False)
    core.reset(0)
    return core


def _hold(core, actions, seconds: int) -> None:
    for _ in range(seconds // core.config.decision_interval_s):
        core.step(torch.tensor(actions).reshape(2, 1))


def test_stop_bars_show_each_copys_own_phase_in_its_signal_colours():
    core = _one_junction()
    _hold(core, [0, 1], 30)  # copy 0 in its first signal phase, copy 1 in its second, both long green
    phases = core.sim.state.phase[:, 0].tolist()
    assert phases[0] != phases[1]
    for copy, phase in enumerate(phases):
        green = _lanes_of(core.network, phase)
        bars = _stop_bars(core, render_frame(core, copy))
        assert {lane for lane, colour in bars.items() if colour == STOP_COLOURS["green"]} == green, copy
        assert all(colour == STOP_COLOURS["red"] for lane, colour in bars.items() if lane not in green), copy
        assert set(bars) > green  # some bars are red, so a frame of the other copy would differ

    old, new = phases[0], phases[1]
    _hold(core, [1, 1], 1)  # copy 0 switches: 3 s of yellow, then 2 s of all-red
    old_lanes, new_lanes = _lanes_of(core.network, old), _lanes_of(core.network, new)
    kept, ending, starting = old_lanes & new_lanes, old_lanes - new_lanes, new_lanes - old_lanes
    assert ending and starting
    bars = _stop_bars(core, render_frame(core, 0))
    assert {lane for lane, c in bars.items() if c == STOP_COLOURS["yellow"]} == ending
    assert {lane for lane, c in bars.items() if c == STOP_COLOURS["green"]} == kept
    _hold(core, [1, 1], 3)  # all-red: the new movements are not green yet
    bars = _stop_bars(core, render_frame(core, 0))
    assert {lane for lane, c in bars.items() if c == STOP_COLOURS["green"]} == kept
    assert all(bars[lane] == STOP_COLOURS["red"] for lane in ending | starting)
    _hold(core, [1, 1], 1)  # the new green
    bars = _stop_bars(core, render_frame(core, 0))
    assert {lane for lane, c in bars.items() if c == STOP_COLOURS["green"]} == kept | starting


def test_queue_colour_runs_grey_to_yellow_to_red_and_holds_at_the_ends():
    assert _queue_colour(0.0) == GREY and _queue_colour(-1.0) == GREY
    assert _queue_colour(0.5) == YELLOW
    assert _queue_colour(1.0) == RED and _queue_colour(3.0) == RED
    quarter, three_quarters = _queue_colour(0.25), _queue_colour(0.75)
    assert quarter == (220, 205, 115) and three_quarters == (250, 120, 30)


def test_each_lane_is_drawn_in_the_colour_of_its_own_queue_in_the_copy_asked_for():
    core = _one_junction(decision_interval_s=5)
    _hold(core, [0, 1], 240)  # the approaches held at red queue, different ones in each copy
    state, net = core.sim.state, core.network
    frames = [render_frame(core, copy) for copy in range(2)]
    geometry = _GEOMETRY[net]  # built by the first frame
    storage = (net.lane_length / VEHICLE_SPACING_M).clamp(min=1.0).tolist()
    assert not torch.equal(state.lane_count[0], state.lane_count[1])
    for copy, frame in enumerate(frames):
        counts = state.lane_count[copy, : net.num_lanes].tolist()
        colours = []
        for lane, (start, end, direction) in enumerate(geometry.lanes):
            expected = _queue_colour(counts[lane] / storage[lane])
            colours.append(expected)
            across = np.array([-direction[1], direction[0]])  # a thin line: look a pixel either side too
            drawn = [_pixel(frame, (start + end) / 2 + k * across) for k in (-1, 0, 1)]
            # within 1 per channel: render divides in float32
            assert any(max(abs(a - b) for a, b in zip(pixel, expected)) <= 1 for pixel in drawn), (copy, lane)
        assert len(set(colours)) >= 3  # empty and queued lanes alike: the fill is per lane, not one shade


def test_a_frame_is_an_image_of_the_network_and_names_its_time():
    core = _one_junction()
    frame = render_frame(core, 1)
    assert frame.shape == (SIZE_PX, SIZE_PX, 3) and frame.dtype == np.uint8
    _hold(core, [0, 0], 7)
    later = render_frame(core, 1)
    # the caption's time moved on (the top strip holds only the caption)
    assert not np.array_equal(frame[:20], later[:20])


@pytest.mark.parametrize("copy", [2, -1, True, 0.0])
def test_a_copy_outside_the_batch_is_refused_naming_it(copy):
    with pytest.raises(CommandError, match=r"copy.*expected a copy index in \[0, 2\)"):
        render_frame(_one_junction(), copy)


def test_write_gif_saves_every_frame_at_the_frame_rate_and_refuses_none(tmp_path):
    core = _one_junction()
    frames = [render_frame(core, 0)]
    for _ in range(2):
        _hold(core, [0, 0], 5)
        frames.append(render_frame(core, 0))
    path = write_gif(frames, tmp_path / "episode.gif", fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.info["duration"] == 200
        gif.seek(2)
        assert np.array_equal(np.asarray(gif.convert("RGB"))[SIZE_PX // 2], frames[2][SIZE_PX // 2])
    with pytest.raises(CommandError, match="frames.*no frames to write"):
        write_gif([], tmp_path / "empty.gif")
    # 100: stored with 0 s delays, so viewers played it at 10 fps; 0 divided by zero, -1 overflowed in PIL
    for fps in (100, 0, -1, float("nan"), float("inf"), True, "5"):
        with pytest.raises(CommandError, match=r"fps.*must be in \(0, 50\]"):
            write_gif(frames, tmp_path / "fast.gif", fps=fps)
    assert not (tmp_path / "fast.gif").exists()


def test_the_adapters_render_the_frames_of_their_copies():
    vector = TrafficSignalVectorEnv(num_envs=2, render_mode="rgb_array", scenario="grid_1x1")
    vector.reset(seed=0)
    for _ in range(4):
        vector.step(np.array([[0], [1]]))
    frames = vector.render()
    assert len(frames) == 2 and not np.array_equal(frames[0], frames[1])
    for b in range(2):
        assert np.array_equal(frames[b], render_frame(vector.core, b))
    assert TrafficSignalVectorEnv(num_envs=2, scenario="grid_1x1").render() is None

    sb3 = envs.sb3_vec_env(scenario="grid_4x4", copies=2, render_mode="rgb_array")
    sb3.reset()
    for _ in range(4):
        sb3.step(np.array([0] * 16 + [1] * 16))
    images = sb3.get_images()
    assert len(images) == 32
    for n, image in enumerate(images):  # every agent gets its own copy's frame
        assert np.array_equal(image, render_frame(sb3.core, n // 16)), n
    assert not np.array_equal(images[0], images[16])

    pz = envs.parallel_env(scenario="grid_1x1", render_mode="rgb_array")
    pz.reset(seed=0)
    assert np.array_equal(pz.render(), render_frame(pz.core, 0))


def test_a_lane_shared_by_a_kept_and_an_ending_movement_shows_green_through_the_yellow(datasets_dir):
    # cologne1's signal has lanes that serve two movements: switching its phase 0 -> 1 keeps one of
    # them green and ends the other, and a vehicle on that lane may still go, so its bar stays green
    core = BatchedSignalEnv(load_scenario("resco_cologne1", data_dir=datasets_dir), 1, decision_interval_s=1,
                            episode_s=600, autoreset=False)
    core.reset(0)
    net = core.network
    signal = int(torch.nonzero(core.num_actions > 1)[0, 0])
    assert core.layout.action_phase[signal, :2].tolist() == [0, 1]  # action k shows phase k
    hold = [0] * net.num_intersections
    for seconds, action in ((30, 0), (1, 1)):  # a long green of phase 0, then the switch to 1
        hold[signal] = action
        for _ in range(seconds):
            core.step(torch.tensor([hold]))
    assert int(core.sim.state.phase_timer[0, signal]) < core.params.yellow_s  # in the yellow
    per_intersection = net.phase_green.shape[2]
    old, new = net.phase_green[signal, 0].tolist(), net.phase_green[signal, 1].tolist()
    movements_of_lane: dict[int, list[int]] = {}
    for k in range(per_intersection):
        for lane in net.movement_in_lanes[signal * per_intersection + k].tolist():
            if lane >= 0:
                movements_of_lane.setdefault(lane, []).append(k)
    expected = {}
    for lane, movements in movements_of_lane.items():
        kept = any(old[k] and new[k] for k in movements)
        ending = any(old[k] and not new[k] for k in movements)
        expected[lane] = "green" if kept else "yellow" if ending else "red"
    shared = [lane for lane, movements in movements_of_lane.items()
              if any(old[k] and new[k] for k in movements) and any(old[k] and not new[k] for k in movements)]
    assert shared and "yellow" in expected.values()
    bars = _stop_bars(core, render_frame(core, 0))
    assert {lane: bars[lane] for lane in expected} == {lane: STOP_COLOURS[c] for lane, c in expected.items()}


def _uncontrolled_lanes(network) -> set[int]:
    """Lanes all of whose movements are a permissive green in every phase of their intersection
    (SUMO's unsignalised junctions and links), from the phase table."""
    per_lane: dict[int, list[bool]] = {}
    movements = network.phase_green.shape[2]
    for i in range(network.num_intersections):
        phases = range(int(network.num_phases[i]))
        for k in range(movements):
            free = all(bool(network.phase_green[i, p, k] and network.phase_permissive[i, p, k]) for p in phases)
            for lane in network.movement_in_lanes[i * movements + k].tolist():
                if lane >= 0:
                    per_lane.setdefault(lane, []).append(free)
    return {lane for lane, flags in per_lane.items() if all(flags)}


def test_unsignalised_junctions_show_no_stop_bars():
    """resco_cologne1: one signal and two unsignalised junctions (one all-permissive phase each).
    Dataset test: run under CI=true, skipped elsewhere without the datasets."""
    find_datasets_dir()
    core = BatchedSignalEnv("resco_cologne1", 1, episode_s=600, autoreset=False)
    core.reset(0)
    for _ in range(12):
        core.step(torch.zeros(1, core.network.num_intersections, dtype=torch.int64))
    frame = render_frame(core, 0)
    geometry = _GEOMETRY[core.network]
    free = _uncontrolled_lanes(core.network)
    entering = {lane for lane, enters in enumerate(geometry.lane_enters_signal) if enters}
    assert free and entering - free  # both kinds are there
    stop_colours = set(STOP_COLOURS.values())
    for lane in entering:
        end = _pixel(frame, geometry.lanes[lane][1])
        assert (end not in stop_colours) if lane in free else (end in stop_colours), (lane, end)
