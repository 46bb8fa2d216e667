"""Evaluation reports: the markdown table and the PNG plots evaluate.py writes.

Input is one record per (controller, seed) with the metrics hub's figures, plus per-step
network queues and per-trip travel times for the plots. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from envs.evaluation.stats import bootstrap_mean, reduction_percent  # noqa: E402

PRIMARY = "travel_time/mean"
TABLE_COLUMNS = (
    ("travel_time/mean", "travel time mean (s)"),
    ("travel_time/p50", "p50 (s)"),
    ("travel_time/p95", "p95 (s)"),
    ("throughput", "throughput (trips)"),
    ("delay", "delay (s)"),
)
BASELINES = ("fixed_time", "max_pressure")
# every file evaluate.py may write into its run folder (both tasks; tests/test_evaluate.py and
# tests/test_detection.py check their runs write nothing else)
EVALUATION_OUTPUTS = ("table.md", "metrics.csv", "summary.json", "travel_time_bars.png", "travel_time_cdf.png",
                      "queue_over_time.png", "episode.gif", "incidents.csv", "detection.png")


def outputs_present(out_dir: Path) -> dict[str, tuple[int, int]]:
    """evaluate.py's outputs already in `out_dir` (a reused ``hydra.run.dir``): name -> (inode,
    mtime), to tell after the run which of them it did not write again."""
    present = {}
    for name in EVALUATION_OUTPUTS:
        if (out_dir / name).is_file():
            found = (out_dir / name).stat()
            present[name] = (found.st_ino, found.st_mtime_ns)
    return present


def remove_stale_outputs(out_dir: Path, earlier: dict[str, tuple[int, int]]) -> list[str]:
    """Remove those of `earlier` that the run did not write again (an old GIF or plot beside a
    table without them), once the run has written its own; returns their names. Nothing else
    in the folder is touched, and a run that fails removes nothing."""
    now = outputs_present(out_dir)  # one stat per output, not one pass per earlier file
    stale = [name for name, seen in earlier.items() if now.get(name) == seen]
    for name in stale:
        (out_dir / name).unlink()
    return stale


def per_seed(rows: list[dict], controller: str, metric: str) -> np.ndarray:
    """The metric's values of one controller, ordered by seed."""
    mine = sorted((r for r in rows if r["controller"] == controller), key=lambda r: r["seed"])
    return np.array([r[metric] for r in mine], dtype=np.float64)


def summary(rows: list[dict], controllers: list[str]) -> dict:
    """Mean and 95% CI of every table metric, and paired travel-time reductions vs baselines."""
    out = {}
    for name in controllers:
        entry = {metric: bootstrap_mean(per_seed(rows, name, metric)) for metric, _ in TABLE_COLUMNS}
        for base in BASELINES:
            if base in controllers and base != name:
                entry[f"reduction_vs_{base}"] = bootstrap_mean(
                    reduction_percent(per_seed(rows, base, PRIMARY), per_seed(rows, name, PRIMARY))
                )
        out[name] = entry
    return out


def summary_json(stats: dict, seeds: int) -> dict:
    """`summary`'s statistics as summary.json holds them: ``{"mean", "low", "high"}`` per figure, with
    ``low`` and ``high`` null for one seed, whose table shows no interval (a zero-width one says nothing)."""
    return {c: {k: {"mean": v.mean, "low": v.low if seeds > 1 else None, "high": v.high if seeds > 1 else None}
                for k, v in entry.items()} for c, entry in stats.items()}


def _shown(estimate, seeds: int, digits: int = 1) -> str:
    """The estimate with its CI, or its mean alone for one seed (a zero-width interval says nothing)."""
    return estimate.format(digits) if seeds > 1 else f"{estimate.mean:.{digits}f}"


def _interval_note(seeds: int) -> str:
    if seeds > 1:
        return (f"Means over {seeds} evaluation demand seed(s); [low, high] = 95% bootstrap confidence "
                "interval over seeds.")
    return "One evaluation demand seed: no confidence interval."


