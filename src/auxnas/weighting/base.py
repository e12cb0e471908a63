"""The weighting interface: per-task losses in, gradients on the model's parameters out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

#: what ``backward`` returns for logging: statistic name -> task -> value
Stats = dict[str, dict[str, float]]
#: data-parallel training: replaces each tensor of a list by its mean over the processes, in place
Reduce = Callable[[Sequence[Tensor]], None]


@dataclass
class MetaProblem:
    """What a meta-learned weighting's update (``Weighting.meta_update``) works on, built by the training loop.

    ``params``: the network parameters the network step updates, and ``lrs`` each one's current learning rate.
    ``train_losses(params)`` and ``meta_losses(params)``: the (unweighted) loss of every task labelled in the
    network step's batch, and in the second batch the meta-objective is measured on, with the network's parameters
    replaced by ``params`` (None: as they are), leaving the network's BatchNorm statistics as they are.
    ``virtual_step(grads)``: where the plain SGD form of the network optimiser would move ``params`` with ``grads``,
    ``p - lr (momentum * buffer + g + weight_decay * p)`` (the look-ahead of Auto-Lambda and DARTS).
    ``train_labels`` and ``meta_labels``: the tasks labelled in each batch (in the global batch, with several
    processes). ``reduce``: as in ``Weighting.backward``.
    """

    params: list[nn.Parameter]
    lrs: list[float]
    train_losses: Callable[[Sequence[Tensor] | None], dict[str, Tensor]]
    meta_losses: Callable[[Sequence[Tensor] | None], dict[str, Tensor]]
    virtual_step: Callable[[Sequence[Tensor]], list[Tensor]]
    train_labels: frozenset[str]
    meta_labels: frozenset[str]
    base_weights: Mapping[str, float]
    reduce: Reduce | None = None


class Weighting(nn.Module):
    """Turns per-task losses into gradients (LibMTL's split: orthogonal to the architecture).

    ``backward`` accumulates into ``.grad`` like ``loss.backward()``. The method's own parameters go to the
    network optimiser through ``optimizer_groups``; state with its own update rule is a buffer. Everything
    the method learns or remembers is in ``state_dict()`` (tensors only), so it is checkpointed with the model.
    """

    #: whether ``backward`` needs each task's own gradient (gradient surgery, GradNorm's norms), so that data-parallel
    #: training must average those over the processes by hand (``reduce``) before combining them. False: the method
    #: only combines the losses linearly (``LossWeighting.objective``), and the network step runs through
    #: ``DistributedDataParallel`` (docs/distributed.md). True by default: a method is data-parallel safe either way.
    needs_task_gradients: bool = True
    #: whether the method learns from a second batch of training images before network steps (``meta_update``, which
    #: the training loop calls with that batch before every step ``meta_due`` accepts)
    needs_meta_batch: bool = False
    #: the share of the training images with a primary label held out as the meta batches' own set, never trained
    #: on by the network (0: the meta batches are drawn from the network's own images)
    meta_split: float = 0.0
    #: whether ``backward`` leaves the shared parameters' gradients averaged over the processes already (it combined
    #: per-task gradients it had averaged), so that data-parallel training need not send them again
    reduces_shared_gradients: bool = False

    def __init__(self, tasks: Sequence[str], primary: str) -> None:
        super().__init__()
        if primary not in tasks:
            raise ValueError(f"primary task {primary!r} is not among {list(tasks)}")
        self.tasks = list(tasks)
        self.primary = primary
        self.aux = [t for t in self.tasks if t != primary]

    def degenerate_reason(self) -> str | None:
        """Why this configuration cannot do anything ``equal`` does not (``build_weighting`` refuses it); None if
        it can. The text follows the method's name in the error message."""
        if not self.aux:
            return ("with a single task (no auxiliary task) has no other task to weight it against, so it can only "
                    "equal 'equal'; use weighting 'equal' or add auxiliary tasks")
        return None

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """Parameter groups of this method's own parameters for the network optimiser ([] when it has none)."""
        params = list(self.parameters())
        return [{"params": params}] if params else []

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared: Sequence[nn.Parameter],
        base_weights: Mapping[str, float],
        last_shared_layer: Tensor | None = None,
        reduce: Reduce | None = None,
        extra: Tensor | None = None,
    ) -> Stats:
        """Accumulate the gradients of the combined objective; return the step's statistics for logging.

        ``shared``: the parameters several tasks reach (what gradient methods act on); ``last_shared_layer``:
        the weight of the last shared layer (where GradNorm measures gradient norms).

        ``reduce`` (data-parallel training; None in one process): averages tensors over the processes. Each
        process's ``losses`` are its part of the global batch's, scaled so that their mean over the processes
        is the global batch's loss. A method passes through ``reduce`` every gradient or loss it uses other
        than linearly (per-task gradients before combining them, GradNorm's norms and loss ratios), so that it
        acts on the global batch's values, identically on every process; what it accumulates into ``.grad``
        is averaged over the processes by the caller afterwards.

        ``extra``: the step's terms outside the task losses (the model's extra loss, single-level search's
        penalty), back-propagated as they are, never weighted or combined. A method makes one backward pass when it
        can (a loss weighting: the objective and ``extra`` together), because data-parallel training of a loss
        weighting averages the gradients during the step's one backward.
        """
        raise NotImplementedError

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        """Called once per epoch with the epoch's mean (unweighted) training loss of every task."""

    def meta_due(self, step: int) -> bool:
        """Whether a meta update precedes network step ``step`` (counted from 0 over the run)."""
        return True

    def meta_update(self, problem: MetaProblem) -> Stats:
        """Update what the method learns from the meta batch before the network step (``MetaProblem``)
        (``needs_meta_batch`` methods only); return its statistics for logging."""
        raise NotImplementedError


