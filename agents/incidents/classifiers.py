"""Incident classifiers over lane-detector data (envs/incidents/detection.py): a classical rule and a
learned model. Both read a copy's readings ``[T, N, F]`` (`envs.incidents.detection.READINGS`) and
return alarms ``[T, N]``, using at each reading only that reading and earlier ones. Besides the
readings they know only what the traffic system knows of its own lanes (`LaneLayout`): which
signal each lane runs into, and whether the signal plan shows it green in every phase (a
*permissive* lane, e.g. a free right turn). An alarm, once raised, stays on until the lane
discharges again (`hold_until_discharge`), so a classifier that wavers raises one alarm, not many.

- `BlockageRule` (classical, in the spirit of the California algorithms' persistence tests: a
  condition must persist before an alarm): a lane is blocked when a vehicle already stood at
  its stop line when its green came and, after ``green_s`` seconds of that green, still stands
  and nothing has crossed (`waiting_green`). A red light explains a standing queue; a green one
  that finds the queue waiting does not: on an open lane the first vehicle leaves within
  seconds. (A vehicle that arrives *during* the green can stop for reasons a green does not rule
  out — it reached the line as the green ended, or a turn waits for a gap in the stream filling
  its target lane — so that interval's green is not counted.) Permissive lanes show green all
  the time and their turning vehicles routinely wait for such gaps, so they get their own
  persistence, ``permissive_green_s``. `calibrate` picks, per lane class, the smallest
  persistence that reaches a precision on training data.
- `LearnedClassifier`: an MLP over the lane's last ``history`` readings, the discharge of the
  other lanes into its intersection (all of them, and those that had green with it), its zero-
  outflow run length, the rule's `waiting_green`, the lane gap (`agents.incidents.gaps.lane_gap`:
  empty road ahead of a halted vehicle, the trace of a mid-lane blockage), its lane class and
  whether vehicles enter the network on it (`LaneLayout.entry`). It
  scores only readings where a closure can have left a trace on the lane detectors
  (`lane_trace`: a vehicle stands at the stop line and nothing crosses, or the lane gap is
  positive), trained with torch on the training recordings as ``folds`` models, each on all but
  one fold of copies. Its alarm thresholds, one per lane class as the rule's persistences, are
  calibrated on the out-of-fold scores (scores of copies the scoring model never saw, so the
  calibration sees held-out-like precision, not the training fit's); it then scores with the
  mean of the fold models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from agents.incidents.gaps import lane_gap
from agents.incidents.localise import downstream_lanes
from envs.errors import CommandError, ConfigError
from envs.incidents.detection import COLUMN, Recording, score, scored_incidents
from envs.engine.intersections import always_green, lane_movements

SOURCE = "<incident classifier>"


def check_training(recording: Recording) -> None:
    """ConfigError unless `recording` holds training incidents (never calibrate on evaluation ones,
    nor on none: every threshold would be arbitrary)."""
    if recording.split != "train":
        raise ConfigError(SOURCE, "recording.split", recording.split,
                          "calibrate on training incidents only (record(..., split='train'))")
    if not any(recording.incidents):
        raise ConfigError(SOURCE, "recording.incidents", 0, "the training copies drew no incident: nothing to "
                          "calibrate on; record more copies or a longer run, or raise the incident rate")


@dataclass(frozen=True)
class LaneLayout:
    """Per monitored lane ``[N]``: the signalised intersection it runs into (``groups``), whether
    every movement it feeds is green in every signal phase of the plan (``permissive``) and
    whether vehicles enter the network on it (``entry``: its road comes from outside the network,
    where the engine inserts vehicles at standstill); ``downstream [N, N]``: which lanes each
    feeds (`agents.incidents.localise`; None: not known, alarms are not localised)."""

    groups: np.ndarray
    permissive: np.ndarray
    entry: np.ndarray
    downstream: np.ndarray | None = None


def intersection_groups(network, lanes: np.ndarray) -> np.ndarray:
    """The signalised intersection each monitored lane runs into ``[N]``."""
    return network.road_end[network.lane_road].cpu().numpy()[lanes]


def lane_layout(network, lanes: np.ndarray) -> LaneLayout:
    """The `LaneLayout` of the monitored `lanes`, from the network and its signal plan."""
    always = always_green(network).reshape(-1)  # [M]
    feeds = lane_movements(network)[torch.as_tensor(lanes, device=network.lane_road.device)]  # [N, M]
    permissive = (feeds & ~always.unsqueeze(0)).sum(1).eq(0) & feeds.any(1)
    entry = (network.road_start[network.lane_road] < 0).cpu().numpy()[lanes]  # from a virtual intersection
    return LaneLayout(intersection_groups(network, lanes), permissive.cpu().numpy(), entry,
                      downstream_lanes(network, lanes))


def _check(readings: np.ndarray, layout: LaneLayout) -> None:
    if readings.shape[-2] != layout.groups.shape[0]:
        raise ConfigError(SOURCE, "readings.shape", tuple(readings.shape),
                          f"readings cover {readings.shape[-2]} lanes, the layout {layout.groups.shape[0]}")


def _others_outflow(readings: np.ndarray, groups: np.ndarray, mates: np.ndarray | None = None) -> np.ndarray:
    """Per lane and reading, the outflow of the *other* lanes into the same intersection (only of
    the lanes in the ``[..., N]`` mask `mates`, when given)."""
    outflow = readings[..., COLUMN["outflow"]]  # [..., N]
    counted = outflow if mates is None else outflow * mates
    per_group = np.zeros(outflow.shape[:-1] + (int(groups.max()) + 1,))
    for g in np.unique(groups):
        per_group[..., g] = counted[..., groups == g].sum(-1)
    return per_group[..., groups] - counted


def _run_length(condition: np.ndarray) -> np.ndarray:
    """For ``[T, N]`` booleans, how many consecutive readings up to t the condition held."""
    out = np.zeros(condition.shape, dtype=np.int64)
    running = np.zeros(condition.shape[1:], dtype=np.int64)
    for t in range(condition.shape[0]):
        running = np.where(condition[t], running + 1, 0)
        out[t] = running
    return out


def standing(readings: np.ndarray, min_queue: float = 1.0) -> np.ndarray:
    """``[..., T, N]``: a vehicle stands at the stop line (first 50 m) and nothing crossed it."""
    r = readings
    # (the lane's mean speed is no help: vehicles still arriving behind the queue move)
    return ((r[..., COLUMN["seg0"]] >= min_queue) & (r[..., COLUMN["halting"]] >= min_queue)
            & (r[..., COLUMN["outflow"]] == 0))


def lane_trace(readings: np.ndarray) -> np.ndarray:
    """``[..., T, N]``: what a closure can show on the lane detectors: a vehicle `standing` at the
    stop line, or a halted vehicle with empty road ahead (a positive `lane_gap`)."""
    return standing(readings) | (lane_gap(readings) > 0)


def waiting_green(readings: np.ndarray, min_queue: float = 1.0) -> np.ndarray:
    """``[T, N]`` seconds of green that found a vehicle standing at the stop line and left it
    standing with nothing crossing, accumulated since the lane last discharged (or emptied)."""
    stuck = standing(readings, min_queue)
    found_waiting = np.concatenate([np.zeros_like(stuck[:1]), stuck[:-1]], 0)  # standing at the last reading
    green = readings[..., COLUMN["green"]]
    out = np.zeros(stuck.shape)
    running = np.zeros(stuck.shape[1:])
    for t in range(stuck.shape[0]):
        running = np.where(stuck[t], running + np.where(found_waiting[t], green[t], 0.0), 0.0)
        out[t] = running
    return out


def hold_until_discharge(alarms: np.ndarray, readings: np.ndarray) -> np.ndarray:
    """``[..., T, N]`` alarms kept on from their onset until the lane's outflow is non-zero."""
    out = np.array(alarms, dtype=bool, copy=True)
    quiet = readings[..., COLUMN["outflow"]] == 0
    for t in range(1, out.shape[-2]):
        out[..., t, :] |= out[..., t - 1, :] & quiet[..., t, :]
    return out