def markdown_table(stats: dict, controllers: list[str], seeds: int) -> str:
    bases = [b for b in BASELINES if b in controllers]
    head = ["controller", *(label for _, label in TABLE_COLUMNS)]
    head += [f"travel time reduction vs {b} (%)" for b in bases]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name in controllers:
        entry = stats[name]
        cells = [_shown(entry[PRIMARY], seeds)]
        cells += [
            f"{entry[m].mean:.0f}" if m == "throughput" else f"{entry[m].mean:.1f}"
            for m, _ in TABLE_COLUMNS[1:]
        ]
        for base in bases:
            key = f"reduction_vs_{base}"
            cells.append(_shown(entry[key], seeds) if key in entry else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(_interval_note(seeds) + (" Reductions are paired per seed: 100 × (baseline − controller) / "
                                           "baseline of the mean travel time." if bases else ""))
    return "\n".join(lines)


def degradation_table(clean: list[dict], perturbed: list[dict], controllers: list[str], seeds: int) -> str:
    """Per controller: clean and perturbed means, and the change, paired per seed with a 95%
    bootstrap CI (travel time: + = slower; throughput: - = fewer trips)."""
    head = ["controller", "travel time clean (s)", "travel time perturbed (s)", "travel time change (%)",
            "throughput clean", "throughput perturbed", "throughput change (%)"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    undefined = False
    for name in controllers:
        cells = []
        for metric in (PRIMARY, "throughput"):
            before, after = per_seed(clean, name, metric), per_seed(perturbed, name, metric)
            digits = 0 if metric == "throughput" else 1
            cells += [f"{before.mean():.{digits}f}", f"{after.mean():.{digits}f}"]
            if (before > 0).all():
                cells.append(_shown(bootstrap_mean(-reduction_percent(before, after)), seeds))
            else:  # e.g. no trip finished in a short clean episode: a change in % of 0 is undefined
                cells.append("—")
                undefined = True
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Changes are paired per seed over {seeds} evaluation demand seed(s): "
              "100 × (perturbed − clean) / clean." + ("" if seeds > 1 else " One seed: no confidence interval.")
              + (" —: the clean figure is 0 for some seed (no trip finished within eval.steps), so its change "
                 "in % is undefined." if undefined else "")]
    return "\n".join(lines)


ORACLE = "oracle_first_evidence"  # the row of the ideal evidence-based classifier
DETECTION_COLUMNS = (
    ("precision", "precision", 100.0, 1), ("recall", "recall", 100.0, 1),
    ("false_alarms_per_hour", "false alarms / h", 1.0, 2),
    ("mean_time_to_detect_s", "mean time to detect (s)", 1.0, 1),
    ("mean_time_from_evidence_s", "mean time from evidence (s)", 1.0, 1),
)


def signals_report(all_rows: list[dict], controllers: list[str], conditions: list[str], seeds: int):
    """``(stats, table)`` of evaluate.py: those of the last condition's rows (the perturbed one
    under a perturbation), with the degradation against the clean case under a perturbation."""
    shown = conditions[-1]
    rows = [r for r in all_rows if r["condition"] == shown]
    stats = summary(rows, controllers)
    table = markdown_table(stats, controllers, seeds)
    if len(conditions) > 1:
        clean_rows = [r for r in all_rows if r["condition"] == "clean"]
        table = (f"Under perturbation `{shown}`:\n\n{table}\n\nDegradation against the clean case "
                 f"(same demand seeds):\n\n{degradation_table(clean_rows, rows, controllers, seeds)}")
    return stats, table


def detection_intervals(tallies: dict[str, list], draws: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Per row: ``{"scores": Scores over all copies, figure: (low, high)}`` for every
    `DETECTION_COLUMNS` figure — the 95% bootstrap interval over copies (the same resamples for
    every row; NaN where no resample has the figure)."""
    from envs.incidents.detection import combine

    copies = len(next(iter(tallies.values())))
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, copies, copies) for _ in range(draws)]
    out = {}
    for name, per_copy in tallies.items():
        boots = [combine([per_copy[c] for c in sample]) for sample in samples]
        row = {"scores": combine(per_copy)}
        for figure, _, _, _ in DETECTION_COLUMNS:
            values = np.array([getattr(b, figure) for b in boots], dtype=float)
            values = values[np.isfinite(values)]
            low, high = np.quantile(values, [0.025, 0.975]) if values.size else (np.nan, np.nan)
            row[figure] = (float(low), float(high))
        out[name] = row
    return out


def detection_table(tallies: dict[str, list], draws: int = 1000, seed: int = 0, intervals: dict | None = None) -> str:
    """Markdown table of incident-detection scores, one row per classifier, from per-copy tallies
    (`envs.incidents.detection.tally`); [low, high] = 95% bootstrap interval over copies (the same
    resamples for every row; `intervals`: `detection_intervals`' result, already drawn)."""
    lines = ["| classifier | " + " | ".join(label for _, label, _, _ in DETECTION_COLUMNS)
             + " | alarms | incidents detected |", "|---|" + "---:|" * (len(DETECTION_COLUMNS) + 2)]
    for name, row in (intervals or detection_intervals(tallies, draws, seed)).items():
        overall, cells = row["scores"], []
        for figure, _, scale, digits in DETECTION_COLUMNS:
            low, high = row[figure]
            value = getattr(overall, figure)
            if math.isnan(value):  # no alarms (precision) or no detection (times): undefined, not "nan"
                cells.append("—")
                continue
            cells.append(f"{value * scale:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]")
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {overall.alarms} | {overall.detected}/{overall.incidents} |")
    return "\n".join(lines)


def detection_bars(results: dict, path: Path, title: str) -> None:
    """Precision and recall (%) per incident classifier against the 92% target, and mean time to
    detect against the 60 s target (the oracle's bar: the floor)."""
    names = list(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.2), dpi=110)
    x = np.arange(len(names))
    for k, figure in enumerate(("precision", "recall")):
        left.bar(x + (k - 0.5) * 0.35, [100 * results[n][figure] for n in names], 0.35, label=figure)
    left.axhline(92, color="black", linestyle="--", linewidth=1, label="target 92%")
    left.set_ylabel("%")
    left.set_ylim(0, 105)
    left.legend(loc="lower right")
    right.bar(x, [results[n]["mean_time_to_detect_s"] for n in names], 0.5, color="tab:green")
    right.axhline(60, color="black", linestyle="--", linewidth=1, label="target 60 s")
    right.set_ylabel("mean time to detect (s)")
    right.legend(loc="upper right")
    for ax in (left, right):  # a line per word: "first_evidence" and its neighbours overran each other
        ax.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@contextmanager
def _figure(path: Path, title: str, xlabel: str, ylabel: str, legend: bool = True):
    """One axes; labelled, saved to `path` and closed when the block ends."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    yield ax
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if legend:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bar_chart(stats: dict, controllers: list[str], path: Path, title: str) -> Path:
    means = [stats[c][PRIMARY].mean for c in controllers]
    low = [stats[c][PRIMARY].mean - stats[c][PRIMARY].low for c in controllers]
    high = [stats[c][PRIMARY].high - stats[c][PRIMARY].mean for c in controllers]
    with _figure(path, title, "", "mean travel time (s), 95% CI over seeds", legend=False) as ax:
        ax.bar(controllers, means, yerr=[low, high], capsize=6, color="#4c72b0")
        ax.tick_params(axis="x", rotation=15)
    return path


def travel_time_cdf(travel_times: dict[str, np.ndarray], path: Path, title: str) -> Path:
    with _figure(path, title, "travel time (s), all departed trips of all seeds", "fraction of trips") as ax:
        for name, values in travel_times.items():
            values = np.sort(values)
            if values.size:
                ax.plot(values, np.arange(1, values.size + 1) / values.size, label=name)
    return path


def queue_over_time(queues: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """`queues[controller]` is ``[steps, seeds]`` halting vehicles in the network."""
    with _figure(path, f"{title}\nmean over seeds (band: min-max)", "simulated time (s)",
                 "halting vehicles in the network") as ax:
        for name, series in queues.items():
            t = np.arange(1, series.shape[0] + 1)
            ax.plot(t, series.mean(1), label=name)
            if series.shape[1] > 1:
                ax.fill_between(t, series.min(1), series.max(1), alpha=0.15)
    return path


def signal_plots(out_dir: Path, stats: dict, controllers: list[str], travel: dict[str, np.ndarray],
                 queue: dict[str, np.ndarray], title: str) -> None:
    """evaluate.py's plots: ``travel[name]`` the per-trip travel times of a controller's copies,
    ``queue[name]`` their halting queue ``[steps, copies]``."""
    bar_chart(stats, controllers, out_dir / "travel_time_bars.png", title)
    travel_time_cdf(travel, out_dir / "travel_time_cdf.png", title)
    queue_over_time(queue, out_dir / "queue_over_time.png", title)


def training_curves(progress_csv: Path, path: Path, title: str) -> Path:
    """Mean travel time against agent-steps from a training run's ``progress.csv`` (the same
    scalars as its TensorBoard): training episodes, evaluations, and the baselines' levels."""
    import csv

    with open(progress_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))

    def series(key: str) -> tuple[np.ndarray, np.ndarray]:
        points = [(float(r["time/total_timesteps"]), float(r[key])) for r in rows
                  if r.get(key) not in (None, "") and r.get("time/total_timesteps") not in (None, "")]
        return np.array(points).reshape(-1, 2).T

    levels = []
    with _figure(path, title, "agent-steps", "mean travel time (s)") as ax:
        for key, label, style in (("rollout/travel_time/mean", "training episodes", ":"),
                                  ("eval/travel_time/mean", "policy on held-out eval demand", "-o")):
            if rows and key in rows[0]:
                x, y = series(key)
                ax.plot(x, y, style, label=label, markersize=3)
        for name in BASELINES:
            key = f"baseline/{name}/travel_time/mean"
            if rows and key in rows[0]:
                _, y = series(key)
                if y.size:
                    levels.append(y[-1])
                    ax.axhline(y[-1], linestyle="--", color="grey" if name == "fixed_time" else "black",
                               label=f"{name} (eval demand)")
        if levels:  # an untrained policy can be several times worse: keep the baselines readable
            ax.set_ylim(top=1.5 * max(levels))
    return path
