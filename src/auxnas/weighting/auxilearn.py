"""AuxiLearn (Navon, Achituve, Maron, Chechik and Fetaya, ICLR 2021): a small network that combines the task losses,
learned by implicit differentiation on a held-out auxiliary set of training images.

The network step minimises ``f_phi(x)``, ``x_t = b_t L_t`` the (statically weighted) task losses: ``linear``,
``f = sum_t w_t x_t``; ``nonlinear``, ``f = W2 softplus(W1 x + c) + x_p`` (the primary's loss added as it is). Every
``every`` network steps, ``phi`` takes one step on the primary's loss on a batch of the auxiliary set, through the
implicit function theorem: with ``g = dL_p(aux)/dtheta`` and ``H = d^2 f(x(train))/dtheta^2``,

    d L_p / d phi  ~=  -(d^2 f / dphi dtheta) p,    p = sum_{j=0..J} (I - alpha H)^j g

(a truncated Neumann series of ``alpha H^-1 g``, ``J`` = ``neumann_terms``), the gradient clipped to a norm of
``max_grad_norm``, then SGD with momentum and weight decay, and ``phi`` clamped to be non-negative (the reference's
monotone networks: a larger task loss never lowers ``f``). docs/weighting.md lists the reference's defaults and
where this implementation differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import LossWeighting, MetaProblem, Stats, filled, gradients, per_task


class AuxiLearn(LossWeighting):
    """The loss combination ``f_phi`` (``combine``: ``linear`` or ``nonlinear`` with ``hidden`` units), learned every
    ``every`` network steps on a batch of the auxiliary set (``aux_share`` of the training images with a primary
    label, held out from the network: ``meta_split``) by SGD (``lr``, momentum 0.9, ``weight_decay``) on the implicit
    hypergradient (``neumann_terms``, step ``neumann_lr``; None: each parameter's current learning rate, as the
    reference sets it to the network's), clipped to ``max_grad_norm``. ``seed``: the non-linear network's
    initialisation (uniform in [0, 1), the reference's).

    Statistic ``weight``: ``d f / d x_t`` at the step's losses, each task's effective weight (for ``linear``, ``w_t``).
    A meta batch without a primary label makes no update (``meta_updated`` 0). A task without a label in a batch
    enters ``f`` with a loss of 0.
    """

    needs_meta_batch = True
    #: the combination may be non-linear: no fixed weights for a gradient method to compose with
    weighs_linearly = False
    MOMENTUM = 0.9

    def __init__(
        self, tasks: Sequence[str], primary: str, combine: str = "linear", hidden: int = 3, lr: float = 1e-3,
        weight_decay: float = 1e-4, every: int = 50, neumann_terms: int = 3, neumann_lr: float | None = None,
        max_grad_norm: float = 25.0, aux_share: float = 0.025, seed: int = 0,
    ) -> None:
        super().__init__(tasks, primary)
        if combine not in ("linear", "nonlinear"):
            raise ValueError(f"auxilearn: combine must be 'linear' or 'nonlinear', got {combine!r}")
        for name, value in (("lr", lr), ("max_grad_norm", max_grad_norm)):
            if value <= 0:
                raise ValueError(f"auxilearn: {name} must be positive, got {value}")
        for name, value in (("every", every), ("hidden", hidden), ("neumann_terms", neumann_terms)):
            if value < 1 or int(value) != value:
                raise ValueError(f"auxilearn: {name} must be a whole number >= 1, got {value}")
        if not 0 < aux_share < 1:
            raise ValueError(f"auxilearn: aux_share must be in (0, 1), got {aux_share}")
        if neumann_lr is not None and neumann_lr <= 0:
            raise ValueError(f"auxilearn: neumann_lr must be positive (or null for the network's), got {neumann_lr}")
        self.combine = combine
        self.lr, self.weight_decay, self.every = float(lr), float(weight_decay), int(every)
        self.neumann_terms, self.neumann_lr, self.max_grad_norm = int(neumann_terms), neumann_lr, float(max_grad_norm)
        self.meta_split = float(aux_share)
        k = len(self.tasks)
        if combine == "linear":
            self.phi = nn.ParameterDict({"w": nn.Parameter(torch.ones(k))})
        else:
            generator = torch.Generator().manual_seed(int(seed))
            self.phi = nn.ParameterDict({
                "w1": nn.Parameter(torch.rand(int(hidden), k, generator=generator)),
                "c1": nn.Parameter(torch.zeros(int(hidden))),
                "w2": nn.Parameter(torch.rand(1, int(hidden), generator=generator)),
            })
        for name, p in self.phi.items():  # SGD's momentum buffers
            self.register_buffer(f"momentum_{name}", torch.zeros_like(p))
        self.register_buffer("meta_steps", torch.zeros((), dtype=torch.long))

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """None: ``phi`` is stepped by the meta update alone, never by the network optimiser."""
        return []

    def meta_due(self, step: int) -> bool:
        return step % self.every == 0

    def combined(self, x: Tensor, phi: Mapping[str, Tensor]) -> Tensor:
        """``f_phi(x)`` of the vector ``x`` of (statically weighted) task losses, in task order."""
        if self.combine == "linear":
            return phi["w"] @ x
        hidden = F.softplus(phi["w1"] @ x + phi["c1"])
        return (phi["w2"] @ hidden).squeeze(0) + x[self.tasks.index(self.primary)]

    def loss_vector(self, losses: Mapping[str, Tensor], base_weights: Mapping[str, float]) -> Tensor:
        """``x_t = b_t L_t`` in task order, 0 for a task without a loss."""
        zero = next(iter(losses.values())).new_zeros(())
        return torch.stack([base_weights[t] * losses[t] if t in losses else zero for t in self.tasks])

    def weights(self) -> dict[str, Tensor]:
        """``linear``'s ``w`` (the non-linear combination has no fixed weights: ``objective`` reports ``df/dx``)."""
        if self.combine != "linear":
            raise NotImplementedError("a non-linear combination has no fixed task weights")
        return dict(zip(self.tasks, self.phi["w"].detach()))

    def objective(self, losses: Mapping[str, Tensor], base_weights: Mapping[str, float]) -> tuple[Tensor | None, Stats]:
        """``f_phi`` of the step's losses (``phi`` held fixed: the network optimiser never sees it) and ``df/dx_t``
        of the tasks present."""
        present = [t for t in self.tasks if t in losses]
        if not present:
            return None, {}
        phi = {name: p.detach() for name, p in self.phi.items()}
        x = self.loss_vector(losses, base_weights)
        probe = x.detach().float().requires_grad_()
        with torch.enable_grad():
            slopes = torch.autograd.grad(self.combined(probe, phi), probe)[0]
        stats = {"weight": per_task(present, [slopes[self.tasks.index(t)] for t in present])}
        return self.combined(x, phi), stats

    def meta_update(self, problem: MetaProblem) -> Stats:
        """One SGD step of ``phi`` on the implicit hypergradient, then ``phi`` clamped to >= 0 (the bias ``c1``
        apart); ``meta_updated`` 1 when it was made, 0 when the meta batch had no primary label."""
        grads = self.hypergradient(problem)
        if grads is None:
            return {"meta_updated": {self.primary: 0.0}}
        with torch.no_grad():
            norm = torch.cat([g.flatten() for g in grads.values()]).norm()
            scale = min(1.0, self.max_grad_norm / (float(norm) + 1e-6))  # torch's clip_grad_norm_
            for name, p in self.phi.items():  # torch's SGD: the first step's buffer is the step itself
                step = grads[name] * scale + self.weight_decay * p
                buffer = getattr(self, f"momentum_{name}")
                buffer.copy_(self.MOMENTUM * buffer + step if int(self.meta_steps) else step)
                p.sub_(self.lr * buffer)
                if name != "c1":
                    p.clamp_(min=0)
            self.meta_steps += 1
        return {"meta_updated": {self.primary: 1.0}}

    def hypergradient(self, problem: MetaProblem) -> dict[str, Tensor] | None:
        """``d L_p(aux) / d phi`` by the implicit function theorem with a truncated Neumann series; None when the
        meta batch has no primary label or the network batch no label at all."""
        if self.primary not in problem.meta_labels or not problem.train_labels:
            return None
        params, reduce = problem.params, problem.reduce
        alphas = problem.lrs if self.neumann_lr is None else [self.neumann_lr] * len(params)
        primary = problem.meta_losses(None)[self.primary]
        g = filled(gradients(primary, params), params)
        phi = dict(self.phi.items())
        train = self.combined(self.loss_vector(problem.train_losses(None), problem.base_weights), phi)
        dtrain = torch.autograd.grad(train, params, create_graph=True, allow_unused=True)
        pairs = [(p, d, gp, a) for p, d, gp, a in zip(params, dtrain, g, alphas) if d is not None]
        ps, ds, gs, als = [list(c) for c in zip(*pairs)] if pairs else ([], [], [], [])
        if reduce is not None:
            reduce(gs)
        v, total = gs, list(gs)
        for _ in range(self.neumann_terms):
            hv = filled(torch.autograd.grad(ds, ps, grad_outputs=v, retain_graph=True, allow_unused=True), ps)
            if reduce is not None:
                reduce(hv)
            v = [vi - a * h for vi, a, h in zip(v, als, hv)]
            total = [t + vi for t, vi in zip(total, v)]
        mixed = torch.autograd.grad(ds, list(phi.values()), grad_outputs=total, allow_unused=True)
        out = [-m for m in filled(mixed, list(phi.values()))]
        if reduce is not None:
            reduce(out)
        return dict(zip(phi, out))
