"""The optimisers and learning-rate schedules of the network and architecture steps."""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ExperimentConfig, TrainConfig


def build_optimizer(
    params: list[nn.Parameter] | list[dict[str, Any]], cfg: TrainConfig, betas: Sequence[float] = (0.9, 0.999)
) -> torch.optim.Optimizer:
    """Adam (with ``betas``) or SGD (with momentum) over ``params`` (parameters or parameter groups)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(betas))
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step learning-rate factor: poly ``(1 - t)^p``, cosine to 0, or constant."""

    def factor(step: int) -> float:
        t = min(step / max(total_steps, 1), 1.0)
        if cfg.schedule == "poly":
            return (1.0 - t) ** cfg.poly_power
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def advance_schedule(schedule: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Step ``schedule`` once per batch, updated or not, so that the lr of batch k is the schedule's k-th value.

    A batch without any label makes no update; torch takes a schedule step before the optimiser's first one for
    a misordered loop and warns, which is wrong here: that warning alone is silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"), UserWarning)
        schedule.step()


def current_lrs(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> list[float]:
    """The current learning rate of each of ``params`` (its parameter group's)."""
    lr = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    return [lr[id(p)] for p in params]


@torch.no_grad()
def virtual_step(optimizer: torch.optim.Optimizer, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
    """Where the plain SGD form of ``optimizer`` moves ``params`` with ``grads``: ``p - lr (momentum * buffer + g +
    weight_decay * p)`` at each parameter's group's lr, momentum and weight decay (no momentum for Adam, whose
    normalisation is left out, as in Auto-Lambda's reference); new leaf tensors that require grad."""
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    moved = []
    for p, g in zip(params, grads):
        group = group_of[id(p)]
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        update = group["momentum"] * buffer + g if buffer is not None and group.get("momentum", 0.0) else g
        moved.append((p - group["lr"] * (update + group["weight_decay"] * p)).requires_grad_())
    return moved


def build_architecture_optimizer(
    params: list[nn.Parameter], cfg: ExperimentConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The architecture weights' optimiser (``method.arch_*``) and its schedule: the network's or constant."""
    m = cfg.method
    arch_cfg = dataclasses.replace(
        cfg.train, optimizer=m.arch_optimizer, lr=m.arch_lr, weight_decay=m.arch_weight_decay,
        schedule=cfg.train.schedule if m.arch_schedule == "follow" else "constant",
    )
    optimizer = build_optimizer(params, arch_cfg, betas=m.arch_betas)
    return optimizer, build_schedule(optimizer, total_steps, arch_cfg)
