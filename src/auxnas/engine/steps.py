"""The two updates of training, over one ``TrainState``: the network step (through the weighting method) and the
architecture step (Aux-NAS's search). ``fit`` and the cost benchmark both take these steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..methods import MultiTaskModel
from .runtime import autocast
from .state import TrainState

if TYPE_CHECKING:
    from .callbacks import Callback


def task_losses(
    model: MultiTaskModel, batch: dict[str, Any], weights: dict[str, float]
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Forward ``batch``: the (unweighted, float32) loss of every task some image of the batch has a label for,
    and the model's own extra loss if any. A task without any label in the batch is absent from the result."""
    preds = model(batch["image"])
    losses = {name: task.batch_loss(preds[name].float(), batch) for name, task in model.tasks.items()}
    return {k: v for k, v in losses.items() if v is not None}, model.auxiliary_loss(preds, batch, weights)


def checked_losses(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], device: torch.device, amp: bool
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Task losses (of the tasks labelled in the batch) and the model's extra loss of one batch; fails clearly
    on a non-finite value."""
    with autocast(device, amp):
        losses, extra = task_losses(model, batch, weights)
    values = [*losses.values(), *([extra] if extra is not None else [])]
    if not all(torch.isfinite(v.detach()) for v in values):
        shown = {k: float(v.detach()) for k, v in losses.items()}
        raise FloatingPointError(f"non-finite training loss: {shown}, model's extra loss {extra}")
    return losses, extra


def combined_loss(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], device: torch.device, amp: bool
) -> Tensor | None:
    """The static weighted sum of the task losses of one batch, plus the model's extra loss (None: no label)."""
    losses, extra = checked_losses(model, batch, weights, device, amp)
    terms = [weights[name] * value for name, value in losses.items()] + ([extra] if extra is not None else [])
    return sum(terms) if terms else None


def network_step(
    state: TrainState, batch: dict[str, Any], progress: float, callbacks: Sequence[Callback] = ()
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """One network update on ``batch`` (on the device) through the weighting method, at ``progress`` of training;
    single-level search also updates the architecture weights, with the penalty at ``progress``.

    Returns every task's loss (the global batch's) and what the weighting method reports (its effective weights,
    or gradient norms and cosines with the primary); nothing, and no update, when no image of the batch carries
    a label. ``callbacks`` see the task losses before the backward pass (``Callback.on_losses``). With several
    processes the weighting method averages the per-task gradients over them before combining them, and the
    rest of the gradients are averaged before the update.
    """
    model, dist = state.model, state.dist
    losses, extra = checked_losses(model, batch, state.loss_weights, state.device, state.amp)
    if not losses and extra is None:  # no image of the batch carries any label: nothing to learn from
        return {}, {}
    for callback in callbacks:
        callback.on_losses(state, losses)
    state.optimizer.zero_grad(set_to_none=True)
    if state.single_level:
        state.arch_optimizer.zero_grad(set_to_none=True)
        penalty = model.architecture_penalty(progress)
        if penalty is not None:
            penalty.backward()
    if extra is not None:
        extra.backward(retain_graph=True)
    data_parallel = {"reduce": dist.average_} if dist.enabled else {}
    stats = state.weighting.backward(losses, model.shared_parameters(), state.loss_weights,
                                     model.last_shared_layer(), **data_parallel)
    dist.average_gradients(state.stepped_parameters())
    state.optimizer.step()
    if state.single_level:
        state.arch_optimizer.step()
    values = torch.stack([value.detach().float() for value in losses.values()]) if losses else None
    dist.average_([values])  # the processes' scaled losses: their mean is the global batch's loss
    return dict(zip(losses, [] if values is None else values.tolist())), stats


def architecture_step(state: TrainState, batch: dict[str, Any], progress: float) -> float | None:
    """One update of the architecture weights on ``batch`` with the penalty at ``progress`` of training; returns
    its loss, or None (no update) when the batch has no label and there is no penalty.

    The objective is the static weighted sum of the task losses (the weighting method acts on the network step
    only). ``backward(inputs=...)`` accumulates gradients into the architecture weights only: autograd skips the
    network weights' gradient computations entirely. With several processes the gradients are averaged before
    the update, so the architecture weights stay identical on every process.
    """
    model = state.model
    params = model.architecture_parameters()
    terms = [combined_loss(model, batch, state.loss_weights, state.device, state.amp),
             model.architecture_penalty(progress)]
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    loss = sum(terms)
    state.arch_optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    state.dist.average_gradients(params)
    state.arch_optimizer.step()
    return float(loss.detach())
