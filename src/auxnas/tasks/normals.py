"""Surface normal estimation: cosine (or L1) loss and angular-error statistics pooled over every valid pixel.

A pixel whose target is the all-zero vector is invalid. The angle between prediction and target is
``degrees(arccos(clamp(dot(p / |p|, g / |g|), -1, 1)))``; targets are unit vectors, so dividing by ``|g|``
only guards against labels that were resampled. Predictions at a lower resolution than the target are
resized bilinearly to the target size (before normalisation) in both loss and metric.

``normal_angle="nddr_encoded"`` measures instead the angle of NDDR-CNN, MTL-NAS, AdaShare and the Aux-NAS authors:
between the L2-normalised 0-255 encodings ``(n + 1) * 127.5`` of the unit prediction and of the unit target
(docs/tasks.md). It is not a surface-normal angle; it only makes numbers comparable with theirs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Metric, Task, as_float, choose, dense_pred

#: ``within_T``: percentage of valid pixels whose angular error is strictly below T degrees
THRESHOLDS = (11.25, 22.5, 30.0)
THRESHOLD_NAMES = tuple(f"within_{t:g}" for t in THRESHOLDS)
#: ``normal_angle``: how the metric's angle is measured; the default first
NORMAL_ANGLES = ("unit", "nddr_encoded")


def _valid(target: Tensor) -> Tensor:
    """``B x H x W`` mask of pixels with a non-zero target normal."""
    return target.abs().sum(dim=1) > 0


def encoded(normals: Tensor) -> Tensor:
    """Unit normals (``B x 3 x H x W``, channels in [-1, 1]) -> their 0-255 image encoding ``(n + 1) * 127.5``."""
    return (normals + 1) * 127.5


def cosines(pred: Tensor, target: Tensor, angle: str = "unit") -> Tensor:
    """``B x H x W`` cosine of the angle ``angle`` measures (see the module) between ``pred`` and ``target``."""
    pred, target = F.normalize(pred, dim=1), F.normalize(target, dim=1)
    if angle == "nddr_encoded":
        pred, target = F.normalize(encoded(pred), dim=1), F.normalize(encoded(target), dim=1)
    return (pred * target).sum(dim=1)


class AngleMetric(Metric):
    """Mean, median and RMS angular error (degrees) and within-threshold percentages over all valid pixels.

    Sums are kept in float64; every angle is kept (float32) so the median is exact over the set
    (the mean of the two middle values for an even count). NaN before any valid pixel is seen. ``angle``: the
    true angle between unit vectors (``"unit"``) or the NDDR protocol's angle between encodings
    (``"nddr_encoded"``).
    """

    def __init__(self, angle: str = "unit", align_corners: bool = False) -> None:
        self.angle = choose("surface normals", "normal_angle", angle, NORMAL_ANGLES)
        self.align_corners = align_corners
        self.angles: list[Tensor] = []
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.within = [0] * len(THRESHOLDS)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the valid pixels of ``pred`` (``B x 3 x H x W``, any scale) against unit ``target`` normals."""
        pred = as_float(dense_pred(pred.detach(), target, 3, 3, self.align_corners))
        target = as_float(target)
        valid = _valid(target)
        cos = cosines(pred, target, self.angle)[valid]
        angles = torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
        self.angles.append(angles.float())
        self.count += angles.numel()
        self.total += float(angles.sum())
        self.total_sq += float((angles**2).sum())
        for i, t in enumerate(THRESHOLDS):
            self.within[i] += int((angles < t).sum())

    def merge(self, other: AngleMetric) -> None:
        self.angles.extend(other.angles)
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.within = [a + b for a, b in zip(self.within, other.within, strict=True)]

    def compute(self) -> dict[str, float]:
        """Angular statistics of every valid pixel seen."""
        names = ("mean_angle", "median_angle", "rmse_angle", *THRESHOLD_NAMES)
        if self.count == 0:
            return dict.fromkeys(names, math.nan)
        ordered = torch.cat(self.angles).double().sort().values
        mid = self.count // 2
        median = float(ordered[mid]) if self.count % 2 else float(ordered[mid - 1] + ordered[mid]) / 2
        values = [self.total / self.count, median, math.sqrt(self.total_sq / self.count),
                  *(w / self.count * 100 for w in self.within)]
        return dict(zip(names, values, strict=True))


class SurfaceNormals(Task):
    """Per-pixel unit surface normal (3 channels); ``postprocess`` L2-normalises the raw output."""

    kind = "dense"
    out_channels = 3
    main_metric = "mean_angle"
    delta_metrics = ("mean_angle", "median_angle", *THRESHOLD_NAMES)
    LOSSES = ("cosine", "l1")

    def __init__(self, name: str = "normal", loss: str | None = None, normal_angle: str = "unit",
                 align_corners: bool = False) -> None:
        self.name = name
        self.loss_name = choose(name, "loss", loss, self.LOSSES)
        self.normal_angle = choose(name, "normal_angle", normal_angle, NORMAL_ANGLES)
        self.align_corners = align_corners
        self.higher_is_better = {"mean_angle": False, "median_angle": False, "rmse_angle": False,
                                 **dict.fromkeys(THRESHOLD_NAMES, True)}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean over valid pixels (0 when none is) of ``1 - cos(pred, target)`` (``cosine``) or of the L1 distance
        ``sum_c |p_c / |p| - g_c / |g||`` between the unit vectors (``l1``)."""
        pred = dense_pred(pred, target, 3, 3, self.align_corners)
        valid = _valid(target)
        if self.loss_name == "l1":
            errors = (F.normalize(pred, dim=1) - F.normalize(target, dim=1)).abs().sum(dim=1)
        else:
            errors = 1 - cosines(pred, target)
        return errors[valid].sum() / valid.sum().clamp(min=1)

    def loss_normaliser(self, target: Tensor) -> Tensor:
        """Valid pixels (non-zero target normal)."""
        return _valid(target).sum()

    def new_metric(self) -> AngleMetric:
        """A fresh angular-error accumulator."""
        return AngleMetric(self.normal_angle, self.align_corners)

    def conventions(self) -> dict[str, Any]:
        """Loss, ``align_corners`` and ``normal_angle``."""
        return {**super().conventions(), "normal_angle": self.normal_angle}

    def postprocess(self, pred: Tensor) -> Tensor:
        """Unit normals: the raw output L2-normalised over channels."""
        return F.normalize(pred, dim=1)
