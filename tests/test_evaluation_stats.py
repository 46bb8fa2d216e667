"""The published statistics on tiny hand-built inputs whose answers are worked out by hand: the
bootstrap interval, the per-seed pairing of reductions, which rows the summary and the
degradation table read, and the refusals of inputs that would give a wrong figure silently."""

from __future__ import annotations

import numpy as np
import pytest

from envs.evaluation.report import PRIMARY, markdown_table, signals_report, summary
from envs.evaluation.stats import Estimate, bootstrap_mean, reduction_percent


def _row(controller: str, seed: int, travel: float, condition: str = "clean", throughput: float = 10.0) -> dict:
    return {"controller": controller, "seed": seed, "condition": condition, PRIMARY: travel,
            "travel_time/p50": 1.0, "travel_time/p95": 2.0, "throughput": throughput, "delay": 3.0}


def test_two_seeds_give_an_interval_from_the_one_to_the_other():
    # resample means of [0, 10]: 0, 5 or 10 with chances 1/4, 1/2, 1/4, so the 2.5% and 97.5%
    # quantiles are the two values themselves (a resampler that never drew one seed would not reach it)
    assert bootstrap_mean([0.0, 10.0]) == Estimate(5.0, 0.0, 10.0)
    assert bootstrap_mean([10.0, 0.0]) == Estimate(5.0, 0.0, 10.0)


def test_the_interval_of_symmetric_values_is_symmetric_about_their_mean():
    # 2.5% below and 2.5% above: for values symmetric about 5 the resample means are too (a 97.5% /
    # 98.75% split would put the top 14% further out)
    estimate = bootstrap_mean(np.linspace(0.0, 10.0, 41))
    assert estimate.mean == pytest.approx(5.0)
    assert estimate.high - estimate.mean == pytest.approx(estimate.mean - estimate.low, rel=0.03)


def test_an_estimate_prints_mean_then_low_then_high():
    assert Estimate(5.0, 1.0, 9.0).format() == "5.0 [1.0, 9.0]"
    assert Estimate(5.0, 1.25, 9.0).format(2, " s") == "5.00 s [1.25, 9.00]"


def test_bootstrap_refuses_no_values_naming_the_shape():
    with pytest.raises(ValueError, match=r"non-empty 1-D array of per-seed values, got shape \(0,\)"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)"):
        bootstrap_mean([[1.0, 2.0], [3.0, 4.0]])


def test_a_reduction_refuses_unpaired_seeds_instead_of_broadcasting():
    # one candidate value against two baseline seeds would broadcast into two "paired" reductions
    with pytest.raises(ValueError, match=r"paired values differ in shape: \(2,\) vs \(1,\)"):
        reduction_percent([100.0, 200.0], [90.0])


def test_reductions_pair_the_same_seed_whatever_the_row_order():
    # fixed_time 100 / 200 s and sotl 90 / 100 s on seeds 0 / 1: 10% and 50%, mean 30%
    rows = [_row("sotl", 0, 90.0), _row("fixed_time", 1, 200.0), _row("sotl", 1, 100.0), _row("fixed_time", 0, 100.0)]
    stats = summary(rows, ["fixed_time", "sotl"])
    assert stats["sotl"]["reduction_vs_fixed_time"].mean == pytest.approx(30.0)
    assert (stats["sotl"]["reduction_vs_fixed_time"].low, stats["sotl"]["reduction_vs_fixed_time"].high) == (10.0, 50.0)


def test_a_baseline_has_no_reduction_against_itself():
    rows = [_row("fixed_time", 0, 100.0), _row("max_pressure", 0, 80.0)]
    stats = summary(rows, ["fixed_time", "max_pressure"])
    assert "reduction_vs_fixed_time" not in stats["fixed_time"] and "reduction_vs_max_pressure" in stats["fixed_time"]
    assert "reduction_vs_max_pressure" not in stats["max_pressure"]
    table = markdown_table(stats, ["fixed_time", "max_pressure"], 1)
    # (100 - 80) / 100 = 20% for max_pressure vs fixed_time; (80 - 100) / 80 = -25% the other way
    assert "| fixed_time | 100.0 | 1.0 | 2.0 | 10 | 3.0 | — | -25.0 |" in table
    assert "| max_pressure | 80.0 | 1.0 | 2.0 | 10 | 3.0 | 20.0 | — |" in table


def test_under_a_perturbation_the_summary_is_of_the_perturbed_rows_and_the_change_is_against_the_clean_ones():
    rows = [_row("sotl", 0, 100.0), _row("sotl", 1, 100.0, throughput=50.0),
            _row("sotl", 0, 110.0, "surge"), _row("sotl", 1, 130.0, "surge", throughput=40.0)]
    stats, table = signals_report(rows, ["sotl"], ["clean", "surge"], 2)
    assert stats["sotl"][PRIMARY].mean == pytest.approx(120.0)  # the perturbed rows' mean
    assert "Under perturbation `surge`:" in table
    degradation = next(line for line in table.splitlines()[::-1] if line.startswith("| sotl |"))
    cells = [cell.strip() for cell in degradation.split("|")[1:-1]]
    # travel time: 100 -> 110 and 100 -> 130, +10% and +30%, mean +20%; throughput 10 -> 10, 50 -> 40: 0%, -20%
    assert cells[1:3] == ["100.0", "120.0"] and cells[3].startswith("20.0 [10.0, 30.0]")
    assert cells[4:6] == ["30", "25"] and cells[6].startswith("-10.0 [-20.0, 0.0]")