@dataclass
class BlockageRule:
    """See the module doc. ``green_s`` / ``permissive_green_s``: seconds of `waiting_green` that
    raise an alarm on signalised / permissive lanes."""

    green_s: float = 2.0
    permissive_green_s: float = 20.0
    min_queue: float = 1.0
    name: str = "blockage_rule"
    sensors = "lane"  # (class attribute) the sensor set its delays count from

    def raw_alarms(self, waited: np.ndarray, layout: LaneLayout) -> np.ndarray:
        """Alarms before holding: `waiting_green` at its lane class's persistence or more."""
        return waited >= np.where(layout.permissive, self.permissive_green_s, self.green_s)

    def _alarms(self, waited: np.ndarray, readings: np.ndarray, layout: LaneLayout) -> np.ndarray:
        return hold_until_discharge(self.raw_alarms(waited, layout), readings)

    def detect(self, readings: np.ndarray, layout: LaneLayout) -> np.ndarray:
        _check(readings, layout)
        return self._alarms(waiting_green(readings, self.min_queue), readings, layout)

    def calibrate(self, recording: Recording, layout: LaneLayout, precision: float = 0.95,
                  candidates=range(1, 121)) -> dict:
        """Set `green_s` and `permissive_green_s`, each to the smallest candidate that reaches
        `precision` on the alarms of its lane class in the recording (training split): together
        they then reach it too. Returns the figures of the chosen pair."""
        check_training(recording)
        _check(recording.readings, layout)
        waited = np.stack([waiting_green(copy, self.min_queue) for copy in recording.readings])
        self.green_s, self.permissive_green_s = _calibrate_per_class(
            recording, layout, lambda persistence: waited >= persistence, [float(c) for c in candidates], precision)
        final = score(recording, self._alarms(waited, recording.readings, layout))
        return {"green_s": self.green_s, "permissive_green_s": self.permissive_green_s, **final.as_dict()}


