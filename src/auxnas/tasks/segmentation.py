"""Semantic segmentation: per-pixel cross-entropy, mIoU and pixel accuracy from one confusion matrix.

Predictions at a lower resolution than the label map are resized bilinearly (as logits) to the label size
in both the loss and the metric.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Metric, Task, dense_pred


class ConfusionMetric(Metric):
    """Confusion matrix (rows = label, columns = prediction) over every non-ignored pixel of the set.

    ``miou``: mean IoU over the classes whose union is non-empty; ``pixel_acc``: correct / labelled pixels.
    Both in percent; NaN before any labelled pixel is seen.
    """

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the arg-max labels of ``pred`` (``B x C x H x W`` logits) against ``target`` (``B x H x W``)."""
        labels = dense_pred(pred.detach().float(), target, self.num_classes, None).argmax(dim=1).cpu().flatten()
        target = target.detach().cpu().flatten().long()
        keep = target != self.ignore_index
        labels, target = labels[keep], target[keep]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
            raise ValueError(f"segmentation labels must lie in [0, {self.num_classes}) or be {self.ignore_index}, "
                             f"got values in [{int(target.min())}, {int(target.max())}]")
        counts = torch.bincount(target * self.num_classes + labels, minlength=self.num_classes**2)
        self.confusion += counts.view(self.num_classes, self.num_classes)

    def compute(self) -> dict[str, float]:
        """mIoU and pixel accuracy of everything seen, in percent."""
        conf = self.confusion.double()
        total = float(conf.sum())
        if total == 0:
            return {"miou": math.nan, "pixel_acc": math.nan}
        hits = conf.diagonal()
        union = conf.sum(dim=0) + conf.sum(dim=1) - hits
        present = union > 0
        miou = float((hits[present] / union[present]).mean()) * 100
        return {"miou": miou, "pixel_acc": float(hits.sum()) / total * 100}


class Segmentation(Task):
    """Per-pixel classification into ``num_classes`` classes; label ``ignore_index`` marks unlabelled pixels."""

    kind = "dense"
    main_metric = "miou"
    delta_metrics = ("miou", "pixel_acc")

    def __init__(self, num_classes: int, name: str = "seg", ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be at least 1, got {num_classes}")
        self.name = name
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.ignore_index = ignore_index
        self.higher_is_better = {"miou": True, "pixel_acc": True}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy averaged over labelled pixels (0, still differentiable, when none is labelled)."""
        pred = dense_pred(pred, target, self.out_channels, None)
        total = F.cross_entropy(pred, target.long(), ignore_index=self.ignore_index, reduction="sum")
        return total / (target != self.ignore_index).sum().clamp(min=1)

    def new_metric(self) -> ConfusionMetric:
        """A fresh confusion matrix."""
        return ConfusionMetric(self.num_classes, self.ignore_index)
