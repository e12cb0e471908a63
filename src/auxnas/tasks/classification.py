"""Image classification: cross-entropy (or an L2 loss on probabilities), top-1 and top-k accuracy in percent.

Targets are either hard labels (``B`` integers) or soft labels (``B x C`` class-probability vectors, e.g.
Taskonomy's distilled ``class_object`` / ``class_scene``); with soft labels, accuracy counts the argmax of the
target as the label. k = min(5, num_classes).

Losses (``loss``; docs/tasks.md): ``cross_entropy`` (default; with soft labels the cross-entropy against the
target distribution) and ``l2_soft``, the mean squared error between the softmax of the logits and the target
vector (a hard label as its one-hot vector): the Aux-NAS paper's Taskonomy loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Metric, Task, choose


def _check(pred: Tensor, target: Tensor, num_classes: int) -> None:
    """Raise unless ``pred`` is ``B x num_classes`` and ``target`` holds ``B`` labels or ``B`` soft-label vectors."""
    hard = target.shape == pred.shape[:1]
    soft = target.shape == pred.shape and target.is_floating_point()
    if pred.dim() != 2 or pred.shape[1] != num_classes or not (hard or soft):
        raise ValueError(f"expected a B x {num_classes} prediction and B labels or B x {num_classes} "
                         f"soft labels (floats), got {tuple(pred.shape)} and {tuple(target.shape)} {target.dtype}")


def hard_labels(target: Tensor) -> Tensor:
    """``B`` class indices: the labels themselves, or the argmax of soft labels."""
    return target.argmax(dim=1) if target.dim() == 2 else target.long()


class TopKMetric(Metric):
    """Counts of images whose label is the top prediction / among the top k; NaN before any image is seen."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.k = min(5, num_classes)
        self.count = 0
        self.top1 = 0
        self.topk = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add ``B x C`` logits against ``B`` labels (or ``B x C`` soft labels, scored by their argmax)."""
        _check(pred, target, self.num_classes)
        ranked = pred.detach().topk(self.k, dim=1).indices.cpu()
        hits = ranked == hard_labels(target.detach()).cpu().unsqueeze(1)
        self.count += hits.shape[0]
        self.top1 += int(hits[:, 0].sum())
        self.topk += int(hits.any(dim=1).sum())

    def merge(self, other: TopKMetric) -> None:
        self.count += other.count
        self.top1 += other.top1
        self.topk += other.topk

    def compute(self) -> dict[str, float]:
        """``top1`` and ``top5`` accuracy in percent (``top5`` uses k = min(5, num_classes))."""
        if self.count == 0:
            return {"top1": math.nan, "top5": math.nan}
        return {"top1": self.top1 / self.count * 100, "top5": self.topk / self.count * 100}


class Classification(Task):
    """One label per image among ``num_classes`` classes (e.g. ``object``, ``scene``), hard or soft."""

    KIND = "classification"
    kind = "image"
    likelihood = "classification"
    main_metric = "top1"
    delta_metrics = ("top1", "top5")
    LOSSES = ("cross_entropy", "l2_soft")

    def __init__(self, num_classes: int, name: str, loss: str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be at least 1, got {num_classes}")
        self.name = name
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.loss_name = choose(name, "loss", loss, self.LOSSES)
        self.higher_is_better = {"top1": True, "top5": True}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Averaged over the batch: cross-entropy (against a distribution for soft labels), or for ``l2_soft``
        ``mean over images and classes of (softmax(pred)_c - y_c)^2``."""
        _check(pred, target, self.num_classes)
        if self.loss_name == "l2_soft":
            soft = target.to(pred.dtype) if target.dim() == 2 else F.one_hot(target.long(), self.num_classes)
            return F.mse_loss(pred.softmax(dim=1), soft.to(pred.dtype))
        return F.cross_entropy(pred, target.to(pred.dtype) if target.dim() == 2 else target.long())

    def new_metric(self) -> TopKMetric:
        """A fresh top-k counter."""
        return TopKMetric(self.num_classes)

    def random_target(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """A uniformly random class; a soft-label vector has its entries randomly permuted instead (the same
        distribution of values, a uniformly random argmax)."""
        if real.is_floating_point() and real.dim() == 1:
            return real[torch.randperm(real.numel(), generator=generator)]
        return torch.randint(self.num_classes, real.shape, generator=generator, dtype=real.dtype)
