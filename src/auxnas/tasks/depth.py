"""Depth (or disparity) regression: L1 loss and absolute / relative error pooled over every valid pixel.

One implementation serves both ``Depth("depth")`` and ``Depth("disparity")``; a target value of 0 (or
below) marks an invalid pixel. Predictions at a lower resolution than the target are resized bilinearly
to the target size in both loss and metric.
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import Metric, Task, as_float, dense_pred


class DepthMetric(Metric):
    """``abs_err`` = mean ``|p - g|`` and ``rel_err`` = mean ``|p - g| / g`` over all valid pixels of the set.

    Sums in float64; NaN before any valid pixel is seen. Units: ``abs_err`` in the target's unit,
    ``rel_err`` a plain ratio (not percent).
    """

    def __init__(self) -> None:
        self.count = 0
        self.abs_total = 0.0
        self.rel_total = 0.0

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the valid pixels of ``pred`` against ``target`` (both ``B x 1 x H x W``)."""
        pred = as_float(dense_pred(pred.detach(), target, 1, 1))
        target = as_float(target)
        valid = target > 0
        gt = target[valid]
        err = (pred[valid] - gt).abs()
        self.count += gt.numel()
        self.abs_total += float(err.sum())
        self.rel_total += float((err / gt).sum())

    def compute(self) -> dict[str, float]:
        """Pooled absolute and relative error."""
        if self.count == 0:
            return {"abs_err": math.nan, "rel_err": math.nan}
        return {"abs_err": self.abs_total / self.count, "rel_err": self.rel_total / self.count}


class Depth(Task):
    """Per-pixel positive scalar (1 channel): depth by default, disparity with ``name="disparity"``."""

    kind = "dense"
    out_channels = 1
    main_metric = "abs_err"
    delta_metrics = ("abs_err", "rel_err")

    def __init__(self, name: str = "depth") -> None:
        self.name = name
        self.higher_is_better = {"abs_err": False, "rel_err": False}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean absolute error over valid pixels (0 when no pixel is valid)."""
        pred = dense_pred(pred, target, 1, 1)
        valid = target > 0
        return (pred - target).abs()[valid].sum() / valid.sum().clamp(min=1)

    def new_metric(self) -> DepthMetric:
        """A fresh error accumulator."""
        return DepthMetric()