def _incident_lanes(recording: Recording) -> np.ndarray:
    """``[N]`` lanes with a scored closure in some copy of the recording."""
    hit = np.zeros(len(recording.lanes), dtype=bool)
    for copy in range(len(recording.incidents)):
        for _, n, _ in scored_incidents(recording, copy):
            hit[n] = True
    return hit


def _calibrate_per_class(recording: Recording, layout: LaneLayout, raw_alarms_at, candidates,
                         precision: float, hold=None, sensors: str = "lane") -> tuple[float, float]:
    """(signalised, permissive): per lane class, the value whose alarms ``raw_alarms_at(value)``
    ``[B, T, N]``, kept to the class's lanes and held (``hold(alarms)``; default: until the lane
    discharges), reach `precision`."""
    hold = hold or (lambda alarms: hold_until_discharge(alarms, recording.readings))
    chosen = []
    for members in (~layout.permissive, layout.permissive):
        def class_alarms(value, members=members):
            return hold(raw_alarms_at(value) & members)

        chosen.append(_calibrate_class(recording, class_alarms, candidates, precision, members, sensors))
    return chosen[0], chosen[1]


def _calibrate_class(recording: Recording, alarms_at, candidates, precision: float, members: np.ndarray,
                     sensors: str = "lane") -> float:
    """`_calibrate` on one lane class; a class without training incidents gets the most
    conservative candidate (any alarm there would be false), a class without lanes the first."""
    if not members.any():
        return candidates[0]
    if not (_incident_lanes(recording) & members).any():
        return candidates[-1]
    return _calibrate(recording, alarms_at, candidates, precision, sensors)[0]


def f1_score(scores) -> float:
    """F1 of a detector's `Scores` (precision 0 when it raised no alarm)."""
    p, r = (scores.precision if scores.alarms else 0.0), scores.recall
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _calibrate(recording: Recording, alarms_at, candidates, precision: float, sensors: str = "lane"):
    """(candidate, scores): the first candidate (in order: most sensitive first) whose alarms
    reach `precision` on the recording; if none does, the one with the best F1."""
    best, best_f1 = None, -1.0
    for candidate in candidates:
        scores = score(recording, alarms_at(candidate), sensors)
        if scores.alarms and scores.precision >= precision:
            return candidate, scores
        f1 = f1_score(scores)
        if f1 > best_f1:
            best, best_f1 = (candidate, scores), f1
    return best


