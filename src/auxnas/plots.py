"""Figures of a run: architecture-weight trajectories and final link strengths."""

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