def adam_update(
    value: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, steps: Tensor, lr: float,
    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of ``torch.optim.Adam`` (no weight decay) on ``value`` with ``grad``, element-wise, from its moments
    and per-element step counts; returns the new value, moments and counts. The weightings that keep their own
    optimiser as buffers (so that their ``state_dict`` holds all of it) step with this."""
    beta1, beta2 = betas
    steps = steps + 1
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    step = exp_avg / (1 - beta1**steps) / ((exp_avg_sq / (1 - beta2**steps)).sqrt() + eps)
    return value - lr * step, exp_avg, exp_avg_sq, steps


def gradients(loss: Tensor, params: Sequence[Tensor], retain_graph: bool = True) -> list[Tensor | None]:
    """``d loss / d p`` for each of ``params``; None where the loss does not reach ``p``."""
    if not params or not loss.requires_grad:
        return [None] * len(params)
    return list(torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True))


def filled(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> list[Tensor]:
    """``grads`` with zeros where a parameter was not reached (so that every process reduces the same tensors)."""
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def accumulate(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
    """Add ``grads`` into ``.grad`` as ``backward()`` would (None: left alone)."""
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.to(p.dtype)
        else:
            p.grad.add_(g)


def reached_leaves(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The leaf tensors requiring grad that ``backward()`` of ``tensors`` would fill, found by walking the graph."""
    leaves = {id(t): t for t in tensors if t.requires_grad and t.grad_fn is None}
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node holds its leaf
        if variable is not None:
            leaves[id(variable)] = variable
        stack.extend(child for child, _ in node.next_functions)
    return list(leaves.values())


def per_task(tasks: Sequence[str], values: Sequence[Tensor]) -> dict[str, float]:
    """``task -> float`` from one scalar tensor per task, with a single device sync."""
    return dict(zip(tasks, torch.stack([v.detach().float() for v in values]).tolist())) if tasks else {}


class LossWeighting(Weighting):
    """Methods that only scale the losses: one backward of a weighted sum (plus the method's own terms)."""

    needs_task_gradients = False
    #: whether the objective is ``sum_t w_t b_t L_t`` with ``weights()``, so that a gradient method can combine the
    #: weighted losses' gradients (``Composed``); False for a learned non-linear combination
    weighs_linearly: bool = True

    def weights(self) -> dict[str, Tensor]:
        """The method's weight of every task (multiplied with the user's static weights)."""
        raise NotImplementedError

    def regulariser(self, tasks: Sequence[str]) -> Tensor | None:
        """An extra term of the objective for the ``tasks`` present (uncertainty's log-variances); None by default."""
        return None

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared: Sequence[nn.Parameter],
        base_weights: Mapping[str, float],
        last_shared_layer: Tensor | None = None,
        reduce: Reduce | None = None,
        extra: Tensor | None = None,
    ) -> Stats:
        """One backward of ``sum_t w_t b_t L_t`` (+ the regulariser) over the tasks present, with ``extra``; returns
        ``{"weight": w}`` of those tasks."""
        objective, stats = self.objective(losses, base_weights)
        terms = [t for t in (objective, extra) if t is not None]
        if terms:
            sum(terms).backward()
        return stats

    def objective(self, losses: Mapping[str, Tensor], base_weights: Mapping[str, float]) -> tuple[Tensor | None, Stats]:
        """``sum_t w_t b_t L_t`` (+ the regulariser) over the tasks present (None without any), and
        ``{"weight": w}`` of those tasks: what ``backward`` back-propagates."""
        present = [t for t in self.tasks if t in losses]
        if not present:
            return None, {}
        w = self.weights()
        objective = sum(w[t] * base_weights[t] * losses[t] for t in present)
        extra = self.regulariser(present)
        stats = {"weight": per_task(present, [w[t] for t in present])}
        return (objective if extra is None else objective + extra), stats


