"""Auto-Lambda (Liu, Johns and Davison, TMLR 2022): task weights learned from the primary task's loss one step ahead.

Before every network step on a batch ``x``, the weights ``lambda`` take one Adam step on the primary's loss on a
second batch ``x'`` of training images, after a virtual network step on ``x``:

    theta' = theta - lr (momentum * buffer + d/dtheta sum_t lambda_t b_t L_t(theta; x) + weight_decay * theta)
    d L_p(theta'; x') / d lambda_t  ~=  -lr (b_t L_t(theta+; x) - b_t L_t(theta-; x)) / (2 eps)

with ``theta+- = theta +- eps v``, ``v = dL_p(theta'; x')/dtheta'`` and ``eps = 0.01 / |v|`` (the finite-difference
Hessian-vector product of DARTS). The network step then uses the updated ``lambda``. Only the direction through the
virtual step counts: the primary's loss at ``theta'`` does not depend on ``lambda`` otherwise. docs/weighting.md
lists the reference's defaults and where this implementation differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import LossWeighting, MetaProblem, Stats, adam_update, filled, gradients


class AutoLambda(LossWeighting):
    """Weights ``lambda_t`` (a buffer with its own Adam, not stepped by the network optimiser), every one starting at
    ``init``; ``lr``: the meta learning rate (the reference's 1e-4 on NYUv2, 3e-5 on CityScapes); ``every``: a meta
    update before every that many network steps (the reference: 1). ``fix_primary``: the primary keeps weight 1 and
    only the auxiliary weights are learned (the reference learns the primary's too: False).

    A meta batch without a primary label gives no meta-objective: that step makes no meta update (statistic
    ``meta_updated``, its share of the meta steps). A task without a label in the network step's batch takes no part
    in the look-ahead and its weight does not move.
    """

    needs_meta_batch = True
    BETAS = (0.9, 0.999)
    EPS = 1e-8
    #: the finite difference's step is this over the norm of the primary's gradient at theta' (the reference's)
    FD_SCALE = 0.01

    def __init__(
        self, tasks: Sequence[str], primary: str, init: float = 0.1, lr: float = 1e-4, every: int = 1,
        fix_primary: bool = False,
    ) -> None:
        super().__init__(tasks, primary)
        if lr <= 0:
            raise ValueError(f"auto_lambda: lr must be positive, got {lr}")
        if every < 1 or int(every) != every:
            raise ValueError(f"auto_lambda: every must be a whole number of network steps >= 1, got {every}")
        self.lr = float(lr)
        self.every = int(every)
        self.fix_primary = fix_primary
        k = len(self.tasks)
        self.register_buffer("lambdas", torch.full((k,), float(init)))
        if fix_primary:
            self.lambdas[self.tasks.index(primary)] = 1.0
        self.register_buffer("exp_avg", torch.zeros(k))
        self.register_buffer("exp_avg_sq", torch.zeros(k))
        self.register_buffer("steps", torch.zeros(k, dtype=torch.long))  # Adam steps of each weight

    def weights(self) -> dict[str, Tensor]:
        return dict(zip(self.tasks, self.lambdas))

    def learned(self, tasks: Sequence[str]) -> list[str]:
        """The tasks among ``tasks`` whose weight is learned."""
        return [t for t in tasks if not (self.fix_primary and t == self.primary)]

    def meta_due(self, step: int) -> bool:
        return step % self.every == 0

    def meta_update(self, problem: MetaProblem) -> Stats:
        """One Adam step of the weights; ``meta_updated`` 1 when it was made, 0 when the meta batch had no primary
        label (or no learned task a label in the network batch)."""
        grads = self.meta_gradient(problem)
        if grads is None:
            return {"meta_updated": {self.primary: 0.0}}
        index = torch.tensor([self.tasks.index(t) for t in grads], device=self.lambdas.device)
        grad = torch.stack([grads[t] for t in grads]).to(self.lambdas)
        with torch.no_grad():
            updated, exp_avg, exp_avg_sq, steps = adam_update(
                self.lambdas[index], grad, self.exp_avg[index], self.exp_avg_sq[index], self.steps[index], self.lr,
                self.BETAS, self.EPS)
            self.lambdas[index], self.exp_avg[index], self.exp_avg_sq[index], self.steps[index] = (
                updated, exp_avg, exp_avg_sq, steps)
        return {"meta_updated": {self.primary: 1.0}}

    def meta_gradient(self, problem: MetaProblem) -> dict[str, Tensor] | None:
        """``d L_p(theta'; meta) / d lambda_t`` of every learned task labelled in the network batch: the look-ahead
        through one virtual step, ``-b_t (lr * v) . dL_t/dtheta``, by central differences along ``lr * v`` (each
        parameter's own lr; with one lr ``alpha`` this is the reference's ``-alpha (L_t(theta+) - L_t(theta-)) /
        (2 eps)``); None when the meta batch has no primary label or no learned task is labelled in the network
        batch."""
        tasks = self.learned([t for t in self.tasks if t in problem.train_labels])
        if self.primary not in problem.meta_labels or not tasks:
            return None
        params, reduce = problem.params, problem.reduce
        losses = problem.train_losses(None)
        w = self.weights()
        objective = sum(w[t].detach() * problem.base_weights[t] * losses[t] for t in losses)
        step = filled(gradients(objective, params, retain_graph=False), params)
        if reduce is not None:
            reduce(step)
        ahead = problem.virtual_step(step)
        primary = problem.meta_losses(ahead)[self.primary]
        direction = [lr * g for lr, g in zip(problem.lrs, filled(gradients(primary, ahead), params))]
        if reduce is not None:
            reduce(direction)
        eps = self.FD_SCALE / torch.cat([d.flatten() for d in direction]).norm().clamp_min(1e-20)
        with torch.no_grad():
            plus = problem.train_losses([p + eps * d for p, d in zip(params, direction)])
            minus = problem.train_losses([p - eps * d for p, d in zip(params, direction)])
            values = torch.stack([problem.base_weights[t] * (plus[t] - minus[t]).float() for t in tasks])
            if reduce is not None:
                reduce([values])
            return dict(zip(tasks, -values / (2 * eps)))

