"""The accuracy benchmark's table of one setting (every row against single-task, per checkpoint and metric, with
Δm and the floor-to-ceiling gap share) and the positive controls' verdicts, from the runs' records."""

from __future__ import annotations

import statistics
from typing import Any

from ..delta import delta_m, task_delta_metrics
from ..stats import mean_std, paired_interval, ratio_interval
from ..tasks import Task
from .presets import BASELINES, CEILING, CONTROL_ROW, CONTROLS


def delta_metric_names(task: Task) -> list[str]:
    """The primary's Δm metrics; top-5 accuracy is left out with at most 5 classes, where it is 100 % always."""
    return [m for _, m in task_delta_metrics(task) if not (m == "top5" and getattr(task, "num_classes", 6) <= 5)]


def _outcome(interval: dict[str, Any], higher_is_better: bool) -> str:
    """better / worse / no difference, from the interval of a difference in the metric's own direction."""
    if interval["verdict"] == "no difference":
        return "no difference"
    return "better" if (interval["verdict"] == "higher") == higher_is_better else "worse"


def _cell(values: list[float], baseline: list[float] | None, higher_is_better: bool) -> dict[str, Any]:
    """Mean ± std over seeds and, against a baseline (same seed order), the paired 95 % interval."""
    mean, std = mean_std(values)
    cell: dict[str, Any] = {"values": values, "mean": mean, "std": std, "vs_single": None}
    if baseline is not None:
        interval = paired_interval(values, baseline)
        cell["vs_single"] = {**interval, "outcome": _outcome(interval, higher_is_better)}
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


def aggregate(runs: list[dict[str, Any]], info: dict[str, Any], rows: list[str], task: Task) -> dict[str, Any]:
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
                m: _cell([r[f"test_{which}"][m] for r in row_runs],
                         None if row == "single" else [r[f"test_{which}"][m] for r in single], task.higher_is_better[m])
                for m in metrics
            }
        entry["delta_m"] = {
            which: _cell([r["delta_m"][which] for r in row_runs],
                         None if row == "single" else [r["delta_m"][which] for r in single], True)
            for which in ("best", "last")
        }
        entry["best_epoch"] = mean_std([float(r["best_epoch"]) for r in row_runs])[0]
        entry["epochs"] = row_runs[0]["epochs"]
        entry["wall_time_s"] = mean_std([r["wall_time_s"] for r in row_runs])[0]
        a2p = [r["a2p_max"] for r in row_runs if r["a2p_max"] is not None]
        entry["a2p_max"] = mean_std(a2p)[0] if a2p else None
        if CEILING in by_row and row not in ("single", CEILING):
            main = task.main_metric
            entry["share"] = {which: gap_share([r[f"test_{which}"][main] for r in row_runs],
                                               [r[f"test_{which}"][main] for r in single],
                                               [r[f"test_{which}"][main] for r in by_row[CEILING]],
                                               task.higher_is_better[main]) for which in ("best", "last")}
        if BASELINES.get(row) in by_row:
            main, baseline = task.main_metric, by_row[BASELINES[row]]
            interval = paired_interval([r["test_best"][main] for r in row_runs],
                                       [r["test_best"][main] for r in baseline])
            entry["vs_baseline"] = {"row": BASELINES[row], "metric": main, **interval,
                                    "outcome": _outcome(interval, task.higher_is_better[main])}
        table[row] = entry
    return table


def control_verdicts(infos: dict[str, dict[str, Any]], tables: dict[str, Any]) -> dict[str, Any]:
    """Per positive control that ran: floor, ceiling, gap, every row's share (selected checkpoint, main metric) and
    whether it passed (``CONTROL_ROW``'s share interval bounded and above 0, the ceiling better than the floor);
    ``passed`` overall: every control passed (None when none ran)."""
    settings = {}
    for name in CONTROLS:
        if name not in tables:
            continue
        table, main = tables[name], infos[name]["main_metric"]
        shares = {row: entry["share"]["best"] for row, entry in table.items() if "share" in entry}
        head = shares.get(CONTROL_ROW)
        if head is None:
            passed, reason = None, f"not judged: the {CONTROL_ROW} row did not run"
        elif not head["bounded"] or head["gap"] <= 0:
            passed, reason = False, "the ceiling is not better than the floor beyond the seed spread"
        elif head["low"] <= 0:
            passed, reason = False, f"{CONTROL_ROW}'s share interval includes 0"
        else:
            passed, reason = True, f"{CONTROL_ROW}'s share interval lies above 0"
        floor, top = table["single"]["best"][main], table[CEILING]["best"][main]
        settings[name] = {
            "main_metric": main, "floor": {"mean": floor["mean"], "std": floor["std"]},
            "ceiling": {"mean": top["mean"], "std": top["std"]}, "gap": top["vs_single"], "shares": shares,
            "passed": passed, "reason": reason,
        }
    return {"row": CONTROL_ROW, "settings": settings,
            "passed": all(s["passed"] for s in settings.values()) if settings else None}
