"""Where do the gap rule's false alarms come from? Each false alarm of `gap_rule` (lane
detectors; agents/incidents/gap_rule.py), on training and held-out copies recorded exactly as
the sweep (benchmarks/incident_detection.py) records them, calibrated on the training copies:

    GRIDLIGHT_DATA_DIR=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/false_alarms.py \\
        --scenario hangzhou_4x4 --copies 32 --train-copies 32 --placements uniform,traffic

For the rule without and with localisation (``localised``, agents/incidents/localise.py) it
prints one JSON line per false alarm (``"kind": "false_alarm"``): copy, lane, time, what raised
it (blockage rule or lane gap), the lane's class, whether a closure was active in the copy then
and where the alarm's lane lies relative to the closed lane (``relation``: ``same_lane``,
``same_road``, ``feeds_closed_road`` — a movement from it ends on the closed lane's road —,
``upstream_road`` — its road ends where the closed road starts, but it does not feed it —,
``downstream``, ``same_intersection``, ``unrelated``), whether the closed lane's own alarm was on
at the previous reading, and the lane's last readings; then one summary line per (placement,
split, localised) (``"kind": "summary"``) with the scores, the false alarms by relation, and, for
permissive lanes in readings with no closure active in the copy (ordinary traffic), how many
lane-episodes of `waiting_green` reached each persistence the blockage rule can be given.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import evaluate  # noqa: E402
from agents.incidents.classifiers import lane_layout, waiting_green  # noqa: E402
from agents.incidents.gap_rule import GapRule  # noqa: E402
from benchmarks.common import emit, log  # noqa: E402
from benchmarks.incident_detection import check_sweep_args, compose_config, parse_args as sweep_args  # noqa: E402
from envs.errors import exit_on_error  # noqa: E402
from envs.incidents.detection import READINGS, record_sweep, score  # noqa: E402

PERSISTENCES_S = (5, 10, 15, 20, 30, 40)
HISTORY = 4  # readings shown per false alarm (the onset and the ones before it)


def relation(network, layout, lanes, alarm_n: int, closed_n: int) -> str:
    """Where monitored lane `alarm_n` lies relative to the closed monitored lane `closed_n`."""
    road = network.lane_road.cpu().numpy()[lanes]
    start, end = network.road_start.cpu().numpy(), network.road_end.cpu().numpy()
    a, c = road[alarm_n], road[closed_n]
    if alarm_n == closed_n:
        return "same_lane"
    if a == c:
        return "same_road"
    if layout.downstream[alarm_n, closed_n]:
        return "feeds_closed_road"
    if end[a] >= 0 and end[a] == start[c]:
        return "upstream_road"
    if layout.downstream[closed_n, alarm_n] or (start[a] >= 0 and start[a] == end[c]):
        return "downstream"
    if end[a] == end[c]:
        return "same_intersection"
    return "unrelated"


def false_alarms(recording, alarms, rule, layout, network, placement: str) -> list[dict]:
    column = {int(lane): n for n, lane in enumerate(recording.lanes)}
    out = []
    for b in range(alarms.shape[0]):
        raised = alarms[b]
        onset = raised & ~np.concatenate([np.zeros_like(raised[:1]), raised[:-1]], 0)
        blockage = rule._blockage_raw(recording.readings[b], layout)
        for t, n in zip(*np.nonzero(onset & ~recording.truth[b])):
            now = int(recording.times[t])
            closures = []
            for incident in recording.incidents[b]:
                closed = column[incident.lane]
                active = incident.start < now and now - recording.interval_s < incident.end
                closures.append({
                    "closed_lane": incident.lane, "start_s": incident.start, "end_s": incident.end,
                    "position_m": None if incident.position is None else round(float(incident.position), 1),
                    "lane_length_m": float(network.lane_length[incident.lane]), "active": bool(active),
                    "relation": relation(network, layout, recording.lanes, int(n), closed),
                    "closed_lane_alarm_on": bool(t > 0 and raised[t - 1, closed])})
            window = recording.readings[b, max(0, t - HISTORY + 1): t + 1, n]
            out.append({"benchmark": "false_alarms", "kind": "false_alarm", "placement": placement,
                        "split": recording.split, "localised": rule.localised, "copy": b,
                        "lane": int(recording.lanes[n]), "time_s": now,
                        "raised_by": "blockage_rule" if blockage[t, n] else "lane_gap",
                        "entry": bool(layout.entry[n]), "permissive": bool(layout.permissive[n]),
                        "closure_active": any(c["active"] for c in closures), "closures": closures,
                        "readings": {name: window[:, k].round(1).tolist() for k, name in enumerate(READINGS)}})
    return out


def ordinary_permissive_waits(recording, layout) -> dict:
    """Permissive-lane episodes of `waiting_green` (seconds) reaching each persistence, in
    readings with no closure active anywhere in the copy."""
    reached = Counter()
    for b, readings in enumerate(recording.readings):
        quiet = np.ones(len(recording.times), dtype=bool)
        for incident in recording.incidents[b]:
            quiet &= ~((recording.times > incident.start) & (recording.times - recording.interval_s < incident.end))
        waited = np.where(quiet[:, None], waiting_green(readings), 0.0)[:, layout.permissive]
        for s in PERSISTENCES_S:
            over = waited >= s
            reached[s] += int((over & ~np.concatenate([np.zeros_like(over[:1]), over[:-1]], 0)).sum())
    return {str(s): reached[s] for s in PERSISTENCES_S}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    parser.add_argument("--scenario", default="hangzhou_4x4")
    parser.add_argument("--copies", type=int, default=32)
    parser.add_argument("--train-copies", type=int, default=32)
    parser.add_argument("--placements", default="uniform,traffic")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with exit_on_error():  # a bad value: one "error: ..." line naming its flag, exit status 2
        check_sweep_args(sweep_args(["--scenario", args.scenario, "--copies", str(args.copies), "--train-copies",
                                     str(args.train_copies), "--placements", args.placements]),
                         "benchmarks/false_alarms.py")
    for placement in args.placements.split(","):
        sweep = sweep_args(["--scenario", args.scenario, "--copies", str(args.copies),
                            "--train-copies", str(args.train_copies)])
        cfg = compose_config(sweep, placement)
        start = time.perf_counter()
        scenario, perturbation = evaluate.detection_scenario(cfg)
        det, recordings = cfg.detection, {}
        for split, copies in (("train", args.train_copies), ("eval", args.copies)):
            recordings[split] = record_sweep(
                scenario, evaluate.build_controller(det.controller, cfg), perturbation, split, list(range(copies)),
                int(cfg.eval.steps), int(det.interval_s), evaluate.demand_spec(cfg.eval.demand, "eval.demand"),
                None, evaluate.engine_params(cfg), [])[0]
        log(f"{placement}: recorded in {time.perf_counter() - start:.0f} s")
        layout = lane_layout(scenario.network, recordings["train"].lanes)
        for localised in (False, True):
            rule = GapRule(localised=localised)
            chosen = rule.calibrate(recordings["train"], layout, precision=float(det.target_precision))
            for split, recording in recordings.items():
                alarms = np.stack([rule.detect(copy, layout) for copy in recording.readings])
                found = false_alarms(recording, alarms, rule, layout, scenario.network, placement)
                for line in found:
                    emit(line)
                by_relation = Counter(next((c["relation"] for c in f["closures"] if c["active"]), "no_closure_active")
                                      for f in found)
                scores = score(recording, alarms)
                emit({"benchmark": "false_alarms", "kind": "summary", "placement": placement, "split": split,
                      "localised": localised, "copies": int(recording.readings.shape[0]),
                      "calibrated": {k: chosen[k] for k in ("persist", "gap_m", "entry_persist", "entry_gap_m",
                                                            "use_blockage", "green_s", "permissive_green_s")},
                      "alarms": scores.alarms, "true_alarms": scores.true_alarms, "precision": scores.precision,
                      "recall": scores.recall, "mean_time_to_detect_s": scores.mean_time_to_detect_s,
                      "false_alarms_by_relation_to_an_active_closure": dict(by_relation),
                      "ordinary_permissive_waiting_green_episodes_reaching_s": ordinary_permissive_waits(
                          recording, layout)})


if __name__ == "__main__":
    main()
