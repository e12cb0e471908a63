"""The table of a comparison: per row, every primary metric's mean ± std over seeds, the difference to single-task
with its 95 % interval paired by seed (``auxnas.stats``), Δm, and, where the primary is partially labelled, each
row's share of the floor-to-ceiling gap with its Fieller interval. A row is better or worse only when the interval
excludes 0."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from ..delta import delta_m, task_delta_metrics
from ..engine.record import STALLED_RATIO
from ..stats import mean_std, paired_interval, ratio_interval
from ..tasks import Task
from .rows import CEILING


def delta_metric_names(task: Task) -> list[str]:
    """The primary's Δm metrics; top-5 accuracy is left out with at most 5 classes, where it is 100 % always."""
    return [m for _, m in task_delta_metrics(task) if not (m == "top5" and getattr(task, "num_classes", 6) <= 5)]


def outcome(interval: dict[str, Any], higher_is_better: bool) -> str:
    """better / worse / no difference, from the interval of a difference in the metric's own direction."""
    if interval["verdict"] == "no difference":
        return "no difference"
    return "better" if (interval["verdict"] == "higher") == higher_is_better else "worse"


def cell(values: list[float], baseline: list[float] | None, higher_is_better: bool) -> dict[str, Any]:
    """Mean ± std over seeds and, against a baseline (same seed order), the paired 95 % interval."""
    mean, std = mean_std(values)
    cell: dict[str, Any] = {"values": values, "mean": mean, "std": std, "vs_single": None}
    if baseline is not None:
        interval = paired_interval(values, baseline)
        cell["vs_single"] = {**interval, "outcome": outcome(interval, higher_is_better)}
    return cell


def gap_share(values: list[float], floor: list[float], ceiling: list[float], higher_is_better: bool) -> dict[str, Any]:
    """The share of the floor-to-ceiling gap that ``values`` close (lists paired by seed): the mean of ``values -
    floor`` over the mean of ``ceiling - floor``, both in the metric's better direction, with its 95 % Fieller
    interval (``ratio_interval``; (-inf, inf) when the gap is not significantly non-zero). ``gap``: the mean of
    ``ceiling - floor`` in the better direction (positive: the ceiling is better)."""
    sign = 1.0 if higher_is_better else -1.0
    closed = [sign * (v - f) for v, f in zip(values, floor)]
    gaps = [sign * (c - f) for c, f in zip(ceiling, floor)]
    out = ratio_interval(closed, gaps)
    return {"share": out["ratio"], "low": out["low"], "high": out["high"], "bounded": out["bounded"], "n": out["n"],
            "gap": statistics.fmean(gaps)}


def aggregate(runs: list[dict[str, Any]], info: dict[str, Any], rows: list[str], task: Task,
              baselines: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One setting's table: per row and checkpoint (best, last), every primary metric and Δm against single;
    with a ceiling, every other row's share of the gap on the main metric (``share``).

    Adds each run's Δm to its record and the Δm metrics used (those with a non-zero single-task mean) to ``info``.
    """
    by_row = {row: sorted((r for r in runs if r["row"] == row), key=lambda r: r["seed"]) for row in rows}
    metrics = list(task.higher_is_better)
    base_mean = {which: {m: mean_std([r[f"test_{which}"][m] for r in by_row["single"]])[0] for m in metrics}
                 for which in ("best", "last")}
    scored = [m for m in info["delta_metrics"] if base_mean["best"][m] != 0 and base_mean["last"][m] != 0]
    pairs = [(task.name, m) for m in scored]
    directions = {(task.name, m): task.higher_is_better[m] for m in scored}
    info["delta_metrics_used"] = scored
    for row_runs in by_row.values():
        for r in row_runs:
            r["delta_m"] = {which: delta_m({task.name: r[f"test_{which}"]}, {task.name: base_mean[which]}, pairs,
                                           directions) for which in ("best", "last")}
    table: dict[str, Any] = {}
    for row, row_runs in by_row.items():
        single = by_row["single"]
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in row_runs]}
        for which in ("best", "last"):
            entry[which] = {
                m: cell([r[f"test_{which}"][m] for r in row_runs],
                         None if row == "single" else [r[f"test_{which}"][m] for r in single], task.higher_is_better[m])
                for m in metrics
            }
        entry["delta_m"] = {
            which: cell([r["delta_m"][which] for r in row_runs],
                         None if row == "single" else [r["delta_m"][which] for r in single], True)
            for which in ("best", "last")
        }
        entry["best_epoch"] = mean_std([float(r["best_epoch"]) for r in row_runs])[0]
        entry["epochs"] = row_runs[0]["epochs"]
        entry["wall_time_s"] = mean_std([r["wall_time_s"] for r in row_runs])[0]
        if halted := [r["seed"] for r in row_runs if r.get("primary_stalled")]:
            entry["stalled_seeds"] = halted
        a2p = [r["a2p_max"] for r in row_runs if r["a2p_max"] is not None]
        entry["a2p_max"] = mean_std(a2p)[0] if a2p else None
        links = [r["link_strengths"] for r in row_runs if r.get("link_strengths")]
        if links:  # each link's strength at the end of training, per position (stage or layer), mean over seeds
            entry["link_strengths"] = {key: [mean_std([run[key][i] for run in links])[0]
                                             for i in range(len(links[0][key]))] for key in links[0]}
        if CEILING in by_row and row not in ("single", CEILING):
            main = task.main_metric
            entry["share"] = {which: gap_share([r[f"test_{which}"][main] for r in row_runs],
                                               [r[f"test_{which}"][main] for r in single],
                                               [r[f"test_{which}"][main] for r in by_row[CEILING]],
                                               task.higher_is_better[main]) for which in ("best", "last")}
        if (baselines or {}).get(row) in by_row:
            main, baseline = task.main_metric, by_row[baselines[row]]
            interval = paired_interval([r["test_best"][main] for r in row_runs],
                                       [r["test_best"][main] for r in baseline])
            entry["vs_baseline"] = {"row": baselines[row], "metric": main, **interval,
                                    "outcome": outcome(interval, task.higher_is_better[main])}
        table[row] = entry
    return table


def stalled_text(table: Mapping[str, Any]) -> str | None:
    """The warning on the runs whose primary stopped learning (``engine.record.stalled``), or None when none did."""
    halted = [f"{row} seed{'s' if len(entry['stalled_seeds']) > 1 else ''} "
              + ", ".join(map(str, entry["stalled_seeds"])) for row, entry in table.items() if "stalled_seeds" in entry]
    if not halted:
        return None
    return ("**Stalled runs**: the primary stopped learning in " + "; ".join(halted) + " (its mean training loss over "
            f"the last third of training is at least {STALLED_RATIO} x its mean over the second tenth: a branch that "
            "no longer learns, often from too high a learning rate). Every number above includes them, and every "
            "interval paired with them is that much wider.")
