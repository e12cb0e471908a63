"""Loss-scaling methods: equal, uncertainty (Kendall et al. 2018), DWA (Liu et al. 2019).

For auxiliary learning the adaptive ones offer the primary-focused form (``fix_primary=True``,
the default): the primary loss keeps weight 1 and only the auxiliary weights adapt.
"""

from __future__ import annotations

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

    The ``s_t`` are this module's parameters, stepped by the network optimiser.
    ``fix_primary``: the primary keeps weight 1 (no ``s``); only auxiliary weights are learned.
    """

    def __init__(self, tasks: Sequence[str], primary: str, fix_primary: bool = True) -> None:
        super().__init__(tasks, primary)
        learned = self.aux if fix_primary else self.tasks
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in learned})

    def weights(self) -> dict[str, Tensor]:
        return {t: torch.exp(-self.log_vars[t]) if t in self.log_vars else torch.tensor(1.0) for t in self.tasks}

    def regulariser(self) -> Tensor | None:
        return torch.stack(list(self.log_vars.values())).sum() if self.log_vars else None


class DWA(LossWeighting):
    """Dynamic weight average: ``w_t = K softmax_t(r_t / T)``, ``r_t`` = last epoch's over the one before's mean loss.

    Weights are 1 for the first two epochs. ``K`` is the number of weighted tasks: all tasks, or
    (``fix_primary``) the auxiliary tasks, the primary then keeping weight 1.
    """

    def __init__(self, tasks: Sequence[str], primary: str, temperature: float = 2.0, fix_primary: bool = True) -> None:
        super().__init__(tasks, primary)
        if temperature <= 0:
            raise ValueError(f"dwa: temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.weighted = self.aux if fix_primary else self.tasks
        self.history: list[dict[str, float]] = []  # the last two epochs' mean losses

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        self.history = [*self.history, dict(mean_losses)][-2:]

    def weights(self) -> dict[str, Tensor]:
        w = {t: torch.tensor(1.0) for t in self.tasks}
        if len(self.history) == 2 and self.weighted:
            before, last = self.history
            ratios = torch.tensor([last[t] / max(before[t], 1e-12) for t in self.weighted], dtype=torch.float64)
            scaled = len(self.weighted) * torch.softmax(ratios / self.temperature, 0)
            w.update({t: v.float() for t, v in zip(self.weighted, scaled)})
        return w
