"""A loss weighting composed with a gradient method (``"auto_lambda+cagrad"``): the gradient method combines the
gradients of the losses the loss weighting has weighted, as Auto-Lambda's reference composes its weights with
PCGrad, CAGrad or GradDrop (its best NYUv2 row is Auto-Lambda + CAGrad)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from .base import GradientWeighting, LossWeighting, MetaProblem, Reduce, Stats, Weighting, per_task


class Composed(Weighting):
    """``loss`` weights the task losses, ``gradient`` combines their gradients on the shared parameters.

    ``loss`` must act through its weights alone (``LossWeighting`` with ``needs_task_gradients`` false: not
    GradNorm, whose own backward measures gradient norms); its regulariser (uncertainty's log-variance terms) is
    back-propagated as it is. Both parts keep their state, and a meta-learned ``loss`` keeps its meta update, whose
    look-ahead steps with the plain weighted sum, as the reference's does.
    """

    def __init__(self, loss: LossWeighting, gradient: GradientWeighting) -> None:
        super().__init__(loss.tasks, loss.primary)
        if not isinstance(loss, LossWeighting) or loss.needs_task_gradients or not loss.weighs_linearly:
            raise ValueError(f"{type(loss).__name__} cannot come first: the first part must act through its task "
                             "weights alone (uncertainty, dwa, auto_lambda)")
        if not isinstance(gradient, GradientWeighting):
            raise ValueError(f"{type(gradient).__name__} cannot come second: the second part must be a gradient "
                             "method (pcgrad, pcgrad_aux, cagrad, gcs)")
        self.loss = loss
        self.gradient = gradient
        self.needs_meta_batch = loss.needs_meta_batch
        self.meta_split = loss.meta_split
        self.reduces_shared_gradients = gradient.reduces_shared_gradients

    def degenerate_reason(self) -> str | None:
        return self.loss.degenerate_reason() or self.gradient.degenerate_reason()

    def optimizer_groups(self) -> list[dict[str, Any]]:
        return [*self.loss.optimizer_groups(), *self.gradient.optimizer_groups()]

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared: Sequence[nn.Parameter],
        base_weights: Mapping[str, float],
        last_shared_layer: Tensor | None = None,
        reduce: Reduce | None = None,
        extra: Tensor | None = None,
    ) -> Stats:
        """The gradient method's backward of ``w_t L_t`` (``w``: the loss weighting's weights; the static ``b_t``
        apply inside it as usual), after the loss weighting's regulariser and ``extra``; the statistics of both."""
        present = [t for t in self.tasks if t in losses]
        if not present:
            if extra is not None:
                extra.backward()
            return {}
        w = self.loss.weights()
        regulariser = self.loss.regulariser(present)
        terms = [t for t in (regulariser, extra) if t is not None]
        stats = self.gradient.backward({t: w[t] * losses[t] for t in present}, shared, base_weights,
                                       last_shared_layer, reduce, sum(terms) if terms else None)
        return {"weight": per_task(present, [w[t] for t in present]), **stats}

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        self.loss.end_epoch(mean_losses)
        self.gradient.end_epoch(mean_losses)

    def meta_due(self, step: int) -> bool:
        return self.loss.meta_due(step)

    def meta_update(self, problem: MetaProblem) -> Stats:
        return self.loss.meta_update(problem)
