"""Gradient-surgery methods on the shared parameters: PCGrad, PCGrad-Aux, CAGrad, GCS.

Each receives the per-task gradients of the base-weighted losses, flattened over all
shared parameters, and returns one flat gradient on the scale of their sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .base import GradientWeighting


def project_conflict(g: Tensor, onto: Tensor) -> Tensor:
    """``g`` minus its component along ``onto`` when they conflict (negative dot product); else ``g``."""
    dot = torch.dot(g, onto)
    if dot < 0:
        return g - dot / onto.dot(onto).clamp_min(1e-20) * onto
    return g


class PCGrad(GradientWeighting):
    """Yu et al. 2020: each task gradient is projected onto the normal plane of every other task gradient
    it conflicts with, in random order (torch generator seeded by ``seed``); the projections are summed."""

    def __init__(self, tasks: Sequence[str], primary: str, seed: int = 0) -> None:
        super().__init__(tasks, primary)
        self.generator = torch.Generator().manual_seed(seed)

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        out = torch.zeros_like(grads[self.primary])
        for t in self.tasks:
            g = grads[t].clone()
            others = [o for o in self.tasks if o != t]
            for k in torch.randperm(len(others), generator=self.generator).tolist():
                g = project_conflict(g, grads[others[k]])
            out += g
        return out


class PCGradAux(GradientWeighting):
    """The Aux-NAS paper's variant: the primary gradient is never changed; an auxiliary gradient that
    conflicts with it is projected onto the normal plane of the primary gradient."""

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        primary = grads[self.primary]
        return primary + sum((project_conflict(grads[a], primary) for a in self.aux), torch.zeros_like(primary))


class CAGrad(GradientWeighting):
    """Liu et al. 2021: ``d = g0 + (c |g0| / |g_w|) g_w`` with ``g0`` the mean gradient and ``w`` on the simplex
    minimising ``g_w . g0 + c |g0| |g_w|``, divided by ``1 + c^2`` (as the authors do) and multiplied by the
    number of tasks, so that with ``c = 0`` it is the plain sum. The inner problem is solved on the tasks'
    Gram matrix by gradient descent over a softmax parametrisation (``iterations`` steps)."""

    def __init__(self, tasks: Sequence[str], primary: str, c: float = 0.4, iterations: int = 200) -> None:
        super().__init__(tasks, primary)
        if c < 0:
            raise ValueError(f"c must be non-negative, got {c}")
        self.c = c
        self.iterations = iterations

    def simplex_weights(self, gram: Tensor) -> Tensor:
        """The inner problem's solution ``w`` for the Gram matrix of the task gradients."""
        k = gram.shape[0]
        g0_norm = (gram.sum() / k**2).clamp_min(0).sqrt()
        logits = torch.zeros(k, dtype=gram.dtype, requires_grad=True)
        optimizer = torch.optim.Adam([logits], lr=0.1)
        for _ in range(self.iterations):
            w = torch.softmax(logits, 0)
            objective = w @ gram.sum(1) / k + self.c * g0_norm * (w @ gram @ w).clamp_min(1e-20).sqrt()
            optimizer.zero_grad()
            objective.backward()
            optimizer.step()
        return torch.softmax(logits.detach(), 0)

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        g = torch.stack([grads[t] for t in self.tasks]).double()
        k = g.shape[0]
        g0 = g.mean(0)
        if self.c == 0 or g0.norm() == 0:
            return (k * g0).to(grads[self.primary].dtype)
        with torch.enable_grad():
            w = self.simplex_weights(g @ g.T)
        gw = w @ g
        d = g0 + self.c * g0.norm() / gw.norm().clamp_min(1e-20) * gw
        return (k * d / (1 + self.c**2)).to(grads[self.primary].dtype)


class GCS(GradientWeighting):
    """Du et al. 2018, gradient cosine similarity: an auxiliary gradient is used only where it agrees with
    the primary gradient (cosine > 0), per shared parameter tensor (``granularity="tensor"``) or over all
    shared parameters at once (``"global"``); ``mode="weighted"`` scales it by the cosine instead."""

    def __init__(
        self, tasks: Sequence[str], primary: str, granularity: Literal["tensor", "global"] = "tensor",
        mode: Literal["unweighted", "weighted"] = "unweighted",
    ) -> None:
        super().__init__(tasks, primary)
        if granularity not in ("tensor", "global"):
            raise ValueError(f"granularity must be 'tensor' or 'global', got {granularity!r}")
        if mode not in ("unweighted", "weighted"):
            raise ValueError(f"mode must be 'unweighted' or 'weighted', got {mode!r}")
        self.granularity = granularity
        self.mode = mode

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        primary = grads[self.primary]
        sizes = [s.numel() for s in shapes] if self.granularity == "tensor" else [primary.numel()]
        out = primary.clone()
        for a in self.aux:
            pieces = []
            for p, g in zip(primary.split(sizes), grads[a].split(sizes)):
                cos = torch.nn.functional.cosine_similarity(p, g, dim=0, eps=1e-20)
                if cos <= 0:
                    pieces.append(torch.zeros_like(g))
                else:
                    pieces.append(g * cos if self.mode == "weighted" else g)
            out += torch.cat(pieces)
        return out
