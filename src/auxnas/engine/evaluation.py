"""Evaluation: a model's metrics pooled over a whole loader (over every process's part of it), and a saved
run's metrics on its test or validation split."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import build_splits
from ..distributed import Distributed
from ..methods import MultiTaskModel
from ..tasks import conventions
from .checkpoints import load_trained
from .loaders import make_loader
from .runtime import autocast, resolve_device, to_device


@torch.no_grad()
def evaluate_model(
    model: MultiTaskModel, loader: DataLoader, device: torch.device, amp: bool = True, progress: bool = False,
    desc: str = "eval", dist: Distributed | None = None, variant: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every task, pooled over the images of the whole ``loader`` that carry its label.

    ``variant``: the ``forward`` keywords of one of the model's ``evaluation_variants`` (None: its plain forward).

    Each task's metrics include ``num_images``, how many images they cover. With several processes (``dist``),
    each evaluates its part of the set (``evaluation_loader``) and the metrics pool every process's images: rank 0
    gathers the accumulators, merges them (``Metric.merge``) and hands the metrics to every process.
    """
    was_training = model.training
    model.eval()
    metrics = {name: task.new_metric() for name, task in model.tasks.items()}
    counts = dict.fromkeys(model.tasks, 0)
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch = to_device(batch, device)
        with autocast(device, amp):
            preds = model(batch["image"], **(variant or {}))
        for name, task in model.tasks.items():
            counts[name] += task.update_metric(metrics[name], preds[name].float(), batch)
    model.train(was_training)
    if dist is None or not dist.enabled:
        return {name: {**metric.compute(), "num_images": counts[name]} for name, metric in metrics.items()}
    parts, result = dist.gather_on_main((metrics, counts)), None
    if parts is not None:
        for other_metrics, other_counts in parts[1:]:
            for name in metrics:
                metrics[name].merge(other_metrics[name])
                counts[name] += other_counts[name]
        result = {name: {**metric.compute(), "num_images": counts[name]} for name, metric in metrics.items()}
    return dist.broadcast(result)


def is_better(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether ``value`` improves on ``best``; a non-finite value never does."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def evaluate(
    path: str | Path, split: str = "test", device: str = "auto", progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Metrics of a saved run (its best checkpoint) or checkpoint on the ``test`` or ``val`` split.

    Task -> its metrics, and under ``"conventions"`` task -> the loss and metric conventions the run was
    configured with (``Task.conventions``), which produced these numbers.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split: expected 'test' or 'val', got {split!r}")
    target = resolve_device(device)
    cfg, model, _ = load_trained(path, target)
    splits = build_splits(cfg.data, progress=progress)
    loader = make_loader(getattr(splits, split), cfg.data.batch_size, False, cfg.seed, cfg.data.num_workers)
    metrics = evaluate_model(model, loader, target, cfg.train.amp, progress, desc=split)
    return {**metrics, "conventions": conventions(model.tasks)}
