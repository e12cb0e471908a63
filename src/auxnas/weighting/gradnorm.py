"""GradNorm (Chen et al., ICML 2018): task weights that balance gradient norms on the last shared layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .base import LossWeighting, Reduce, Stats, adam_update, gradients


class GradNorm(LossWeighting):
    """Weights ``w_t`` (a buffer with its own Adam update, not stepped by the network optimiser).

    Every ``backward``: ``G_t = w_t |d(b_t L_t)/dW|`` on ``W = last_shared_layer``, the weight of the last
    shared layer (every task's loss must reach it); ``r_t = (L_t / L_t(0)) / mean_i(L_i / L_i(0))`` with
    ``L_t(0)`` the task's first loss. The network gets the gradient of ``sum_t w_t b_t L_t``; then the
    weights take one Adam step (``lr``, betas (0.9, 0.999)) on ``sum_t |G_t - mean(G) r_t^alpha|`` (target
    held fixed), so the update does not depend on the scale of the gradients, are kept positive and are
    renormalised to sum to the number of tasks. ``fix_primary``: every weight is divided by the primary's,
    so the primary loss keeps weight 1 and the auxiliary weights keep GradNorm's ratios to it.
    A task without a loss in a step takes no part in it: its weight and Adam state stay as they are.
    """

    BETAS = (0.9, 0.999)
    EPS = 1e-8
    #: the per-task gradient norms on the last shared layer are averaged over the processes by hand
    needs_task_gradients = True

    def __init__(
        self, tasks: Sequence[str], primary: str, alpha: float = 1.5, lr: float = 0.025, fix_primary: bool = True
    ) -> None:
        super().__init__(tasks, primary)
        if lr <= 0:
            raise ValueError(f"gradnorm: lr must be positive, got {lr}")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.fix_primary = fix_primary
        k = len(self.tasks)
        self.register_buffer("task_weights", torch.ones(k))
        self.register_buffer("initial_losses", torch.zeros(k))  # L_t(0); 0 until the task's first loss
        self.register_buffer("exp_avg", torch.zeros(k))  # Adam's moments of the weights' gradient
        self.register_buffer("exp_avg_sq", torch.zeros(k))
        self.register_buffer("steps", torch.zeros(k, dtype=torch.long))  # Adam steps of each weight

    def weights(self) -> dict[str, Tensor]:
        w = self.task_weights
        if self.fix_primary:
            w = w / w[self.tasks.index(self.primary)]
        return dict(zip(self.tasks, w))

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared: Sequence[nn.Parameter],
        base_weights: Mapping[str, float],
        last_shared_layer: Tensor | None = None,
        reduce: Reduce | None = None,
        extra: Tensor | None = None,
    ) -> Stats:
        """The network backward with the current weights, then the weights' update; adds ``grad_norm`` to the
        stats: ``|d(b_t L_t)/dW|`` per task. With ``reduce``, the gradients on ``W`` and the losses are averaged
        over the processes first (the global batch's)."""
        present = [t for t in self.tasks if t in losses]
        if not present:
            if extra is not None:
                extra.backward()
            return {}
        norms = self.gradient_norms(present, losses, base_weights, last_shared_layer, reduce)  # before backward
        stats = super().backward(losses, shared, base_weights, extra=extra)
        index = torch.tensor([self.tasks.index(t) for t in present], device=self.task_weights.device)
        values = torch.stack([losses[t].detach().float() for t in present])
        if reduce is not None:
            reduce([values])
        self.update(index, norms, values)
        return {**stats, "grad_norm": dict(zip(present, norms.tolist()))}

    def gradient_norms(
        self, tasks: Sequence[str], losses: Mapping[str, Tensor], base_weights: Mapping[str, float],
        layer: Tensor | None, reduce: Reduce | None = None,
    ) -> Tensor:
        """``|d(b_t L_t)/dW|`` of ``tasks`` on ``W = layer`` (the gradients averaged over the processes with
        ``reduce``); ValueError if it is None or a task's loss misses it."""
        if layer is None:
            raise ValueError("gradnorm needs a shared layer every task reaches, and this model has none "
                             "(last_shared_layer is None); use another weighting")
        grads = [gradients(base_weights[t] * losses[t], [layer])[0] for t in tasks]
        missing = [t for t, g in zip(tasks, grads) if g is None]
        if missing:
            raise ValueError(f"gradnorm needs a shared layer every task reaches: the loss of {', '.join(missing)} "
                             f"does not reach the last shared layer")
        if reduce is not None:
            reduce(grads)
        return torch.stack([g.norm() for g in grads]).float()

    @torch.no_grad()
    def update(self, index: Tensor, norms: Tensor, losses: Tensor) -> None:
        """One Adam step of the weights at ``index`` (the tasks present) on GradNorm's gradient loss, then
        renormalisation of those weights so that all weights still sum to the number of tasks."""
        norms, losses = norms.to(self.task_weights.device), losses.to(self.task_weights.device)
        initial = self.initial_losses[index]
        initial = torch.where(initial > 0, initial, losses.clamp_min(1e-12))  # a task's first loss is its L(0)
        rates = losses / initial
        rates = rates / rates.mean().clamp_min(1e-12)
        w = self.task_weights[index]
        balanced = w * norms
        target = balanced.mean() * rates**self.alpha
        grad = torch.sign(balanced - target) * norms  # d/dw_t of |w_t n_t - target_t|
        updated, exp_avg, exp_avg_sq, steps = adam_update(
            w, grad, self.exp_avg[index], self.exp_avg_sq[index], self.steps[index], self.lr, self.BETAS, self.EPS)
        updated = updated.clamp_min(1e-4)
        total = len(self.tasks) - (self.task_weights.sum() - w.sum())  # what the weights at index may sum to
        self.task_weights[index] = updated * total / updated.sum()
        self.initial_losses[index] = initial
        self.exp_avg[index], self.exp_avg_sq[index], self.steps[index] = exp_avg, exp_avg_sq, steps
