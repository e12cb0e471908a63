"""The updates of training, over one ``TrainState``: the network step (through the weighting method), the
architecture step (the architecture search) and the meta step (a meta-learned weighting's update on a second
batch). ``fit`` and the cost benchmark both take these steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..weighting import MetaProblem
from .losses import losses_at, task_losses
from .optim import current_lrs, virtual_step
from .parallel import Batch
from .runtime import autocast
from .state import TrainState

if TYPE_CHECKING:
    from .callbacks import Callback


def checked_losses(
    state: TrainState, batch: Batch, network: bool = False
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Task losses (of the tasks labelled in the global batch) and the model's extra loss of one batch; fails
    clearly on a non-finite value. ``network``: the network step's forward (``DataParallel.network_losses``:
    through ``DistributedDataParallel`` when it applies), else the plain model's."""
    model, weights = state.model, state.loss_weights
    with autocast(state.device, state.amp):
        if network:
            losses, extra = state.parallel.network_losses(model, batch, weights)
        else:
            losses, extra = task_losses(model, batch.data, weights, batch.shares)
    values = [*losses.values(), *([extra] if extra is not None else [])]
    if not all(torch.isfinite(v.detach()) for v in values):
        shown = {k: float(v.detach()) for k, v in losses.items()}
        raise FloatingPointError(f"non-finite training loss: {shown}, model's extra loss {extra}")
    return losses, extra


def network_step(
    state: TrainState, batch: Batch, progress: float, callbacks: Sequence[Callback] = ()
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """One network update on ``batch`` through the weighting method, at ``progress`` of training; single-level
    search also updates the architecture weights, with the penalty at ``progress``.

    Returns every task's loss (the global batch's) and what the weighting method reports (its effective weights,
    or gradient norms and cosines with the primary); nothing, and no update, when no image of the batch carries
    a label. ``callbacks`` see the task losses before the backward pass (``Callback.on_losses``).

    One path for every method and process count: the forward (``DataParallel.network_losses``), the weighting's
    backward of the task losses with the step's other terms (the model's extra loss, single-level's penalty), then
    every stepped gradient the backward left unaveraged is averaged over the processes (``DataParallel``), once.
    """
    model, parallel = state.model, state.parallel
    losses, extra = checked_losses(state, batch, network=True)
    if not losses and extra is None:  # no image of the batch carries any label: nothing to learn from
        return {}, {}
    for callback in callbacks:
        callback.on_losses(state, losses)
    state.optimizer.zero_grad(set_to_none=True)
    penalty = None
    if state.single_level:
        state.arch_optimizer.zero_grad(set_to_none=True)
        penalty = model.architecture_penalty(progress)
    others = [t for t in (penalty, extra) if t is not None]
    stats = state.weighting.backward(losses, model.shared_parameters(), state.loss_weights, model.last_shared_layer(),
                                     parallel.reduce, sum(others) if others else None)
    parallel.average_gradients(state.stepped_parameters(), parallel.averaged_by_backward(model, state.weighting, extra))
    state.optimizer.step()
    if state.single_level:
        state.arch_optimizer.step()
    values = torch.stack([value.detach().float() for value in losses.values()]) if losses else None
    parallel.average([values])  # the processes' scaled losses: their mean is the global batch's loss
    return dict(zip(losses, [] if values is None else values.tolist())), stats


def architecture_step(state: TrainState, batch: Batch, progress: float) -> float | None:
    """One update of the architecture weights on ``batch`` with the penalty at ``progress`` of training; returns
    its loss, or None (no update) when the batch has no label and there is no penalty.

    The objective is the static weighted sum of the task losses (the weighting method acts on the network step
    only). ``backward(inputs=...)`` accumulates gradients into the architecture weights only: autograd skips the
    network weights' gradient computations entirely. With several processes the gradients are averaged before
    the update, so the architecture weights stay identical on every process. The forward is the plain model's,
    never through ``DistributedDataParallel``, which therefore reduces nothing here.
    """
    model = state.model
    params = model.architecture_parameters()
    losses, extra = checked_losses(state, batch)
    weighted = [state.loss_weights[name] * value for name, value in losses.items()]
    terms = [t for t in (*weighted, extra, model.architecture_penalty(progress)) if t is not None]
    if not terms:
        return None
    loss = sum(terms)
    state.arch_optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    state.parallel.average_gradients(params)
    state.arch_optimizer.step()
    return float(loss.detach())


def meta_problem(state: TrainState, batch: Batch, meta_batch: Batch) -> MetaProblem:
    """What the weighting's ``meta_update`` works on before the network step on ``batch``, measured on
    ``meta_batch`` (a second batch of training images). The forwards run on the plain model with its parameters
    replaced (``losses_at``), never through ``DistributedDataParallel``; with several processes every gradient and
    loss the update uses is averaged over them (``reduce``), so the weights stay identical on every process."""
    model, optimizer = state.model, state.optimizer
    names = {id(p): name for name, p in model.named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"] if id(p) in names]

    def losses_of(one: Batch) -> Callable[[Sequence[Tensor] | None], dict[str, Tensor]]:
        def losses(replaced: Sequence[Tensor] | None) -> dict[str, Tensor]:
            values = None if replaced is None else {names[id(p)]: v for p, v in zip(params, replaced)}
            with autocast(state.device, state.amp):
                return losses_at(model, one.data, values, one.shares)

        return losses

    return MetaProblem(
        params, current_lrs(optimizer, params), losses_of(batch), losses_of(meta_batch),
        lambda grads: virtual_step(optimizer, params, grads), batch.labelled_tasks, meta_batch.labelled_tasks,
        state.loss_weights, state.parallel.reduce,
    )


def meta_step(state: TrainState, batch: Batch, meta_batch: Batch) -> dict[str, dict[str, float]]:
    """The weighting's ``meta_update`` on ``meta_problem``'s problem; returns the weighting's statistics."""
    return state.weighting.meta_update(meta_problem(state, batch, meta_batch))


def iteration(state: TrainState, batch: Batch, progress: float) -> None:
    """One training iteration on ``batch`` alone, at ``progress`` of training: the architecture step (bilevel
    search), the meta step (a meta-learned weighting; its meta batch is ``batch`` again, which costs what another
    would) and the network step. What the cost benchmark and ``compare``'s profile time."""
    state.model.set_progress(progress)
    if state.bilevel:
        architecture_step(state, batch, progress)
    if state.weighting.needs_meta_batch:
        meta_step(state, batch, batch)
    network_step(state, batch, progress)
