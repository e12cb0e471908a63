"""Loss-scaling methods: equal, uncertainty (Kendall et al. 2018), DWA (Liu et al. 2019), GradNorm (Chen et al. 2018).

For auxiliary learning each offers the primary-focused form (``fix_primary=True``, the
default): the primary loss keeps weight 1 and only the auxiliary weights adapt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .base import LossWeighting


class Equal(LossWeighting):
    """The plain (base-weighted) sum of the task losses."""

    def weights(self) -> dict[str, Tensor]:
        return {t: torch.tensor(1.0) for t in self.tasks}


class Uncertainty(LossWeighting):
    """``sum_t exp(-s_t) L_t + s_t`` with a learned log-variance ``s_t`` per task (init 0).

    ``fix_primary``: the primary keeps weight 1 (no ``s``); only auxiliary weights are learned.
    """

    def __init__(self, tasks: Sequence[str], primary: str, fix_primary: bool = True) -> None:
        super().__init__(tasks, primary)
        self.fix_primary = fix_primary
        learned = self.aux if fix_primary else self.tasks
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in learned})

    def weights(self) -> dict[str, Tensor]:
        return {t: torch.exp(-self.log_vars[t]) if t in self.log_vars else torch.tensor(1.0) for t in self.tasks}

    def regulariser(self) -> Tensor | None:
        return sum(self.log_vars.values())


class DWA(LossWeighting):
    """Dynamic weight average: ``w_t ∝ exp(r_t / T)``, ``r_t`` = ratio of the last two epochs' mean losses.

    Weights are 1 for the first two epochs. They sum to the number of weighted tasks:
    all tasks, or (``fix_primary``) the auxiliary tasks, the primary then keeping 1.
    """

    def __init__(self, tasks: Sequence[str], primary: str, temperature: float = 2.0, fix_primary: bool = True) -> None:
        super().__init__(tasks, primary)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.fix_primary = fix_primary
        self.history: list[dict[str, float]] = []

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        self.history.append(dict(mean_losses))

    def weights(self) -> dict[str, Tensor]:
        weighted = self.aux if self.fix_primary else self.tasks
        w = {t: 1.0 for t in self.tasks}
        if len(self.history) >= 2 and weighted:
            last, before = self.history[-1], self.history[-2]
            scores = {t: math.exp(last[t] / before[t] / self.temperature) for t in weighted}
            total = sum(scores.values())
            w.update({t: len(weighted) * s / total for t, s in scores.items()})
        return {t: torch.tensor(v) for t, v in w.items()}


class GradNorm(LossWeighting):
    """Task weights learned so that weighted gradient norms on the last shared parameter follow training rates.

    Each step: ``G_t = |grad_W (w_t L_t)|`` on the last shared parameter ``W`` (the last tensor
    of ``shared``), ``r_t = (L_t / L_t(0)) / mean``, and the weights (a buffer, not a network
    parameter) take one gradient-descent step of size ``lr`` on ``sum_t |G_t - mean(G) r_t^alpha|``,
    then are renormalised to sum to the number of learned tasks. ``fix_primary``: only
    auxiliary weights are learned. The network then gets the gradient of ``sum_t w_t L_t``
    with the weights held fixed.
    """

    def __init__(
        self, tasks: Sequence[str], primary: str, alpha: float = 1.5, lr: float = 0.025, fix_primary: bool = True
    ) -> None:
        super().__init__(tasks, primary)
        self.alpha = alpha
        self.learned = self.aux if fix_primary else self.tasks
        self.register_buffer("task_weights", torch.ones(len(self.learned)))
        self.initial: dict[str, float] = {}
        self.lr = lr

    def weights(self) -> dict[str, Tensor]:
        w = {t: torch.tensor(1.0) for t in self.tasks}
        w.update({t: self.task_weights[i] for i, t in enumerate(self.learned)})
        return w

    def backward(
        self, losses: Mapping[str, Tensor], shared: Sequence[nn.Parameter], base_weights: Mapping[str, float]
    ) -> dict[str, float]:
        reached = [p for p in shared if p.requires_grad]
        if reached and len(self.learned) > 1:
            self._update_weights(losses, reached[-1], base_weights)
        elif not self.initial:
            self.initial = {t: float(losses[t].detach()) for t in self.tasks}
        return super().backward(losses, shared, base_weights)

    def _update_weights(self, losses: Mapping[str, Tensor], last: nn.Parameter, base: Mapping[str, float]) -> None:
        if not self.initial:
            self.initial = {t: max(float(losses[t].detach()), 1e-12) for t in self.tasks}
        norms = []
        for t in self.learned:
            (g,) = torch.autograd.grad(base[t] * losses[t], last, retain_graph=True, allow_unused=True)
            norms.append(torch.zeros(()) if g is None else g.detach().norm())
        norms = torch.stack(norms).to(self.task_weights.device)
        ratios = torch.tensor([float(losses[t].detach()) / self.initial[t] for t in self.learned])
        ratios = (ratios / ratios.mean()).to(norms.device)
        with torch.enable_grad():
            w = self.task_weights.clone().requires_grad_(True)
            weighted = w * norms
            target = (weighted.mean() * ratios**self.alpha).detach()
            (grad,) = torch.autograd.grad((weighted - target).abs().sum(), w)
        updated = (self.task_weights - self.lr * grad).clamp(min=1e-3)
        self.task_weights.copy_(updated * len(self.learned) / updated.sum())