class GradientWeighting(Weighting):
    """Methods that combine per-task gradients of the shared parameters.

    Each present task's base-weighted loss is differentiated once (``autograd.grad``) w.r.t. the shared
    parameters and every other parameter its graph reaches: the shared parts, flattened, go to
    ``combine``; the other parts are summed into ``.grad`` (their ordinary gradient of the
    base-weighted sum). Shared parameters no loss reaches keep their ``.grad``. Without shared
    parameters this is exactly the plain weighted sum. In data-parallel training the flat per-task
    gradients are averaged over the processes before ``combine`` (one all-reduce for all tasks), so
    every process combines the global batch's gradients and gets the same result.
    """

    reduces_shared_gradients = True

    def combine(self, grads: dict[str, Tensor], shapes: list[torch.Size]) -> Tensor:
        """Flat per-task gradients (task -> vector over all shared parameters) of the tasks present in this
        step, in task order (the primary may be absent) -> one flat gradient."""
        raise NotImplementedError

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared: Sequence[nn.Parameter],
        base_weights: Mapping[str, float],
        last_shared_layer: Tensor | None = None,
        reduce: Reduce | None = None,
        extra: Tensor | None = None,
    ) -> Stats:
        """Combine the shared gradients (averaged over the processes first, with ``reduce``) after ``extra``'s
        backward; returns their norms and cosines with the primary's (``{}`` without any)."""
        if extra is not None:
            extra.backward(retain_graph=True)
        present = [t for t in self.tasks if t in losses]
        weighted = [base_weights[t] * losses[t] for t in present]
        shared = [p for p in shared if p.requires_grad]
        shared_ids = {id(p) for p in shared}
        others = [p for p in reached_leaves(weighted) if id(p) not in shared_ids]
        flat, reached = {}, [False] * len(shared)
        for i, (t, loss) in enumerate(zip(present, weighted)):
            grads = gradients(loss, [*shared, *others], retain_graph=i < len(weighted) - 1)
            accumulate(others, grads[len(shared) :])
            own = grads[: len(shared)]
            reached = [r or g is not None for r, g in zip(reached, own)]
            if shared:
                flat[t] = torch.cat([g.flatten() for g in filled(own, shared)])
        if reduce is not None and flat:
            reduce(list(flat.values()))
        if any(reached):
            combined = self.combine(flat, [p.shape for p in shared]).split([p.numel() for p in shared])
            accumulate(shared, [g.view_as(p) if r else None for g, p, r in zip(combined, shared, reached)])
        return gradient_stats(flat, self.primary, self.aux)


def gradient_stats(flat: Mapping[str, Tensor], primary: str, aux: Sequence[str]) -> Stats:
    """``grad_norm``: ``|g_t|`` of every task in ``flat``; ``cos_primary``: ``cos(g_a, g_p)`` of every auxiliary
    task in it (none without the primary)."""
    if not flat:
        return {}
    norms = {t: g.norm() for t, g in flat.items()}
    aux = [a for a in aux if a in flat and primary in flat]
    cos = [flat[a] @ flat[primary] / (norms[a] * norms[primary]).clamp_min(1e-20) for a in aux]
    return {"grad_norm": per_task(list(norms), list(norms.values())), "cos_primary": per_task(aux, cos)}
