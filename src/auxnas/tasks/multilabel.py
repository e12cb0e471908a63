"""Multi-label classification (attributes, tags): any subset of ``num_classes`` classes per image.

A target is ``B x C`` floats, 1 where the image has the class and 0 where it has not; the head outputs one logit per
class. Loss (docs/tasks.md): ``binary_cross_entropy``, the mean over images and classes of the binary cross-entropy
of ``sigmoid(logit)``. Metrics, pooled over every labelled image of the set, in percent (higher is better):

* ``map`` (main): the mean over the classes with at least one positive image of their average precision,
  ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct scores in decreasing order (scikit-learn's
  ``average_precision_score``, no interpolation);
* ``f1``: micro F1 of the decisions ``sigmoid(logit) >= 0.5``, ``2 TP / (2 TP + FP + FN)`` over every (image,
  class) pair (NaN when there is no positive label nor decision);
* ``acc``: the share of (image, class) decisions at 0.5 that are right.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Metric, Task, choose


def _check(pred: Tensor, target: Tensor, num_classes: int) -> None:
    """Raise unless ``pred`` and ``target`` are both ``B x num_classes``."""
    if pred.dim() != 2 or pred.shape[1] != num_classes or target.shape != pred.shape:
        raise ValueError(f"expected a B x {num_classes} prediction and B x {num_classes} 0/1 labels, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """The average precision of ``scores`` (higher = more likely positive) against 0/1 ``labels`` (1-D, at least one
    positive): precision at each distinct score, weighted by the recall it adds."""
    order = torch.argsort(scores, descending=True, stable=True)
    scores, labels = scores[order], labels[order]
    last = torch.ones_like(scores, dtype=torch.bool)  # the last position of each run of equal scores
    last[:-1] = scores[1:] != scores[:-1]
    hits = labels.cumsum(0)[last]
    seen = torch.arange(1, len(scores) + 1, dtype=scores.dtype)[last]
    recall = hits / labels.sum()
    gained = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((gained * hits / seen).sum())


class MultiLabelMetric(Metric):
    """Every image's logits and labels, kept to rank them at the end (image-level: small); see the module."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.scores: list[Tensor] = []
        self.labels: list[Tensor] = []

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add ``B x C`` logits against ``B x C`` 0/1 labels."""
        _check(pred, target, self.num_classes)
        self.scores.append(pred.detach().to("cpu", torch.float64))
        self.labels.append(target.detach().to("cpu", torch.float64))

    def merge(self, other: MultiLabelMetric) -> None:
        self.scores.extend(other.scores)
        self.labels.extend(other.labels)

    def compute(self) -> dict[str, float]:
        """``map``, ``f1`` and ``acc`` in percent; NaN before any image is seen."""
        if not self.scores:
            return {"map": math.nan, "f1": math.nan, "acc": math.nan}
        scores, labels = torch.cat(self.scores), torch.cat(self.labels)
        aps = [average_precision(scores[:, c], labels[:, c]) for c in range(self.num_classes) if labels[:, c].any()]
        decided = scores >= 0
        positive = labels > 0.5
        tp = int((decided & positive).sum())
        wrong = int((decided != positive).sum())
        return {"map": sum(aps) / len(aps) * 100 if aps else math.nan,
                "f1": 2 * tp / (2 * tp + wrong) * 100 if tp + wrong else math.nan,
                "acc": (1 - wrong / labels.numel()) * 100}


class MultiLabel(Task):
    """Any subset of ``num_classes`` classes per image: one logit per class."""

    KIND = "multilabel"
    kind = "image"
    likelihood = "classification"
    main_metric = "map"
    delta_metrics = ("map", "f1")
    LOSSES = ("binary_cross_entropy",)

    def __init__(self, num_classes: int, name: str, loss: str | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be at least 1, got {num_classes}")
        self.name = name
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.loss_name = choose(name, "loss", loss, self.LOSSES)
        self.higher_is_better = {"map": True, "f1": True, "acc": True}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Binary cross-entropy of each logit, averaged over images and classes."""
        _check(pred, target, self.num_classes)
        return F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype))

    def new_metric(self) -> MultiLabelMetric:
        """A fresh accumulator of logits and labels."""
        return MultiLabelMetric(self.num_classes)

    def random_target(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """Each class present with probability 1/2: a uniformly random subset."""
        return torch.randint(2, real.shape, generator=generator).to(real.dtype)
