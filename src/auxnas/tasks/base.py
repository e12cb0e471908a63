"""The task interface: what a head must output, its loss and its metrics.

A task reads its target from a batch dict under ``task.name`` and is either
``dense`` (one prediction per pixel, head output ``B x C x H x W``) or ``image``
(one prediction per image, head output ``B x C``). Its class is one kind of task
(``KIND``, e.g. segmentation); its name is free (``auxnas.tasks.kinds``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor


def labelled(batch: Mapping[str, Any], task: str) -> Tensor | None:
    """Which images of ``batch`` carry ``task``'s label (a bool vector), or None when every image does."""
    mask = batch.get("labelled", {}).get(task)
    return None if mask is None else mask.bool()


class Metric(ABC):
    """Accumulates over a whole evaluation set; ``compute`` pools every sample.

    Never a mean of per-batch means: confusion matrices and pooled pixel errors.
    """

    @abstractmethod
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch (raw head outputs and targets, any device)."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Metric name -> value over everything seen since construction."""

    def merge(self, other: Metric) -> None:
        """Add what ``other`` (a metric of the same task, fed other images) accumulated, as if ``self`` had seen
        its images too: how data-parallel evaluation pools the processes' parts of a set."""
        raise NotImplementedError(f"{type(self).__name__} cannot merge another accumulator")


class Task(ABC):
    """One prediction task: target key, output size, loss, metrics.

    Its loss and metric conventions are options (docs/tasks.md); ``conventions`` names the ones in use, so that a
    result can say how it was produced.
    """

    name: str
    #: the kind a dataset declares the task by (``auxnas.tasks.KINDS``, docs/tasks.md); ``kind`` below is only
    #: where it predicts, per pixel or per image (what ``make_head`` takes)
    KIND: ClassVar[str]
    kind: Literal["dense", "image"]
    #: how the Kendall form of uncertainty weighting treats its loss: a regression or a classification likelihood
    likelihood: ClassVar[Literal["regression", "classification"]]
    out_channels: int
    #: metric used for model selection and as "the" primary number
    main_metric: str
    #: metric name -> True when larger is better (every metric ``compute`` returns)
    higher_is_better: dict[str, bool]
    #: the losses this task offers, its default first
    LOSSES: ClassVar[tuple[str, ...]]
    #: the loss in use (one of ``LOSSES``)
    loss_name: str
    #: dense tasks: ``align_corners`` of the bilinear resize of a prediction to its label's size
    align_corners: bool = False

    @abstractmethod
    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar training loss of raw head output ``pred`` against ``target``."""

    @abstractmethod
    def new_metric(self) -> Metric:
        """A fresh accumulator for this task's metrics."""

    @abstractmethod
    def random_target(self, real: Tensor, generator: torch.Generator) -> Tensor:
        """A random target with the shape and dtype of one sample's ``real`` target, drawn with ``generator``: the
        noise control's (``data.random_targets``), which carries no information about the image."""

    def loss_normaliser(self, target: Tensor) -> Tensor:
        """How many terms ``loss`` of ``target`` averages over: its images (the default), or for dense tasks its
        valid pixels. Data-parallel training weights each process's loss by its share of the global count."""
        return torch.tensor(target.shape[0])

    def batch_loss(self, pred: Tensor, batch: Mapping[str, Any], share: float | None = None) -> Tensor | None:
        """``loss`` over the images of ``batch`` that carry this task's label; None when none does.

        ``share`` (data-parallel training: this process's part of a global batch that has labels of this task;
        ``auxnas.engine.parallel.Batch.shares``): the loss is multiplied by it, so that the processes' mean is the
        global batch's loss, and a process without a label of the task gives a zero loss of ``pred`` (every process
        then back-propagates through the same graph).
        """
        mask = labelled(batch, self.name)
        if mask is not None and not bool(mask.any()):
            return None if share is None else pred.sum() * 0.0
        loss = self.loss(pred, batch[self.name]) if mask is None else self.loss(pred[mask], batch[self.name][mask])
        return loss if share is None else loss * share

    def update_metric(self, metric: Metric, pred: Tensor, batch: Mapping[str, Any]) -> int:
        """Add the images of ``batch`` that carry this task's label to ``metric``; return how many."""
        mask = labelled(batch, self.name)
        if mask is None:
            metric.update(pred, batch[self.name])
            return int(pred.shape[0])
        count = int(mask.sum())
        if count:
            metric.update(pred[mask], batch[self.name][mask])
        return count

    def postprocess(self, pred: Tensor) -> Tensor:
        """Raw head output -> the prediction a user consumes (e.g. unit normals)."""
        return pred

    def conventions(self) -> dict[str, Any]:
        """The loss and the metric conventions in use, under their ``tasks.*`` config names (docs/tasks.md)."""
        out: dict[str, Any] = {"loss": self.loss_name}
        if self.kind == "dense":
            out["align_corners"] = self.align_corners
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, out_channels={self.out_channels})"


def choose(task: str, option: str, value: str | None, valid: tuple[str, ...]) -> str:
    """``value`` if it is one of ``valid`` (None: the default, ``valid[0]``), else a ValueError naming the option."""
    if value is None:
        return valid[0]
    if value not in valid:
        raise ValueError(f"{task}: unknown {option} {value!r}; valid: {', '.join(valid)}")
    return value


def as_float(t: Tensor) -> Tensor:
    """Detach and move to CPU float64 for exact accumulation."""
    return t.detach().to("cpu", torch.float64)


def dense_pred(
    pred: Tensor, target: Tensor, out_channels: int, target_channels: int | None, align_corners: bool = False
) -> Tensor:
    """Check a dense prediction against its target and resize it bilinearly to the target's ``H x W``.

    ``pred`` must be ``B x out_channels x H' x W'``; ``target`` is ``B x H x W`` when ``target_channels`` is None,
    else ``B x target_channels x H x W``. Heads may predict at a lower resolution than the labels; loss and
    metrics are always taken at label resolution. ``align_corners``: False (ours) or True (LibMTL, the Aux-NAS
    authors); see docs/tasks.md.
    """
    target_shape = "B x H x W" if target_channels is None else f"B x {target_channels} x H x W"
    if (pred.dim() != 4 or pred.shape[1] != out_channels or target.shape[0] != pred.shape[0]
            or target.dim() != (3 if target_channels is None else 4)
            or (target_channels is not None and target.shape[1] != target_channels)):
        raise ValueError(f"expected a B x {out_channels} x H x W prediction and a {target_shape} target, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    size = tuple(target.shape[-2:])
    if tuple(pred.shape[-2:]) != size:
        pred = torch.nn.functional.interpolate(pred, size=size, mode="bilinear", align_corners=align_corners)
    return pred


def batch_losses(
    tasks: Mapping[str, Task], preds: Mapping[str, Tensor], batch: Mapping[str, Any],
    shares: Mapping[str, float] | None = None,
) -> dict[str, Tensor]:
    """``Task.batch_loss`` of each of ``tasks`` on its prediction in ``preds`` (as float32), for the tasks labelled in
    ``batch`` (with ``shares``, data-parallel: the tasks labelled in the global batch, each scaled by its share)."""
    losses = {}
    for name, task in tasks.items():
        if shares is not None and name not in shares:
            continue
        loss = task.batch_loss(preds[name].float(), batch, None if shares is None else shares[name])
        if loss is not None:
            losses[name] = loss
    return losses
