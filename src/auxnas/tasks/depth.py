"""Depth (or disparity) regression: a loss over valid pixels, absolute / relative error pooled over every valid pixel.

One implementation serves both depth (``Depth``) and disparity (``Disparity``, which differs in its random targets,
and which augmentation's zoom scales the other way); a target value of 0 (or below) marks an invalid pixel.
Predictions at a lower resolution than the target are resized bilinearly to the target size in both loss and
metric.

Losses (``loss``; docs/tasks.md): ``l1`` (default), ``mse`` (the Aux-NAS paper's disparity loss) and ``ssi``, the
scale-and-shift-invariant loss of Ranftl et al. (MiDaS; the paper's depth loss): per image, the least-squares scale
and shift that align the prediction to the target over its valid pixels, then the mean absolute error of the
aligned prediction. The metrics always measure the prediction as it is (not aligned).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Metric, Task, as_float, choose, dense_pred


class DepthMetric(Metric):
    """``abs_err`` = mean ``|p - g|`` and ``rel_err`` = mean ``|p - g| / g`` over all valid pixels of the set.

    Sums in float64; NaN before any valid pixel is seen. Units: ``abs_err`` in the target's unit,
    ``rel_err`` a plain ratio (not percent).
    """

    def __init__(self, align_corners: bool = False) -> None:
        self.align_corners = align_corners
        self.count = 0
        self.abs_total = 0.0
        self.rel_total = 0.0

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the valid pixels of ``pred`` against ``target`` (both ``B x 1 x H x W``)."""
        pred = as_float(dense_pred(pred.detach(), target, 1, 1, self.align_corners))
        target = as_float(target)
        valid = target > 0
        gt = target[valid]
        err = (pred[valid] - gt).abs()
        self.count += gt.numel()
        self.abs_total += float(err.sum())
        self.rel_total += float((err / gt).sum())

    def merge(self, other: DepthMetric) -> None:
        self.count += other.count
        self.abs_total += other.abs_total
        self.rel_total += other.rel_total

    def compute(self) -> dict[str, float]:
        """Pooled absolute and relative error."""
        if self.count == 0:
            return {"abs_err": math.nan, "rel_err": math.nan}
        return {"abs_err": self.abs_total / self.count, "rel_err": self.rel_total / self.count}


def scale_and_shift(pred: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Per image, the ``(s, t)`` minimising ``sum over valid pixels of (s * pred + t - target)^2`` (closed form).

    All three are ``B x 1 x H x W``; returns two ``B`` vectors, differentiable in ``pred``:
    ``s = sum (p - mean p)(g - mean g) / sum (p - mean p)^2`` and ``t = mean g - s * mean p`` over the valid pixels
    (the normal equations, written centred for round-off). An image whose valid predictions are all equal (up to
    round-off) or that has fewer than two valid pixels has no unique solution: it gets ``s = 0`` and ``t`` = the
    mean of its valid targets (0 without any).
    """
    mask = valid.to(pred.dtype)
    dims = (1, 2, 3)
    n = mask.sum(dims, keepdim=True).clamp(min=1)
    mean_p, mean_g = (mask * pred).sum(dims, keepdim=True) / n, (mask * target).sum(dims, keepdim=True) / n
    centred_p, centred_g = mask * (pred - mean_p), mask * (target - mean_g)
    spread = (centred_p * centred_p).sum(dims)
    mean_p, mean_g, n = mean_p.flatten(), mean_g.flatten(), n.flatten()
    # constant up to round-off: relative spread of the predictions below ~64 machine epsilons
    floor = n * (64 * torch.finfo(pred.dtype).eps) ** 2 * ((mask * pred * pred).sum(dims) / n)
    solvable = (spread > floor) & (spread > 0)
    scale = (centred_p * centred_g).sum(dims) / torch.where(solvable, spread, torch.ones_like(spread))
    scale = torch.where(solvable, scale, torch.zeros_like(scale))
    return scale, mean_g - scale * mean_p


class Depth(Task):
    """Per-pixel positive distance (1 channel): depth."""

    KIND = "depth"
    kind = "dense"
    likelihood = "regression"
    #: the range of the noise control's uniform random targets
    RANDOM_RANGE = (0.5, 10.0)
    out_channels = 1
    main_metric = "abs_err"
    delta_metrics = ("abs_err", "rel_err")
    LOSSES = ("l1", "mse", "ssi")

    def __init__(self, name: str = "depth", loss: str | None = None, align_corners: bool = False) -> None:
        self.name = name
        self.loss_name = choose(name, "loss", loss, self.LOSSES)
        self.align_corners = align_corners
        self.higher_is_better = {"abs_err": False, "rel_err": False}

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Over the valid pixels of the batch (0 when none is): mean ``|p - g|`` (``l1``), mean ``(p - g)^2``
        (``mse``) or mean ``|s p + t - g|`` with each image's least-squares ``s, t`` (``ssi``)."""
        pred = dense_pred(pred, target, 1, 1, self.align_corners)
        valid = target > 0
        if self.loss_name == "ssi":
            scale, shift = scale_and_shift(pred, target, valid)
            pred = scale.view(-1, 1, 1, 1) * pred + shift.view(-1, 1, 1, 1)
        diff = pred - target
        errors = diff * diff if self.loss_name == "mse" else diff.abs()
        return errors[valid].sum() / valid.sum().clamp(min=1)

    def loss_normaliser(self, target: Tensor) -> Tensor:
        """Valid pixels (positive target)."""
        return (target > 0).sum()

    def new_metric(self) -> DepthMetric:
        """A fresh error accumulator."""
        return DepthMetric(self.align_corners)

    def random_target(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """Uniform values over ``RANDOM_RANGE``."""
        low, high = self.RANDOM_RANGE
        return (low + (high - low) * torch.rand(real.shape, generator=generator)).to(real.dtype)


class Disparity(Depth):
    """Per-pixel positive inverse distance (1 channel): disparity, whose random targets lie in [0.1, 2)."""

    KIND = "disparity"
    RANDOM_RANGE = (0.1, 2.0)

    def __init__(self, name: str = "disparity", loss: str | None = None, align_corners: bool = False) -> None:
        super().__init__(name, loss, align_corners)
