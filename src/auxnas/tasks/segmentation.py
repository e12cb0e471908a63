"""Semantic segmentation: per-pixel cross-entropy, mIoU and pixel accuracy from one confusion matrix.

Predictions at a lower resolution than the label map are resized bilinearly (as logits) to the label size
in both the loss and the metric. mIoU averages over the classes present in the evaluation set (default) or over
all classes, absent ones counting 0 (``miou_classes="all"``, the Aux-NAS authors' code); docs/tasks.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Metric, Task, choose, dense_pred

#: ``miou_classes``: the classes mIoU averages over; the default first
MIOU_CLASSES = ("present", "all")


class ConfusionMetric(Metric):
    """Confusion matrix (rows = label, columns = prediction) over every non-ignored pixel of the set.

    ``miou``: mean IoU over the classes whose union is non-empty (``miou_classes="present"``), or over all
    ``num_classes`` with an IoU of 0 for those that never occur (``"all"``); ``pixel_acc``: correct / labelled
    pixels. Both in percent; NaN before any labelled pixel is seen.
    """

    def __init__(self, num_classes: int, ignore_index: int, miou_classes: str = "present",
                 align_corners: bool = False) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.miou_classes = choose("segmentation", "miou_classes", miou_classes, MIOU_CLASSES)
        self.align_corners = align_corners
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the arg-max labels of ``pred`` (``B x C x H x W`` logits) against ``target`` (``B x H x W``)."""
        pred = dense_pred(pred.detach().float(), target, self.num_classes, None, self.align_corners)
        labels = pred.argmax(dim=1).cpu().flatten()
        target = target.detach().cpu().flatten().long()
        keep = target != self.ignore_index
        labels, target = labels[keep], target[keep]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
            raise ValueError(f"segmentation labels must lie in [0, {self.num_classes}) or be {self.ignore_index}, "
                             f"got values in [{int(target.min())}, {int(target.max())}]")
        counts = torch.bincount(target * self.num_classes + labels, minlength=self.num_classes**2)
        self.confusion += counts.view(self.num_classes, self.num_classes)

    def merge(self, other: ConfusionMetric) -> None:
        self.confusion += other.confusion

    def compute(self) -> dict[str, float]:
        """mIoU and pixel accuracy of everything seen, in percent."""
        conf = self.confusion.double()
        total = float(conf.sum())
        if total == 0:
            return {"miou": math.nan, "pixel_acc": math.nan}
        hits = conf.diagonal()
        union = conf.sum(dim=0) + conf.sum(dim=1) - hits
        present = union > 0
        iou = hits[present] / union[present]
        miou = float(iou.mean() if self.miou_classes == "present" else iou.sum() / self.num_classes) * 100
        return {"miou": miou, "pixel_acc": float(hits.sum()) / total * 100}


class Segmentation(Task):
    """Per-pixel classification into ``num_classes`` classes; label ``ignore_index`` marks unlabelled pixels."""

    KIND = "segmentation"
    kind = "dense"
    likelihood = "classification"
    main_metric = "miou"
    delta_metrics = ("miou", "pixel_acc")
    LOSSES = ("cross_entropy",)

    def __init__(self, num_classes: int, name: str = "seg", ignore_index: int = 255, loss: str | None = None,
                 miou_classes: str = "present", align_corners: bool = False) -> None:
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be at least 1, got {num_classes}")
        self.name = name
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.ignore_index = ignore_index
        self.loss_name = choose(name, "loss", loss, self.LOSSES)
        self.miou_classes = choose(name, "miou_classes", miou_classes, MIOU_CLASSES)
        self.align_corners = align_corners
        self.higher_is_better = {"miou": True, "pixel_acc": True}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy averaged over labelled pixels (0, still differentiable, when none is labelled)."""
        pred = dense_pred(pred, target, self.out_channels, None, self.align_corners)
        total = F.cross_entropy(pred, target.long(), ignore_index=self.ignore_index, reduction="sum")
        return total / (target != self.ignore_index).sum().clamp(min=1)

    def loss_normaliser(self, target: Tensor) -> Tensor:
        """Labelled pixels."""
        return (target != self.ignore_index).sum()

    def new_metric(self) -> ConfusionMetric:
        """A fresh confusion matrix."""
        return ConfusionMetric(self.num_classes, self.ignore_index, self.miou_classes, self.align_corners)

    def random_target(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """A uniformly random class per pixel."""
        return torch.randint(self.num_classes, real.shape, generator=generator, dtype=real.dtype)

    def conventions(self) -> dict[str, Any]:
        """Loss, ``align_corners`` and ``miou_classes``."""
        return {**super().conventions(), "miou_classes": self.miou_classes}
