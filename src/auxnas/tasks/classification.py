"""Image classification: cross-entropy, top-1 and top-k accuracy (k = min(5, num_classes)) in percent."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from .base import Metric, Task


def _check(pred: Tensor, target: Tensor, num_classes: int) -> None:
    """Raise unless ``pred`` is ``B x num_classes`` and ``target`` holds ``B`` labels."""
    if pred.dim() != 2 or pred.shape[1] != num_classes or target.shape != pred.shape[:1]:
        raise ValueError(f"expected a B x {num_classes} prediction and B labels, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")


class TopKMetric(Metric):
    """Counts of images whose label is the top prediction / among the top k; NaN before any image is seen."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.k = min(5, num_classes)
        self.count = 0
        self.top1 = 0
        self.topk = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add ``B x C`` logits against ``B`` labels."""
        _check(pred, target, self.num_classes)
        ranked = pred.detach().topk(self.k, dim=1).indices.cpu()
        hits = ranked == target.detach().cpu().long().unsqueeze(1)
        self.count += target.numel()
        self.top1 += int(hits[:, 0].sum())
        self.topk += int(hits.any(dim=1).sum())

    def compute(self) -> dict[str, float]:
        """``top1`` and ``top5`` accuracy in percent (``top5`` uses k = min(5, num_classes))."""
        if self.count == 0:
            return {"top1": math.nan, "top5": math.nan}
        return {"top1": self.top1 / self.count * 100, "top5": self.topk / self.count * 100}


class Classification(Task):
    """One label per image among ``num_classes`` classes (e.g. ``object``, ``scene``)."""

    kind = "image"
    main_metric = "top1"
    delta_metrics = ("top1", "top5")

    def __init__(self, num_classes: int, name: str) -> None:
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be at least 1, got {num_classes}")
        self.name = name
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.higher_is_better = {"top1": True, "top5": True}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy averaged over the batch."""
        _check(pred, target, self.num_classes)
        return F.cross_entropy(pred, target.long())

    def new_metric(self) -> TopKMetric:
        """A fresh top-k counter."""
        return TopKMetric(self.num_classes)
