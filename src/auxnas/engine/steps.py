"""The updates of training, over one ``TrainState``: the network step (through the weighting method), the
architecture step (the architecture search) and the meta step (a meta-learned weighting's update on a second
batch). ``fit`` and the cost benchmark both take these steps."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..methods import MultiTaskModel
from ..weighting import MetaProblem
from .losses import losses_at, task_losses
from .optim import current_lrs, virtual_step
from .runtime import autocast
from .state import TrainState

if TYPE_CHECKING:
    from .callbacks import Callback


def checked_losses(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], device: torch.device, amp: bool,
    forward: Callable[..., tuple[dict[str, Tensor], Tensor | None]] | None = None,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Task losses (of the tasks labelled in the batch) and the model's extra loss of one batch; fails clearly
    on a non-finite value. ``forward(batch, weights)`` computes them instead of ``task_losses`` (the network
    step's ``DistributedDataParallel`` wrapper of ``TaskLosses(model)``)."""
    with autocast(device, amp):
        losses, extra = task_losses(model, batch, weights) if forward is None else forward(batch, weights)
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
    a label. ``callbacks`` see the task losses before the backward pass (``Callback.on_losses``).

    With several processes: a loss-weighting method (``state.ddp`` set) forwards through
    ``DistributedDataParallel`` and back-propagates the whole objective (task losses, the model's extra loss,
    single-level's penalty) in one backward, during which the wrapper averages the network's gradients in
    buckets; the parameters it does not hold (the weighting's own, single-level's architecture weights) are
    averaged afterwards. A gradient method forwards through the plain model, averages the per-task gradients
    before combining them (``reduce``), and every other stepped gradient is averaged before the update: each
    gradient crosses the processes once.
    """
    model, dist = state.model, state.dist
    losses, extra = checked_losses(model, batch, state.loss_weights, state.device, state.amp, state.ddp)
    if not losses and extra is None:  # no image of the batch carries any label: nothing to learn from
        return {}, {}
    for callback in callbacks:
        callback.on_losses(state, losses)
    state.optimizer.zero_grad(set_to_none=True)
    penalty = None
    if state.single_level:
        state.arch_optimizer.zero_grad(set_to_none=True)
        penalty = model.architecture_penalty(progress)
    if state.ddp is not None:
        objective, stats = state.weighting.objective(losses, state.loss_weights)
        sum(t for t in (penalty, extra, objective) if t is not None).backward()  # DDP reduces during it
        wrapped = {id(p) for p in model.network_parameters()}
        dist.average_gradients([p for p in state.stepped_parameters() if id(p) not in wrapped])
    else:
        if penalty is not None:
            penalty.backward()
        if extra is not None:
            extra.backward(retain_graph=True)
        data_parallel = {"reduce": dist.average_} if dist.enabled else {}
        stats = state.weighting.backward(losses, model.shared_parameters(), state.loss_weights,
                                         model.last_shared_layer(), **data_parallel)
        # gradients the weighting combined from averaged per-task gradients are the global batch's already, unless
        # the model's extra loss added this process's own part to them
        reduced = state.weighting.reduces_shared_gradients and extra is None
        done = {id(p) for p in model.shared_parameters()} if reduced else set()
        dist.average_gradients([p for p in state.stepped_parameters() if id(p) not in done])
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
    the update, so the architecture weights stay identical on every process. The forward is the plain model's,
    never ``state.ddp``'s, so the network step's ``DistributedDataParallel`` reduces nothing here.
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


def meta_problem(
    state: TrainState, batch: dict[str, Any], meta_batch: dict[str, Any], batch_labels: Collection[str],
    meta_labels: Collection[str],
) -> MetaProblem:
    """What the weighting's ``meta_update`` works on before the network step on ``batch``, measured on
    ``meta_batch`` (a second batch of training images); ``batch_labels`` / ``meta_labels``: the tasks labelled in
    each (the global batch's). The forwards run on the plain model with its parameters replaced (``losses_at``),
    never through ``state.ddp``; with several processes every gradient and loss the update uses is averaged over
    them (``reduce``), so the weights stay identical on every process."""
    model, optimizer = state.model, state.optimizer
    names = {id(p): name for name, p in model.named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"] if id(p) in names]

    def losses(one: dict[str, Any], replaced: Sequence[Tensor] | None) -> dict[str, Tensor]:
        values = None if replaced is None else {names[id(p)]: v for p, v in zip(params, replaced)}
        with autocast(state.device, state.amp):
            return losses_at(model, one, values)

    return MetaProblem(
        params, current_lrs(optimizer, params), losses, lambda grads: virtual_step(optimizer, params, grads),
        batch, meta_batch, frozenset(batch_labels), frozenset(meta_labels), state.loss_weights,
        state.dist.average_ if state.dist.enabled else None,
    )


def meta_step(
    state: TrainState, batch: dict[str, Any], meta_batch: dict[str, Any], batch_labels: Collection[str],
    meta_labels: Collection[str],
) -> dict[str, dict[str, float]]:
    """The weighting's ``meta_update`` on ``meta_problem``'s problem; returns the weighting's statistics."""
    return state.weighting.meta_update(meta_problem(state, batch, meta_batch, batch_labels, meta_labels))
