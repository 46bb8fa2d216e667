"""``rgb_array`` frames of one copy of the network: lanes coloured by queue, stop bars by signal.

Each lane is drawn beside its road's centre line (right-hand traffic, lane 0 innermost),
coloured from grey (empty) through yellow to red (full: vehicles / storage, storage = length /
7.5 m). At every intersection each incoming lane ends in a stop bar: green when a movement from
that lane has green, amber on yellow, red otherwise; except a lane whose movements are all
uncontrolled — a permissive green (SUMO's 'g') in every phase of their intersection, as the SUMO
importer writes an unsignalised junction (one all-permissive phase) and the unsignalised links of
a signal — which ends without a bar: no signal stops it. Virtual (boundary) nodes are not drawn.
Frames are ``uint8 [H, W, 3]``; `write_gif` saves a list of them.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from envs.engine.signals import signal_state
from envs.errors import CommandError
from envs.rl.features import VEHICLE_SPACING_M

SIZE_PX = 512
MARGIN_PX = 24
BACKGROUND = (250, 250, 248)
SOURCE = "<render>"
STOP_COLOURS = {"green": (20, 170, 60), "yellow": (240, 180, 0), "red": (210, 30, 30)}
# A GIF stores each frame's delay in whole hundredths of a second, and viewers show a delay under
# 0.02 s as 0.1 s: above 50 fps the delay was stored as 0 or 0.01 s and the GIF played at 10 fps
MAX_GIF_FPS = 50


def _queue_colour(fill: float) -> tuple[int, int, int]:
    fill = min(max(fill, 0.0), 1.0)
    if fill < 0.5:  # grey -> yellow
        k = fill / 0.5
        return (int(190 + 60 * k), int(190 + 30 * k), int(190 - 150 * k))
    k = (fill - 0.5) / 0.5  # yellow -> red
    return (250, int(220 - 200 * k), int(40 - 20 * k))


class _Geometry:
    """Pixel coordinates of every lane (start, end) for one network, computed once."""

    def __init__(self, core) -> None:
        roadnet = core.scenario.roadnet
        points = np.array([p for road in roadnet.roads for p in road.points], dtype=np.float64)
        lo, hi = points.min(0), points.max(0)
        span = max(float((hi - lo).max()), 1.0)
        scale = (SIZE_PX - 2 * MARGIN_PX) / span
        lane_px = max(1.5, min(4.0, 3.5 * scale))

        def to_px(p):
            x = MARGIN_PX + (p[0] - lo[0]) * scale
            y = SIZE_PX - MARGIN_PX - (p[1] - lo[1]) * scale
            return np.array([x, y])

        lanes = []
        for road in roadnet.roads:
            a, b = to_px(road.points[0]), to_px(road.points[-1])
            d = b - a
            length = float(np.hypot(*d)) or 1.0
            d = d / length
            right = np.array([-d[1], d[0]])  # image y points down: this is the driver's right
            for e in range(len(road.lanes)):
                offset = right * lane_px * (e + 0.6)
                shrink = d * min(6.0, length / 4)  # leave the intersection box clear
                lanes.append((a + offset + shrink, b + offset - shrink, d))
        self.lanes = lanes
        self.width = max(1, int(round(lane_px * 0.8)))
        # a stop bar spans its own lane only (lanes lie lane_px apart): a longer one painted over
        # the end of the lane drawn before it, showing that lane in its neighbour's colour
        self.bar_half_px = 0.4 * lane_px
        net = core.network
        self.lane_enters_signal = (net.road_end[net.lane_road] >= 0).tolist()
        free = uncontrolled_lanes(net)
        self.lane_has_bar = [enters and not f for enters, f in zip(self.lane_enters_signal, free)]


def uncontrolled_lanes(net) -> list[bool]:
    """Per lane: every movement from it is a permissive green in every phase of its intersection
    (it never sees red or a priority green); False for a lane that starts no movement."""
    phases = torch.arange(net.phase_green.shape[1]).unsqueeze(0) < net.num_phases.cpu().unsqueeze(1)  # [I, P]
    free_always = ((net.phase_green & net.phase_permissive).cpu() | ~phases.unsqueeze(-1)).all(1)  # [I, K]
    free = free_always.reshape(-1)  # [M]
    in_lanes = net.movement_in_lanes.cpu()  # [M, E]
    valid = in_lanes >= 0
    lanes = torch.where(valid, in_lanes, net.num_lanes).reshape(-1)
    starts = torch.zeros(net.num_lanes + 1, dtype=torch.int64).scatter_add_(0, lanes, valid.reshape(-1).to(torch.int64))
    controlled = (valid & ~free.unsqueeze(1)).reshape(-1).to(torch.int64)
    signalled = torch.zeros(net.num_lanes + 1, dtype=torch.int64).scatter_add_(0, lanes, controlled)
    return ((starts > 0) & (signalled == 0))[:net.num_lanes].tolist()


# lane pixels, worked out once per network and freed with it
_GEOMETRY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def render_frame(core, copy: int = 0) -> np.ndarray:
    """A frame of copy `copy` of a `BatchedSignalEnv` (or anything with .scenario, .network,
    .params and .sim)."""
    copies = int(core.sim.state.t.shape[0])
    if isinstance(copy, bool) or not isinstance(copy, (int, np.integer)) or not 0 <= copy < copies:
        raise CommandError(SOURCE, "copy", copy, f"expected a copy index in [0, {copies})")
    geometry = _GEOMETRY.get(core.network)
    if geometry is None:
        geometry = _GEOMETRY[core.network] = _Geometry(core)
    net, state = core.network, core.sim.state
    lanes = net.num_lanes
    counts = state.lane_count[copy, :lanes].to(torch.float32)
    fill = (counts / (net.lane_length / VEHICLE_SPACING_M).clamp(min=1.0)).tolist()
    green, yellow = signal_state(
        net, core.params, state.phase[copy : copy + 1], state.prev_phase[copy : copy + 1],
        state.phase_timer[copy : copy + 1],
    )
    in_lanes = net.movement_in_lanes  # [M, E]
    valid = in_lanes >= 0
    lane_ids = torch.where(valid, in_lanes, lanes).reshape(-1)

    def per_lane(movement_flag: torch.Tensor) -> list[bool]:
        flags = (movement_flag[0].unsqueeze(1) & valid).reshape(-1).to(torch.int64)
        out = torch.zeros(lanes + 1, dtype=torch.int64).scatter_add_(0, lane_ids.cpu(), flags.cpu())
        return (out[:lanes] > 0).tolist()

    lane_green, lane_yellow = per_lane(green), per_lane(yellow)

    image = Image.new("RGB", (SIZE_PX, SIZE_PX), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for lane, (a, b, d) in enumerate(geometry.lanes):
        draw.line([tuple(a), tuple(b)], fill=_queue_colour(fill[lane]), width=geometry.width)
        if geometry.lane_has_bar[lane]:
            colour = "green" if lane_green[lane] else "yellow" if lane_yellow[lane] else "red"
            normal = np.array([-d[1], d[0]]) * geometry.bar_half_px
            draw.line([tuple(b - normal), tuple(b + normal)], fill=STOP_COLOURS[colour], width=3)
    draw.text((6, 4), f"{core.scenario.name}  t={int(state.t[copy])} s", fill=(40, 40, 40))
    return np.asarray(image, dtype=np.uint8)


def write_gif(frames: list[np.ndarray], path: str | Path, fps: int = 4) -> Path:
    path = Path(path)
    if not frames:
        raise CommandError(SOURCE, "frames", len(frames), f"no frames to write to {path}")
    # 0 was a ZeroDivisionError and -1 an OverflowError inside PIL; NaN fails the range too
    number = isinstance(fps, (int, float, np.integer, np.floating)) and not isinstance(fps, bool)
    if not number or not 0 < fps <= MAX_GIF_FPS:
        raise CommandError(SOURCE, "fps", fps, f"must be in (0, {MAX_GIF_FPS}]: a GIF's frame delays are whole "
                           "hundredths of a second, and viewers show one under 0.02 s as 0.1 s")
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