# per-frame features: the readings, then what the rule and the neighbours add (module doc)
FRAME_SCALE = np.array([10, 10, 5, 5, 5, 10, 3, 10,  # READINGS
                        10, 10,  # other lanes' outflow into the intersection: all, those green too
                        30, 30, 50,  # zero-outflow run (readings), waiting green (s), lane gap (m)
                        1.0, 1.0])  # permissive lane, entry lane


def frame_features(readings: np.ndarray, layout: LaneLayout) -> np.ndarray:
    """``[T, N, 15]`` per reading and lane, roughly unit-scaled (see FRAME_SCALE)."""
    green = readings[..., COLUMN["green"]] > 0
    # lanes with green that is not permanent: their discharge shows what this green was worth
    signalled = green & ~layout.permissive
    others = _others_outflow(readings, layout.groups)
    others_green = _others_outflow(readings, layout.groups, signalled)
    silent = _run_length((readings[..., COLUMN["outflow"]] == 0) & (readings[..., COLUMN["seg0"]] >= 1))
    permissive = np.broadcast_to(layout.permissive, green.shape)
    entry = np.broadcast_to(layout.entry, green.shape)
    extra = np.stack([others, others_green, np.minimum(silent, 60), np.minimum(waiting_green(readings), 120),
                      lane_gap(readings), permissive, entry], -1)
    return np.concatenate([readings, extra], -1) / FRAME_SCALE


def window_features(readings: np.ndarray, layout: LaneLayout, history: int) -> np.ndarray:
    """``[T, N, history * 15]``: each lane's last `history` frames (oldest first; zero-padded)."""
    return stack_windows(frame_features(readings, layout), history)


def stack_windows(frame: np.ndarray, history: int) -> np.ndarray:
    """``[T, N, history * F]`` from per-reading features ``[T, N, F]`` (oldest first; zero-padded)."""
    steps, lanes, width = frame.shape
    padded = np.concatenate([np.zeros((history - 1, lanes, width)), frame], 0)
    windows = np.stack([padded[k : k + steps] for k in range(history)], 2)  # [T, N, H, F']
    return windows.reshape(steps, lanes, -1).astype(np.float32)


