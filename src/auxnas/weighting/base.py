"""The weighting interface: per-task losses in, gradients on the model's parameters out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


class Weighting(nn.Module):
    """Turns per-task losses into gradients (LibMTL's split: orthogonal to the architecture).

    ``backward`` accumulates into ``.grad`` like ``loss.backward()``. Parameters of the
    method itself (``parameters()``) are stepped by the network optimiser.
    """

    def __init__(self, tasks: Sequence[str], primary: str) -> None:
        super().__init__()
        if primary not in tasks:
            raise ValueError(f"primary task {primary!r} is not among {list(tasks)}")
        self.tasks = list(tasks)
        self.primary = primary
        self.aux = [t for t in self.tasks if t != primary]

    def backward(
        self, losses: Mapping[str, Tensor], shared: Sequence[nn.Parameter], base_weights: Mapping[str, float]
    ) -> dict[str, float]:
        """Accumulate the gradients of the combined objective; return each task's effective weight."""
        raise NotImplementedError

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        """Called once per epoch with the epoch's mean (unweighted) training loss of every task."""


class LossWeighting(Weighting):
    """Methods that only scale the losses: one backward of a weighted sum (plus the method's own terms)."""

    def weights(self) -> dict[str, Tensor]:
        """The method's weight of every task (multiplied with the user's static weights)."""
        raise NotImplementedError

    def regulariser(self) -> Tensor | None:
        """An extra term of the objective (uncertainty weighting's log-variances); None by default."""
        return None

    def backward(
        self, losses: Mapping[str, Tensor], shared: Sequence[nn.Parameter], base_weights: Mapping[str, float]
    ) -> dict[str, float]:
        w = self.weights()
        objective = sum(w[t] * base_weights[t] * losses[t] for t in self.tasks)
        extra = self.regulariser()
        (objective if extra is None else objective + extra).backward()
        return {t: float(w[t].detach()) for t in self.tasks}


class GradientWeighting(Weighting):
    """Methods that combine per-task gradients of the shared parameters.

    The shared parameters get ``combine`` of the per-task gradients (of the base-weighted
    losses); every other parameter gets its ordinary gradient of the base-weighted sum.
    Without shared parameters this is the plain weighted sum.
    """

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        """Flat per-task gradients (task -> vector over all shared parameters) -> one flat gradient."""
        raise NotImplementedError

    def backward(
        self, losses: Mapping[str, Tensor], shared: Sequence[nn.Parameter], base_weights: Mapping[str, float]
    ) -> dict[str, float]:
        weighted = {t: base_weights[t] * losses[t] for t in self.tasks}
        shared = [p for p in shared if p.requires_grad]
        grads = {}
        for t in self.tasks:
            parts = torch.autograd.grad(weighted[t], shared, retain_graph=True, allow_unused=True) if shared else ()
            grads[t] = torch.cat([
                (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(parts, shared)
            ]) if shared else torch.zeros(0)
        before = [p.grad.clone() if p.grad is not None else None for p in shared]
        sum(weighted.values()).backward()  # every parameter's plain gradient; shared ones are replaced below
        if shared:
            combined = self.combine(grads, [p.shape for p in shared])
            offset = 0
            for p, prior in zip(shared, before):
                n = p.numel()
                value = combined[offset : offset + n].view_as(p).to(p.dtype)
                p.grad = value if prior is None else prior + value
                offset += n
        return {t: 1.0 for t in self.tasks}
