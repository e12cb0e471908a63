"""The task losses of one forward, as a function and as a module (what ``DistributedDataParallel`` wraps)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..methods import MultiTaskModel


def task_losses(
    model: MultiTaskModel, batch: dict[str, Any], weights: dict[str, float]
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Forward ``batch``: the (unweighted, float32) loss of every task some image of the batch has a label for,
    and the model's own extra loss if any. A task without any label in the batch is absent from the result."""
    preds = model(batch["image"])
    losses = {name: task.batch_loss(preds[name].float(), batch) for name, task in model.tasks.items()}
    return {k: v for k, v in losses.items() if v is not None}, model.auxiliary_loss(preds, batch, weights)


class TaskLosses(nn.Module):
    """``task_losses`` of ``model`` as a module's forward, for ``DistributedDataParallel`` to wrap: its outputs are
    exactly the terms of the loss, so the wrapper finds the parameters a step leaves unused (the head of a task
    without a label in the global batch) from them."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: dict[str, Any], weights: dict[str, float]
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        return task_losses(self.model, batch, weights)