class LearnedClassifier:
    """A small MLP classifier of (lane, reading) windows; see the module doc. Subclasses change
    what it reads through `inputs` (features and gate), `hold` and `sensors`."""

    name = "learned_mlp"
    sensors = "lane"  # the sensor set whose first evidence its delays are measured from

    def inputs(self, readings: np.ndarray, layout: LaneLayout, probes: np.ndarray | None = None):
        """``(features [T, N, W], gate [T, N])``: the windows it scores and where it scores them."""
        return window_features(readings, layout, self.history), lane_trace(readings)

    def hold(self, alarms: np.ndarray, readings: np.ndarray, probes: np.ndarray | None = None) -> np.ndarray:
        return hold_until_discharge(alarms, readings)

    def _probes(self, recording: Recording, b: int):
        return None if recording.probes is None else recording.probes[b]

    def __init__(self, history: int = 6, hidden: int = 64, folds: int = 4, seed: int = 0) -> None:
        self.history, self.hidden, self.folds, self.seed = history, hidden, folds, seed
        self.models: list[nn.Module] = []
        self.threshold = self.permissive_threshold = 0.0  # on the mean logit: signalised / permissive lanes

    def _build(self, width: int, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(width, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden),
                             nn.ReLU(), nn.Linear(self.hidden, 1))

    def _train_one(self, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, progress) -> nn.Module:
        model = self._build(x.shape[1], seed)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.BCEWithLogitsLoss()
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            for start in range(0, len(x), 512):
                batch = order[start : start + 512]
                loss = loss_fn(model(x[batch]).squeeze(1), y[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if progress is not None:
                progress(1)
        return model.eval()

    def fit(self, recording: Recording, layout: LaneLayout, epochs: int = 30, precision: float = 0.95,
            log=print, progress=None) -> dict:
        """Train the fold models and calibrate the threshold (module doc); `progress(1)` is called
        once per epoch of each fold model. Returns the out-of-fold figures it was chosen on."""
        check_training(recording)  # calibration sees training incidents only (docs/incidents.md)
        _check(recording.readings, layout)
        copies = recording.readings.shape[0]
        folds = max(1, min(self.folds, copies))
        fold_of = np.arange(copies) % folds
        rows, gates = [], []  # per copy: the gated windows and their labels; the gates
        for b, readings in enumerate(recording.readings):
            features, gate = self.inputs(readings, layout, self._probes(recording, b))
            rows.append((features[gate], recording.truth[b][gate]))
            gates.append(gate)
        if not any(label.any() for _, label in rows):
            raise ConfigError(SOURCE, "recording.copies", copies, "the training recording holds no incident "
                              "reading that the classifier scores (its gate: a trace the closure left)")
        self.models, held_scores = [], [None] * copies
        for fold in range(folds):
            # one fold only: no copy is left out, the threshold is then calibrated in-sample
            train = [b for b in range(copies) if fold_of[b] != fold] or list(range(copies))
            x = torch.as_tensor(np.concatenate([rows[b][0] for b in train]))
            y = torch.as_tensor(np.concatenate([rows[b][1] for b in train]), dtype=torch.float32)
            model = self._train_one(x, y, self.seed + fold, epochs, progress)
            self.models.append(model)
            for b in np.flatnonzero(fold_of == fold):
                held_scores[b] = self._scores([model], recording.readings[b], layout, self._probes(recording, b))
            log(f"  learned classifier fold {fold + 1}/{folds}: {len(x)} readings, {int(y.sum())} of them incidents")
        held_scores = np.stack(held_scores)
        incident = np.concatenate([s[recording.truth[b] & gates[b]] for b, s in enumerate(held_scores)])
        candidates = list(np.unique(np.quantile(incident, np.linspace(0.0, 1.0, 201))))

        def hold(alarms):
            return self.hold(alarms, recording.readings, recording.probes)

        chosen = _calibrate_per_class(recording, layout, lambda threshold: held_scores >= threshold, candidates,
                                      precision, hold, self.sensors)
        self.threshold, self.permissive_threshold = (float(value) for value in chosen)
        alarms = hold(held_scores >= self._thresholds(layout))
        return {"threshold": self.threshold, "permissive_threshold": self.permissive_threshold,
                "probability": _sigmoid(self.threshold),
                "permissive_probability": _sigmoid(self.permissive_threshold),
                **score(recording, alarms, self.sensors).as_dict()}

    def _thresholds(self, layout: LaneLayout) -> np.ndarray:
        return np.where(layout.permissive, self.permissive_threshold, self.threshold)

    def _scores(self, models, readings: np.ndarray, layout: LaneLayout, probes: np.ndarray | None = None) -> np.ndarray:
        features, gate = self.inputs(readings, layout, probes)
        features = torch.as_tensor(features)
        with torch.no_grad():
            logits = torch.stack([m(features.reshape(-1, features.shape[-1])).reshape(features.shape[:2])
                                  for m in models]).mean(0).numpy()
        return np.where(gate, logits, -np.inf)

    def scores(self, readings: np.ndarray, layout: LaneLayout, probes: np.ndarray | None = None) -> np.ndarray:
        """``[T, N]`` the mean logit of the fold models (-inf outside the gate: where nothing
        stands at the line, for this class)."""
        if not self.models:
            raise CommandError(SOURCE, "models", [], "call fit() before scoring or detecting")
        _check(readings, layout)
        return self._scores(self.models, readings, layout, probes)

    def detect(self, readings: np.ndarray, layout: LaneLayout, probes: np.ndarray | None = None) -> np.ndarray:
        return self.hold(self.scores(readings, layout, probes) >= self._thresholds(layout), readings, probes)


def _sigmoid(logit: float) -> float:
    return float(1.0 / (1.0 + np.exp(-logit)))


__all__ = ["BlockageRule", "LaneLayout", "LearnedClassifier", "check_training", "f1_score", "frame_features",
           "hold_until_discharge", "intersection_groups", "lane_layout", "lane_trace", "stack_windows", "standing",
           "waiting_green", "window_features"]
