"""Localisation of incident alarms (agents/incidents/localise.py): an alarm explained by an alarm
already on downstream is attached to it, by hand; which lanes feed which, on the minimal
network; the gap rule with and without it on hand-built readings of a closure and its
spillback; calibration still takes training incidents only."""

from __future__ import annotations

import numpy as np
import pytest

from agents.incidents.classifiers import LaneLayout
from agents.incidents.gap_rule import GapRule
from agents.incidents.localise import downstream_lanes, localise
from envs.errors import ConfigError
from envs.incidents.detection import COLUMN, READINGS, Recording, monitored_lanes
from envs.scenario import scenario_from_dicts
from tests.minimal_scenario import assert_names_everything, minimal_flow, minimal_roadnet


def test_an_alarm_that_starts_while_a_lane_it_feeds_alarms_is_attached_to_it():
    # lane 0 feeds lane 1, lane 3 feeds lane 0, lane 2 feeds nothing
    downstream = np.zeros((4, 4), dtype=bool)
    downstream[0, 1] = downstream[3, 0] = True
    alarms = np.array([
        # 0  1  2  3
        [0, 0, 0, 0],
        [0, 1, 0, 0],  # t1: the closed lane alarms
        [1, 1, 1, 0],  # t2: lane 0 (feeds it) is attached; lane 2 (unrelated) is reported
        [1, 1, 1, 1],  # t3: lane 3 feeds lane 0, whose (attached) alarm is on: attached too
        [1, 0, 0, 1],  # t4: the closed lane's alarm ends; the attached episodes stay attached
        [0, 0, 0, 0],
        [1, 0, 0, 0],  # t6: a new episode on lane 0 with nothing on downstream: reported
    ], dtype=bool)
    expected = np.array([
        [0, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 1, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
    ], dtype=bool)
    np.testing.assert_array_equal(localise(alarms, downstream), expected)
    # copies [B, T, N] are localised one by one; no road links known: nothing changes
    np.testing.assert_array_equal(localise(np.stack([alarms, alarms]), downstream), np.stack([expected, expected]))
    np.testing.assert_array_equal(localise(alarms, None), alarms)


def test_alarms_that_start_together_are_both_reported():
    downstream = np.array([[False, True], [False, False]])  # lane 0 feeds lane 1
    alarms = np.array([[0, 0], [1, 1], [1, 1]], dtype=bool)
    np.testing.assert_array_equal(localise(alarms, downstream), alarms)


def _monitored_downstream(roadnet: dict, flow: list | None = None) -> np.ndarray:
    scenario = scenario_from_dicts(roadnet, flow or minimal_flow())
    return downstream_lanes(scenario.network, monitored_lanes(scenario))


def test_which_lanes_feed_which_on_the_minimal_network():
    # monitored: w_a's two lanes (ends at A), then a_b's two (ends at B); each of w_a's lanes links
    # to both of a_b's; a_b's lanes leave to virtual ends (not monitored)
    np.testing.assert_array_equal(_monitored_downstream(minimal_roadnet()),
                                  [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    roadnet = minimal_roadnet()
    links = roadnet["intersections"][1]["roadLinks"][0]
    links["laneLinks"] = [x for x in links["laneLinks"] if x["startLaneIndex"] != 0]  # w_a's lane 0: no link at A
    eastward = minimal_flow()[:1]  # (the northward flow needs that link)
    np.testing.assert_array_equal(_monitored_downstream(roadnet, eastward),
                                  [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])


def _readings(lanes: list[list[dict]]) -> np.ndarray:
    """``[T, N, F]`` from per lane a list of dicts of readings, one per reading (missing: 0)."""
    out = np.zeros((len(lanes[0]), len(lanes), len(READINGS)))
    for n, rows in enumerate(lanes):
        for t, row in enumerate(rows):
            for name, value in row.items():
                out[t, n, COLUMN[name]] = value
    return out


# lane 1 is closed mid-lane: a halted vehicle with the first 150 m empty (the lane gap) from t1;
# lane 0 feeds lane 1's road: from t2 a vehicle stands at its stop line through green with
# nothing crossing (the blockage rule's signature: the spillback)
CLOSED = [{}, {"halting": 1}, {"halting": 2}, {"halting": 2}, {"halting": 2}]
SPILLBACK = [{"green": 10}, {"green": 10}, {"halting": 1, "seg0": 1, "green": 10},
             {"halting": 1, "seg0": 1, "green": 10}, {"halting": 1, "seg0": 1, "green": 10}]
LAYOUT = LaneLayout(groups=np.array([0, 1]), permissive=np.array([False, False]), entry=np.array([False, False]),
                    downstream=np.array([[False, True], [False, False]]))


def test_the_gap_rule_reports_a_closure_once_at_its_place():
    readings = _readings([SPILLBACK, CLOSED])
    rule = GapRule(gap_m=100.0, persist=1)  # the blockage rule's default: 2 s of green that found it waiting
    assert rule.localised
    # lane 1 alarms at t1 (150 m of empty road ahead of its halted vehicle); lane 0's vehicle was
    # standing at t2 and a green found it still standing at t3: attached to lane 1's alarm
    np.testing.assert_array_equal(rule.detect(readings, LAYOUT), [[0, 0], [0, 1], [0, 1], [0, 1], [0, 1]])
    rule.localised = False
    np.testing.assert_array_equal(rule.detect(readings, LAYOUT), [[0, 0], [0, 1], [0, 1], [1, 1], [1, 1]])
    # without the closed lane's alarm the same standstill is reported where it is
    rule.localised = True
    alone = _readings([SPILLBACK, [{}] * 5])
    np.testing.assert_array_equal(rule.detect(alone, LAYOUT), [[0, 0], [0, 0], [0, 0], [1, 0], [1, 0]])


def test_localised_calibration_takes_training_incidents_only():
    readings = _readings([SPILLBACK, CLOSED])[None]
    held_out = Recording(readings, np.zeros(readings.shape[:-1], dtype=bool), np.array([0, 1]),
                         np.arange(1, 6) * 10, [[]], 10, split="eval")
    with pytest.raises(ConfigError, match="recording.split") as refused:
        GapRule().calibrate(held_out, LAYOUT)
    assert_names_everything(refused.value, "<incident classifier>", "recording.split", "eval")
    assert 'calibrate on training incidents only' in refused.value.reason
