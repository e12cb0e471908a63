"""Loss-scaling methods: equal, uncertainty (Kendall et al. 2018), DWA (Liu et al. 2019).

For auxiliary learning the adaptive ones offer the primary-focused form (``fix_primary=True``,
the default): the primary loss keeps weight 1 and only the auxiliary weights adapt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..tasks import TASK_NAMES, likelihoods
from .base import LossWeighting

#: the likelihood of each built-in task (auxnas.tasks), for the Kendall form of uncertainty weighting
TASK_KINDS = likelihoods(list(TASK_NAMES))


def task_kind(name: str) -> str:
    """``"regression"`` or ``"classification"``: the kind of the built-in task ``name`` (ValueError if unknown)."""
    if name not in TASK_KINDS:
        raise ValueError(f"no known kind for task {name!r} (known: {', '.join(TASK_KINDS)}); pass task_kinds")
    return TASK_KINDS[name]


class Equal(LossWeighting):
    """The plain (base-weighted) sum of the task losses."""

    def degenerate_reason(self) -> str | None:
        return None

    def weights(self) -> dict[str, Tensor]:
        return {t: torch.tensor(1.0) for t in self.tasks}


class Uncertainty(LossWeighting):
    """A learned log-variance ``s_t`` per task (init 0), stepped by the network optimiser.

    ``form="simple"`` (LibMTL, Auto-Lambda): ``sum_t exp(-s_t) L_t + s_t``. ``form="kendall"`` (the paper,
    ``s = log sigma^2``): ``0.5 exp(-s_t) L_t + 0.5 s_t`` for regression, ``exp(-s_t) L_t + 0.5 s_t`` for
    classification; the kinds come from ``task_kinds`` (not a user option) or ``task_kind``.
    ``fix_primary``: the primary keeps weight 1 (no ``s``); only auxiliary weights are learned.
    ``lr``: the log-variances' learning rate (None: the network's); they never get weight decay.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        primary: str,
        fix_primary: bool = True,
        form: str = "simple",
        lr: float | None = None,
        task_kinds: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(tasks, primary)
        if form not in ("simple", "kendall"):
            raise ValueError(f"uncertainty: form must be 'simple' or 'kendall', got {form!r}")
        if lr is not None and lr <= 0:
            raise ValueError(f"uncertainty: lr must be positive (or null for the network's), got {lr}")
        self.fix_primary = fix_primary
        self.lr = lr
        learned = self.aux if fix_primary else self.tasks
        self.log_vars = nn.ParameterDict({t: nn.Parameter(torch.zeros(())) for t in learned})
        self.loss_scale = dict.fromkeys(learned, 1.0)  # factor of exp(-s_t) L_t
        self.log_scale = 1.0  # factor of s_t
        if form == "kendall":
            kinds = {t: task_kind(t) for t in learned} if task_kinds is None else dict(task_kinds)
            for t in learned:
                if kinds.get(t) not in ("regression", "classification"):
                    raise ValueError(f"uncertainty: task {t!r} needs a kind 'regression' or 'classification', "
                                     f"got {kinds.get(t)!r}")
            self.loss_scale = {t: 0.5 if kinds[t] == "regression" else 1.0 for t in learned}
            self.log_scale = 0.5

    def degenerate_reason(self) -> str | None:
        if not self.aux and not self.fix_primary:
            return ("with a single task only learns a rescaling of its loss (an effective learning rate), no "
                    "balance between tasks; use weighting 'equal' or add auxiliary tasks")
        return super().degenerate_reason()

    def optimizer_groups(self) -> list[dict[str, Any]]:
        if not self.log_vars:
            return []
        group = {"params": list(self.log_vars.values()), "weight_decay": 0.0}
        return [group if self.lr is None else {**group, "lr": self.lr}]

    def weights(self) -> dict[str, Tensor]:
        one = torch.ones((), device=next(iter(self.log_vars.values())).device) if self.log_vars else torch.ones(())
        return {
            t: self.loss_scale[t] * torch.exp(-self.log_vars[t]) if t in self.log_vars else one for t in self.tasks
        }

    def regulariser(self, tasks: Sequence[str]) -> Tensor | None:
        learned = [self.log_vars[t] for t in tasks if t in self.log_vars]
        return self.log_scale * torch.stack(learned).sum() if learned else None


class DWA(LossWeighting):
    """Dynamic weight average: ``w_t = K softmax_t(r_t / T)``, ``r_t`` = last epoch's over the one before's mean loss.

    Weights are 1 for the first two epochs. ``K`` is the number of weighted tasks: all tasks, or
    (``fix_primary``) the auxiliary tasks, the primary then keeping weight 1. The last two epochs'
    losses are buffers, so they are checkpointed; a task not seen yet has ratio 1.
    """

    def __init__(self, tasks: Sequence[str], primary: str, temperature: float = 2.0, fix_primary: bool = True) -> None:
        super().__init__(tasks, primary)
        if temperature <= 0:
            raise ValueError(f"dwa: temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.fix_primary = fix_primary
        self.weighted = self.aux if fix_primary else self.tasks
        self.register_buffer("history", torch.zeros(2, len(self.tasks)))  # mean losses: epoch before last, last
        self.register_buffer("epochs", torch.zeros((), dtype=torch.long))  # end_epoch calls so far

    def degenerate_reason(self) -> str | None:
        if self.fix_primary and len(self.aux) == 1:
            return ("with fix_primary=true and one auxiliary task always gives weight 1 (it equals 'equal'); "
                    "use fix_primary: false or add auxiliary tasks")
        return super().degenerate_reason()

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        """Shift the history; a task without a loss this epoch (no label seen) keeps its last one."""
        last = [float(mean_losses.get(t, previous)) for t, previous in zip(self.tasks, self.history[1].tolist())]
        self.history.copy_(torch.stack([self.history[1], torch.tensor(last, device=self.history.device)]))
        self.epochs += 1

    def weights(self) -> dict[str, Tensor]:
        w = {t: torch.ones((), device=self.history.device) for t in self.tasks}
        if int(self.epochs) >= 2 and self.weighted:
            index = [self.tasks.index(t) for t in self.weighted]
            before, last = self.history[:, index].double()
            ratios = torch.where(before > 0, last / before.clamp_min(1e-12), 1.0)  # 1: no loss known yet
            scaled = len(self.weighted) * torch.softmax(ratios / self.temperature, 0)
            w.update({t: v.float() for t, v in zip(self.weighted, scaled)})
        return w
