"""GradNorm (Chen et al., ICML 2018): task weights that balance gradient norms on the last shared layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .base import LossWeighting, gradients


class GradNorm(LossWeighting):
    """Weights ``w_t`` (a buffer with its own update, not stepped by the network optimiser).

    Every ``backward``: ``G_t = w_t |d(b_t L_t)/dW|`` on ``W``, the last tensor of ``shared`` that
    every task's loss reaches; ``r_t = (L_t / L_t(0)) / mean_i(L_i / L_i(0))`` with ``L_t(0)`` the
    first step's loss. The network gets the gradient of ``sum_t w_t b_t L_t``; then the weights take
    one gradient-descent step of size ``lr`` on ``sum_t |G_t - mean(G) r_t^alpha|`` (target held
    fixed), are kept positive and renormalised to sum to the number of tasks. Without such a ``W``
    the weights stay as they are. ``fix_primary``: every weight is divided by the primary's, so
    the primary loss keeps weight 1 and the auxiliary weights keep GradNorm's ratios to it.
    """

    def __init__(
        self, tasks: Sequence[str], primary: str, alpha: float = 1.5, lr: float = 0.025, fix_primary: bool = True
    ) -> None:
        super().__init__(tasks, primary)
        if lr <= 0:
            raise ValueError(f"gradnorm: lr must be positive, got {lr}")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.fix_primary = fix_primary
        self.register_buffer("task_weights", torch.ones(len(self.tasks)))
        self.register_buffer("initial_losses", torch.zeros(0))  # L_t(0), set at the first update

    def weights(self) -> dict[str, Tensor]:
        w = self.task_weights
        if self.fix_primary:
            w = w / w[self.tasks.index(self.primary)]
        return dict(zip(self.tasks, w))

    def backward(
        self, losses: Mapping[str, Tensor], shared: Sequence[nn.Parameter], base_weights: Mapping[str, float]
    ) -> dict[str, float]:
        norms = self.gradient_norms(losses, shared, base_weights)  # before the network backward frees the graph
        effective = super().backward(losses, shared, base_weights)
        if norms is not None:
            self.update(norms, torch.stack([losses[t].detach().float() for t in self.tasks]))
        return effective

    def gradient_norms(
        self, losses: Mapping[str, Tensor], shared: Sequence[nn.Parameter], base_weights: Mapping[str, float]
    ) -> Tensor | None:
        """``|d(b_t L_t)/dW|`` per task on the last shared tensor every loss reaches; None if there is none."""
        for p in reversed([p for p in shared if p.requires_grad]):
            grads = [gradients(base_weights[t] * losses[t], [p])[0] for t in self.tasks]
            if all(g is not None for g in grads):
                return torch.stack([g.norm() for g in grads]).float()
        return None

    @torch.no_grad()
    def update(self, norms: Tensor, losses: Tensor) -> None:
        """One step of the weights on GradNorm's gradient loss, then renormalisation."""
        norms, losses = norms.to(self.task_weights.device), losses.to(self.task_weights.device)
        if self.initial_losses.numel() == 0:
            self.initial_losses = losses.clamp_min(1e-12)
        rates = losses / self.initial_losses
        rates = rates / rates.mean().clamp_min(1e-12)
        balanced = self.task_weights * norms
        target = balanced.mean() * rates**self.alpha
        grad = torch.sign(balanced - target) * norms  # d/dw_t of |w_t n_t - target_t|
        updated = (self.task_weights - self.lr * grad).clamp_min(1e-4)
        self.task_weights.copy_(updated * len(self.tasks) / updated.sum())
