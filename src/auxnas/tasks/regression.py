"""Regression of free values, per pixel (``dense_regression``: edge maps, heat-maps, any measured quantity) or per
image (``image_regression``): an L1 or squared-error loss over the valid values, absolute error and RMSE pooled over
every valid value of the evaluation set.

A dense target is ``B x C x H x W``; the declared ``invalid`` marker says which values are not labels: a number (a
value equal to it), ``nan`` (NaN values) or ``none`` (every value is a label). An image-level target is ``B x C``,
every value a label. Dense predictions at a lower resolution than the target are resized bilinearly to the target
size in both loss and metrics. Depth and disparity, whose metrics include a relative error, are ``tasks.depth``.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor

from .base import Metric, Task, as_float, choose, dense_pred

#: the ``invalid`` markers that are not numbers
INVALID_WORDS = ("none", "nan")


def invalid_marker(value: object) -> str | float:
    """``value`` as an ``invalid`` marker: ``"none"``, ``"nan"`` (a float NaN too) or a finite number (a float);
    anything else is a ValueError."""
    if isinstance(value, str) and value.lower() in INVALID_WORDS:
        return value.lower()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isnan(value):
            return "nan"
        if math.isfinite(value):
            return float(value)
    raise ValueError(f"expected none, nan or a number (the value that marks an invalid pixel), got {value!r}")


def valid_values(target: Tensor, invalid: str | float) -> Tensor:
    """The bool mask of the values of ``target`` that are labels under the marker ``invalid``."""
    if invalid == "none":
        return torch.ones_like(target, dtype=torch.bool)
    if invalid == "nan":
        return ~target.isnan()
    return target != invalid


class ErrorMetric(Metric):
    """``abs_err`` = mean ``|p - g|`` and ``rmse`` = ``sqrt(mean (p - g)^2)`` over every valid value of the set.

    Sums in float64; NaN before any valid value is seen. Both in the target's unit.
    """

    def __init__(self, task: Regression) -> None:
        self.task = task
        self.count = 0
        self.abs_total = 0.0
        self.sq_total = 0.0

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add the valid values of ``pred`` against ``target`` (``Regression.pairs``)."""
        p, g = self.task.pairs(pred.detach(), target.detach())
        err = as_float(p) - as_float(g)
        self.count += err.numel()
        self.abs_total += float(err.abs().sum())
        self.sq_total += float((err * err).sum())

    def merge(self, other: ErrorMetric) -> None:
        self.count += other.count
        self.abs_total += other.abs_total
        self.sq_total += other.sq_total

    def compute(self) -> dict[str, float]:
        """Pooled absolute error and RMSE."""
        if self.count == 0:
            return {"abs_err": math.nan, "rmse": math.nan}
        return {"abs_err": self.abs_total / self.count, "rmse": math.sqrt(self.sq_total / self.count)}


class Regression(Task):
    """What both regression kinds share: ``channels`` values per target, the losses and the error metrics."""

    likelihood = "regression"
    main_metric = "abs_err"
    delta_metrics = ("abs_err", "rmse")
    LOSSES = ("l1", "mse")

    def __init__(self, name: str, channels: int = 1, loss: str | None = None) -> None:
        if channels < 1:
            raise ValueError(f"{name}: channels must be at least 1, got {channels}")
        self.name = name
        self.channels = channels
        self.out_channels = channels
        self.loss_name = choose(name, "loss", loss, self.LOSSES)
        self.higher_is_better = {"abs_err": False, "rmse": False}

    @abstractmethod
    def pairs(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The prediction and target values that loss and metrics compare: the valid ones, flattened."""

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Over the valid values of the batch (0 when none is): mean ``|p - g|`` (``l1``) or ``(p - g)^2``
        (``mse``)."""
        p, g = self.pairs(pred, target)
        diff = p - g
        errors = diff * diff if self.loss_name == "mse" else diff.abs()
        return errors.sum() / max(errors.numel(), 1)

    def new_metric(self) -> ErrorMetric:
        """A fresh error accumulator."""
        return ErrorMetric(self)


class DenseRegression(Regression):
    """``channels`` free values per pixel; values marked ``invalid`` (``invalid_marker``) are not labels."""

    KIND = "dense_regression"
    kind = "dense"

    def __init__(self, name: str, channels: int = 1, invalid: object = "none", loss: str | None = None,
                 align_corners: bool = False) -> None:
        super().__init__(name, channels, loss)
        self.invalid = invalid_marker(invalid)
        self.align_corners = align_corners

    def pairs(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """The valid values of ``target`` (``B x channels x H x W``) and of ``pred`` resized to its size."""
        pred = dense_pred(pred, target, self.channels, self.channels, self.align_corners)
        valid = valid_values(target, self.invalid)
        return pred[valid], target[valid]

    def loss_normaliser(self, target: Tensor) -> Tensor:
        """Valid values."""
        return valid_values(target, self.invalid).sum()

    def random_target(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """The image's own label vectors at randomly permuted pixels: its values (invalid marks included), none of
        its spatial layout."""
        order = torch.randperm(real[0].numel(), generator=generator)
        return real.flatten(1)[:, order].view_as(real)


class ImageRegression(Regression):
    """``channels`` free values per image, every one a label."""

    KIND = "image_regression"
    kind = "image"

    def pairs(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Every value of ``pred`` and ``target`` (both ``B x channels``)."""
        if pred.dim() != 2 or pred.shape[1] != self.channels or target.shape != pred.shape:
            raise ValueError(f"expected a B x {self.channels} prediction and target, got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        return pred.flatten(), target.flatten()

    def random_target(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """Standard normal values: no relation to the image (nor to the scale of the real targets)."""
        return torch.randn(real.shape, generator=generator).to(real.dtype)
