"""Shared cases of the meta-learned weightings' tests: tiny differentiable models whose task losses come from a batch
of targets (task -> tensor), and the ``MetaProblem`` the training loop would build over them."""

import torch
from torch.func import functional_call

from auxnas.engine.optim import current_lrs, virtual_step
from auxnas.weighting import MetaProblem


class Identity(torch.nn.Module):
    """``L_t = 0.5 |theta - batch[t]|^2`` from ``theta = 0``: each task's gradient is minus its target."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(2))

    def forward(self, batch):
        return {t: 0.5 * ((self.theta - target) ** 2).sum() for t, target in batch.items()}


def problem(model, optimizer, train, meta, base_weights=None):
    """The ``MetaProblem`` of ``model`` (its ``forward(batch)`` returns the task losses) under ``optimizer``."""
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def losses(batch, replaced=None):
        return model(batch) if replaced is None else functional_call(model, dict(zip(names, replaced)), (batch,))

    return MetaProblem(params, current_lrs(optimizer, params), lambda replaced: losses(train, replaced),
                       lambda replaced: losses(meta, replaced), lambda g: virtual_step(optimizer, params, g),
                       frozenset(train), frozenset(meta), base_weights or {"p": 1.0, "a": 1.0})
