"""Gradient-surgery methods on the shared parameters: PCGrad, PCGrad-Aux, CAGrad, GCS.

Each receives the per-task gradients of the base-weighted losses, flattened over all shared
parameters, and returns one flat gradient on the scale of their sum (what ``equal`` would give
when nothing conflicts).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .base import GradientWeighting


def project_conflict(g: Tensor, onto: Tensor) -> Tensor:
    """``g`` minus its component along ``onto`` when they conflict (negative dot product); else ``g``."""
    dot = g @ onto
    if dot < 0:
        return g - dot / (onto @ onto).clamp_min(1e-20) * onto
    return g


class PCGrad(GradientWeighting):
    """Yu et al. 2020: each task gradient is projected onto the normal plane of every other (original) task
    gradient it conflicts with, in a random order per task (torch generator seeded by ``seed``); summed.
    The generator's state is the module's extra state, so a resumed run draws the same orders."""

    def __init__(self, tasks: Sequence[str], primary: str, seed: int = 0) -> None:
        super().__init__(tasks, primary)
        self.generator = torch.Generator().manual_seed(int(seed))

    def get_extra_state(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Mapping[str, Tensor]) -> None:
        self.generator.set_state(state["generator"].cpu())

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        out = torch.zeros_like(next(iter(grads.values())))
        for t, g in grads.items():
            others = [o for o in grads if o != t]
            for k in torch.randperm(len(others), generator=self.generator).tolist():
                g = project_conflict(g, grads[others[k]])
            out += g
        return out


class PCGradAux(GradientWeighting):
    """The Aux-NAS paper's variant: the primary gradient is never changed; an auxiliary gradient that
    conflicts with it is projected onto the normal plane of the primary gradient (without a primary loss
    in the step, the auxiliary gradients are summed as they are)."""

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        if self.primary not in grads:  # nothing to protect
            return sum(grads.values())
        primary = grads[self.primary]
        aux = [g for t, g in grads.items() if t != self.primary]
        return primary + sum((project_conflict(g, primary) for g in aux), torch.zeros_like(primary))


def cagrad_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """The ``w`` on the simplex minimising ``g_w . g0 + c |g0| |g_w|`` (``g_w = sum_i w_i g_i``, ``g0`` the mean).

    Exact: the objective is convex, so its minimum is the best of the stationary points on the
    affine hulls of all subsets of the gradients that fall inside the simplex. On the hull of
    ``g_s + span(g_j - g_s)`` the stationary point has a closed form; ``2^K - 1`` small solves.
    """
    gram = gram / gram.diagonal().max()  # scale-free: w does not change
    k = len(gram)
    b = gram.mean(1)  # g_i . g0
    r = c * np.sqrt(max(b.mean(), 0.0))
    best, best_value = np.full(k, 1.0 / k), np.inf
    for size in range(1, k + 1):
        for s, *rest in itertools.combinations(range(k), size):
            diff = gram[rest] - gram[s]  # rows: (g_j - g_s) . g_i
            inv = np.linalg.pinv(diff[:, rest] - diff[:, [s]], hermitian=True)
            v, e = diff[:, s], diff.mean(1)  # (g_j - g_s) . g_s and . g0
            slope = e @ inv @ e  # squared norm of g0 projected on the hull's directions
            if slope >= r * r:  # unbounded along the hull: the minimum lies on a smaller face
                continue
            norm = np.sqrt(max(gram[s, s] - v @ inv @ v, 0.0) / (1 - slope / r**2))  # |g_w| at the stationary point
            t = -inv @ (v + norm * e / r)
            w = np.zeros(k)
            w[s], w[rest] = 1 - t.sum(), t
            if w.min() < -1e-9:
                continue
            w = w.clip(0) / w.clip(0).sum()
            value = w @ b + r * np.sqrt(max(w @ gram @ w, 0.0))
            if value < best_value:
                best, best_value = w, value
    return best


class CAGrad(GradientWeighting):
    """Liu et al. 2021: ``d = g0 + (c |g0| / |g_w|) g_w``, ``g0`` the mean gradient and ``w`` the solution of
    the dual on the simplex (``cagrad_weights``), divided by ``1 + c^2`` as the authors do and multiplied by
    the number of tasks, so that ``c = 0`` is the plain sum."""

    def __init__(self, tasks: Sequence[str], primary: str, c: float = 0.4) -> None:
        super().__init__(tasks, primary)
        if c < 0:
            raise ValueError(f"cagrad: c must be non-negative, got {c}")
        self.c = float(c)

    def degenerate_reason(self) -> str | None:
        if self.c == 0:
            return "with c=0 is the plain sum of the task gradients (it equals 'equal'); use c > 0 or weighting 'equal'"
        return super().degenerate_reason()

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        g = torch.stack(list(grads.values()))
        d = g.mean(0)
        if self.c > 0 and d.norm() > 0:
            gw = torch.from_numpy(cagrad_weights((g @ g.T).double().cpu().numpy(), self.c)).to(g) @ g
            d = (d + self.c * d.norm() / gw.norm().clamp_min(1e-20) * gw) / (1 + self.c**2)
        return len(g) * d


class GCS(GradientWeighting):
    """Du et al. 2018, gradient cosine similarity: an auxiliary gradient is added only where its cosine with
    the primary gradient is positive, per shared parameter tensor (``granularity="tensor"``) or over all
    shared parameters at once (``"global"``); ``mode="weighted"`` scales it by that cosine instead of 1.
    Without a primary loss in the step there is nothing to compare with: the auxiliary gradients are summed."""

    def __init__(
        self, tasks: Sequence[str], primary: str, granularity: str = "tensor", mode: str = "unweighted"
    ) -> None:
        super().__init__(tasks, primary)
        if granularity not in ("tensor", "global"):
            raise ValueError(f"gcs: granularity must be 'tensor' or 'global', got {granularity!r}")
        if mode not in ("unweighted", "weighted"):
            raise ValueError(f"gcs: mode must be 'unweighted' or 'weighted', got {mode!r}")
        self.granularity = granularity
        self.mode = mode

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        if self.primary not in grads:  # nothing to compare with
            return sum(grads.values())
        primary = grads[self.primary]
        sizes = [s.numel() for s in shapes] if self.granularity == "tensor" else [primary.numel()]
        repeats = torch.tensor(sizes, device=primary.device)
        pieces = primary.split(sizes)
        out = primary.clone()
        for a in [t for t in grads if t != self.primary]:
            aux_pieces = grads[a].split(sizes)
            dots = torch.stack([p @ q for p, q in zip(pieces, aux_pieces)])
            norms = torch.stack([p.norm() * q.norm() for p, q in zip(pieces, aux_pieces)])
            cos = dots / norms.clamp_min(1e-20)
            scale = (cos > 0).to(cos.dtype) * (cos if self.mode == "weighted" else 1.0)
            out += grads[a] * scale.repeat_interleave(repeats, output_size=primary.numel())
        return out
