"""Figures of a run (architecture-weight trajectories, final link strengths) and of a comparison (each row's
difference to single-task with its interval)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig: plt.Figure, path: str | os.PathLike, title: str) -> Path:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_link_history(record: dict[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """One panel per link set (p2a/a2p per auxiliary task): every link's strength over training steps.

    a2p panels use a log scale: their strengths live near zero, where the pruning happens.
    """
    keys = list(record["names"])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    steps = record["steps"]
    for ax, key in zip(axes[0], keys):
        values = np.array([v[key] for v in record["values"]])
        for k, (target, source) in enumerate(record["names"][key]):
            ax.plot(steps, values[:, k], lw=1, label=f"{source}->{target}")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_ylabel("sigmoid(alpha)")
        if key.startswith("a2p"):
            ax.set_yscale("log")
            ax.set_ylim(max(1e-6, float(values.min()) / 2), 1.0)
        else:
            ax.set_ylim(-0.02, 1.02)
        if len(record["names"][key]) <= 12:
            ax.legend(fontsize=6, ncol=2)
    return _save(fig, path, title)


def plot_link_heatmap(record: dict[str, Any], path: str | os.PathLike, num_cells: int, title: str = "") -> Path:
    """Final strength of every link as a target-cell x source-cell matrix, one panel per link set."""
    keys = list(record["names"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        grid = np.full((num_cells, num_cells), np.nan)
        for (target, source), value in zip(record["names"][key], record["values"][-1][key]):
            grid[target, source] = value
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(key)
        ax.set_xticks(range(num_cells))
        ax.set_yticks(range(num_cells))
        ax.set_xlabel("source cell")
        ax.set_ylabel("target cell")
        fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path, title)


def _interval_panel(ax: plt.Axes, rows: list[str], values: list[dict[str, float]], scale: float = 1.0) -> None:
    """One point per row (``value``) with its 95 % interval (``low``, ``high``) as an error bar; an unbounded
    interval (infinite) is drawn as the point alone."""
    y = np.arange(len(rows))
    for k, v in enumerate(values):
        bounded = np.isfinite(v["low"]) and np.isfinite(v["high"])
        error = [[scale * (v["value"] - v["low"])], [scale * (v["high"] - v["value"])]] if bounded else None
        ax.errorbar(scale * v["value"], y[k], xerr=error, fmt="o" if bounded else "x", color="C0", capsize=4)
    ax.set_yticks(y, rows)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first row on top
    ax.locator_params(axis="x", nbins=6)


def plot_comparison(summary: dict[str, Any], path: str | os.PathLike) -> Path:
    """The figure of ``auxnas compare``: each row's difference to single-task on the main metric with its paired
    95 % interval and, when the comparison has a ceiling, each row's share of the floor-to-ceiling gap with its
    Fieller interval (an unbounded one as a cross without bars)."""
    info, table = summary["info"], summary["table"]
    main, higher = info["main_metric"], info["higher_is_better"][info["main_metric"]]
    rows = [row for row in table if row != "single"]
    shared = [row for row in rows if "share" in table[row]]
    fig, axes = plt.subplots(1, 2 if shared else 1, figsize=(11 if shared else 6, 1.2 + 0.5 * len(rows)),
                             squeeze=False)
    diffs = [table[row]["best"][main]["vs_single"] for row in rows]
    _interval_panel(axes[0][0], rows, [{**d, "value": d["mean_diff"]} for d in diffs])
    axes[0][0].axvline(0.0, color="grey", lw=1)
    axes[0][0].set_xlabel(f"Δ {main} vs single-task, 95 % interval ({'higher' if higher else 'lower'} is better)")
    if shared:
        shares = [table[row]["share"]["best"] for row in shared]
        _interval_panel(axes[0][1], shared, [{**s, "value": s["share"]} for s in shares], scale=100.0)
        for x in (0.0, 100.0):
            axes[0][1].axvline(x, color="grey", lw=1)
        axes[0][1].set_xlabel("share of the floor-to-ceiling gap closed (%), 95 % interval (x: unbounded)")
    return _save(fig, path, f"{info['data']}: will {', '.join(info['aux'])} help {info['primary']}?")
