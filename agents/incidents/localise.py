"""Localisation: one incident gives one report, at its place.

A closure near the start of a lane fills the few metres behind it at once, and the vehicles whose
route needs that lane can no longer leave the lanes that feed its road: they stand at their
stop lines through green with nothing crossing, which is exactly what the blockage rule looks
for (spillback). On the uniform held-out copies of the p = 5% sweep, 7 of `gap_rule`'s 8 false
alarms were such alarms, each raised while the closed lane's own alarm was already on
(benchmarks/false_alarms.py). A traffic system that sees a lane go quiet next to an incident it
already reports attaches it to that incident instead of reporting a new one; `localise` does the
same:

- ``downstream [N, N]`` (`downstream_lanes`): monitored lane x *feeds* lane y when a movement
  from x ends on y's road (x's vehicles can be held by y's queue);
- an alarm that switches on while a lane it feeds had an alarm on at the previous reading is
  *attached* to that alarm for its whole episode (until it switches off), not reported. An alarm
  downstream that is itself attached explains it too (spillback travels back lane by lane; all
  of it belongs to one incident). Only alarms already on count, so two lanes that switch on
  together are both reported, and an incident that shows itself after the spillback it causes
  is reported where the spillback is (nothing else would be known then).

It reads only alarms and the road network (which lanes feed which roads), as a traffic
management system would; the scoring is unchanged (an alarm is true only on the closed lane).
"""

from __future__ import annotations

import numpy as np
import torch

from envs.engine.intersections import lane_movements


def downstream_lanes(network, lanes: np.ndarray) -> np.ndarray:
    """``[N, N]`` bool over the monitored `lanes`: lane x feeds a movement that ends on lane y's road."""
    lanes_t = torch.as_tensor(lanes, device=network.lane_road.device)
    feeds = lane_movements(network)[lanes_t].to(torch.float32)  # [N, M]
    ends_on = (network.movement_end_road.unsqueeze(1) == network.lane_road[lanes_t].unsqueeze(0))  # [M, N]
    ends_on = ends_on & network.movement_valid.unsqueeze(1)
    return ((feeds @ ends_on.to(torch.float32)) > 0).cpu().numpy()


def localise(alarms: np.ndarray, downstream: np.ndarray | None) -> np.ndarray:
    """``[..., T, N]`` the alarms with every episode attached to an alarm downstream removed
    (module doc). ``downstream`` None (no road links known): the alarms unchanged."""
    alarms = np.asarray(alarms, dtype=bool)
    if downstream is None:
        return alarms.copy()
    if alarms.ndim > 2:
        return np.stack([localise(copy, downstream) for copy in alarms])
    feeds = np.asarray(downstream, dtype=bool)
    out = np.zeros_like(alarms)
    before = np.zeros(alarms.shape[1], dtype=bool)  # alarms on at the previous reading
    attached = np.zeros(alarms.shape[1], dtype=bool)  # the lane's current episode is attached
    for t in range(alarms.shape[0]):
        onset = alarms[t] & ~before
        if onset.any():  # (most readings start no alarm: skip the [N, N] test there)
            explained = (feeds[onset] & before[None, :]).any(1)  # a lane it feeds had an alarm on
            attached[onset] = explained
        out[t] = alarms[t] & ~attached
        before = alarms[t]
    return out


__all__ = ["downstream_lanes", "localise"]
