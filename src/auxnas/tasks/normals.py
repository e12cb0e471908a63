"""Surface normal estimation: cosine (or L1) loss and angular-error statistics pooled over every valid pixel.

A pixel whose target is shorter than ``MIN_NORMAL_NORM`` (the all-zero vector, or a label pixel that encodes no
direction, such as the grey pixels of NYUv2 in the NDDR preprocessing) is invalid. The angle between prediction and
target is ``degrees(arccos(clamp(dot(p / |p|, g / |g|), -1, 1)))``; targets are unit vectors, so dividing by ``|g|``
only guards against labels that were resampled. Predictions at a lower resolution than the target are
resized bilinearly to the target size (before normalisation) in both loss and metric.

``normal_angle="nddr_encoded"`` measures instead the angle of NDDR-CNN, MTL-NAS, AdaShare and the Aux-NAS authors:
between the L2-normalised 0-255 encodings ``(n + 1) * 127.5`` of the unit prediction and of the unit target
(docs/tasks.md). It is not a surface-normal angle; it only makes numbers comparable with theirs.
``nddr_grey_normals="score"`` counts those grey pixels as labels, as the same authors do (docs/tasks.md).
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
#: ``nddr_grey_normals``: what a non-zero target shorter than ``MIN_NORMAL_NORM`` is; the default first
GREY_NORMALS = ("invalid", "score")
#: a target normal shorter than this encodes no direction (a decoded 8-bit normal has norm 1.00 +- 0.01)
MIN_NORMAL_NORM = 0.5


def valid_targets(target: Tensor, grey: str = "invalid") -> tuple[Tensor, Tensor]:
    """``target`` (``B x 3 x H x W``) and the ``B x H x W`` mask of its valid pixels.

    A target shorter than ``MIN_NORMAL_NORM`` is invalid. With ``grey="score"`` a non-zero one is valid instead
    (the nyuv2_nddr reader keeps its grey label pixels, such as (127, 127, 127), as their short decodings
    ``v / 127.5 - 1``): it becomes the unit vector ``n`` whose encoding ``n + 1`` points along the stored pixel's
    ``g + 1``, e.g. (1, 1, 1) / sqrt(3) for grey, so that the ``nddr_encoded`` angle to it is the authors' angle to
    the raw label.
    """
    norms = target.norm(dim=1)
    long = norms >= MIN_NORMAL_NORM
    if grey == "invalid":
        return target, long
    short = (norms > 0) & ~long
    if not bool(short.any()):
        return target, long
    # n = t * r - 1 with r = g + 1 (every component in (0.5, 1.5)) and |n| = 1: t^2 |r|^2 - 2 t sum(r) + 2 = 0
    r = target + 1
    total, squares = r.sum(dim=1, keepdim=True), (r * r).sum(dim=1, keepdim=True)
    t = (total + (total * total - 2 * squares).clamp(min=0).sqrt()) / squares
    return torch.where(short[:, None], t * r - 1, target), long | short


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

    Memory stays bounded however many pixels are seen (and data-parallel evaluation sends little to rank 0):
    exact float64 sums for the mean and RMSE, exact counts below each threshold, and for the median a histogram
    of ``BIN_WIDTH``-degree bins over [0, 180] (``merge`` adds the counts). The median is the mean of the centres
    of the bins holding the two middle values (of the one middle value for an odd count): within
    ``BIN_WIDTH / 2`` of the exact median. NaN before any valid pixel is seen. ``angle``: the true angle between
    unit vectors (``"unit"``) or the NDDR protocol's angle between encodings (``"nddr_encoded"``); ``grey``: whether
    short non-zero targets are scored (``valid_targets``).
    """

    #: degrees per histogram bin of the median
    BIN_WIDTH = 0.01
    BINS = round(180 / BIN_WIDTH)

    def __init__(self, angle: str = "unit", align_corners: bool = False, grey: str = "invalid") -> None:
        self.angle = choose("surface normals", "normal_angle", angle, NORMAL_ANGLES)
        self.grey = choose("surface normals", "nddr_grey_normals", grey, GREY_NORMALS)
        self.align_corners = align_corners
        self.histogram = torch.zeros(self.BINS, dtype=torch.int64)
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.within = [0] * len(THRESHOLDS)

    def pixel_angles(self, pred: Tensor, target: Tensor) -> Tensor:
        """The angular error (degrees) of every valid pixel of ``pred`` against ``target``, as ``update`` counts it."""
        pred = as_float(dense_pred(pred.detach(), target, 3, 3, self.align_corners))
        target, valid = valid_targets(as_float(target), self.grey)
        cos = cosines(pred, target, self.angle)[valid]
        return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the valid pixels of ``pred`` (``B x 3 x H x W``, any scale) against unit ``target`` normals."""
        angles = self.pixel_angles(pred, target)
        bins = (angles.double() / self.BIN_WIDTH).long().clamp(0, self.BINS - 1)
        self.histogram += torch.bincount(bins, minlength=self.BINS).cpu()
        self.count += angles.numel()
        self.total += float(angles.sum())
        self.total_sq += float((angles**2).sum())
        for i, t in enumerate(THRESHOLDS):
            self.within[i] += int((angles < t).sum())

    def merge(self, other: AngleMetric) -> None:
        self.histogram += other.histogram
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.within = [a + b for a, b in zip(self.within, other.within, strict=True)]

    def compute(self) -> dict[str, float]:
        """Angular statistics of every valid pixel seen."""
        names = ("mean_angle", "median_angle", "rmse_angle", *THRESHOLD_NAMES)
        if self.count == 0:
            return dict.fromkeys(names, math.nan)
        cumulative = self.histogram.cumsum(0)
        middle = [(self.count - 1) // 2, self.count // 2]  # 0-based positions of the middle value(s) in order
        bins = torch.searchsorted(cumulative, torch.tensor(middle), right=True)
        median = float((bins.double() + 0.5).mean()) * self.BIN_WIDTH
        values = [self.total / self.count, median, math.sqrt(self.total_sq / self.count),
                  *(w / self.count * 100 for w in self.within)]
        return dict(zip(names, values, strict=True))


class SurfaceNormals(Task):
    """Per-pixel unit surface normal (3 channels); ``postprocess`` L2-normalises the raw output."""

    KIND = "normals"
    kind = "dense"
    likelihood = "regression"
    out_channels = 3
    main_metric = "mean_angle"
    delta_metrics = ("mean_angle", "median_angle", *THRESHOLD_NAMES)
    LOSSES = ("cosine", "l1")

    def __init__(self, name: str = "normal", loss: str | None = None, normal_angle: str = "unit",
                 align_corners: bool = False, nddr_grey_normals: str = "invalid") -> None:
        self.name = name
        self.loss_name = choose(name, "loss", loss, self.LOSSES)
        self.normal_angle = choose(name, "normal_angle", normal_angle, NORMAL_ANGLES)
        self.nddr_grey_normals = choose(name, "nddr_grey_normals", nddr_grey_normals, GREY_NORMALS)
        self.align_corners = align_corners
        self.higher_is_better = {"mean_angle": False, "median_angle": False, "rmse_angle": False,
                                 **dict.fromkeys(THRESHOLD_NAMES, True)}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean over valid pixels (0 when none is) of ``1 - cos(pred, target)`` (``cosine``) or of the L1 distance
        ``sum_c |p_c / |p| - g_c / |g||`` between the unit vectors (``l1``)."""
        pred = dense_pred(pred, target, 3, 3, self.align_corners)
        target, valid = valid_targets(target, self.nddr_grey_normals)
        if self.loss_name == "l1":
            errors = (F.normalize(pred, dim=1) - F.normalize(target, dim=1)).abs().sum(dim=1)
        else:
            errors = 1 - cosines(pred, target)
        return errors[valid].sum() / valid.sum().clamp(min=1)

    def loss_normaliser(self, target: Tensor) -> Tensor:
        """Valid pixels (``valid_targets``)."""
        return valid_targets(target, self.nddr_grey_normals)[1].sum()

    def new_metric(self) -> AngleMetric:
        """A fresh angular-error accumulator."""
        return AngleMetric(self.normal_angle, self.align_corners, self.nddr_grey_normals)

    def conventions(self) -> dict[str, Any]:
        """Loss, ``align_corners``, ``normal_angle`` and ``nddr_grey_normals``."""
        return {**super().conventions(), "normal_angle": self.normal_angle, "nddr_grey_normals": self.nddr_grey_normals}

    def postprocess(self, pred: Tensor) -> Tensor:
        """Unit normals: the raw output L2-normalised over channels."""
        return F.normalize(pred, dim=1)

    def random_target(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """A uniformly random unit vector per pixel."""
        return F.normalize(torch.randn(real.shape, generator=generator), dim=0).to(real.dtype)
