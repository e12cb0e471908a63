"""The task losses of one forward, as a function and as a module (what ``DistributedDataParallel`` wraps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from torch.func import functional_call

from ..methods import MultiTaskModel
from ..tasks import batch_losses


def task_losses(
    model: MultiTaskModel, batch: dict[str, Any], weights: Mapping[str, float],
    shares: Mapping[str, float] | None = None,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Forward ``batch``: the (unweighted, float32) loss of every task some image of the batch has a label for,
    and the model's own extra loss if any. A task without any label in the batch is absent from the result.
    ``shares``: this process's loss share of every task labelled in the global batch (data-parallel training,
    ``auxnas.engine.parallel.Batch``; None in one process)."""
    preds = model(batch["image"])
    return prediction_losses(model, preds, batch, shares), model.auxiliary_loss(preds, batch, weights, shares)


def prediction_losses(
    model: MultiTaskModel, preds: dict[str, Tensor], batch: dict[str, Any], shares: Mapping[str, float] | None = None
) -> dict[str, Tensor]:
    """The (unweighted, float32) loss of every task of ``model`` labelled in ``batch`` (with ``shares``: in the
    global batch), from its predictions (``Task.batch_loss``)."""
    return batch_losses(model.tasks, {name: preds[name] for name in model.tasks}, batch, shares)


def losses_at(
    model: MultiTaskModel, batch: dict[str, Any], params: dict[str, Tensor] | None = None,
    shares: Mapping[str, float] | None = None,
) -> dict[str, Tensor]:
    """``prediction_losses`` of ``batch`` with the parameters named in ``params`` replaced (``torch.func``), on copies
    of the model's buffers: the forward leaves the model, its BatchNorm statistics included, as it was."""
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    preds = functional_call(model, {**(params or {}), **buffers}, (batch["image"],), strict=False)
    return prediction_losses(model, preds, batch, shares)


class TaskLosses(nn.Module):
    """``task_losses`` of ``model`` as a module's forward, for ``DistributedDataParallel`` to wrap: its outputs are
    exactly the terms of the loss, so the wrapper finds the parameters a step leaves unused (the head of a task
    without a label in the global batch) from them."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: dict[str, Any], weights: Mapping[str, float], shares: Mapping[str, float] | None = None
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        return task_losses(self.model, batch, weights, shares)
