"""What hangs on the training loop: diagnostics, TensorBoard and checkpoints, each a small ``Callback``.

``fit`` calls every callback at four points: ``on_losses`` in each network step (before the backward pass),
``on_validated`` when an epoch's record has its validation metrics (a callback may add to it),
``on_epoch_end`` once the record is in the history and the selection updated, and ``on_train_end`` after the
last epoch (before the test evaluation). Pass your own to ``fit(..., callbacks=[...])``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..methods import MultiTaskModel
from ..storage import save_checkpoint
from .checkpoints import checkpoint_payload
from .evaluation import evaluate_model
from .record import EpochRecord
from .run import Run
from .state import TrainState
from .tensorboard_log import TensorBoardLog


class Callback:
    """A hook on the training loop; every method does nothing unless overridden."""

    def on_losses(self, state: TrainState, losses: Mapping[str, Tensor]) -> None:
        """A network step's task losses (with their graph), before its backward pass."""

    def on_validated(self, run: Run, record: EpochRecord) -> None:
        """An epoch's record with its validation metrics, before it is kept."""

    def on_epoch_end(self, run: Run, record: EpochRecord) -> None:
        """The epoch ``record`` is in ``run.state.history``; ``run.state.epoch`` and the selection are updated."""

    def on_train_end(self, run: Run) -> None:
        """The last epoch is done; the test evaluation follows."""


class EpochStats:
    """Per-epoch means of what the weighting method reports each step (statistic -> task -> value)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = {}

    def add(self, stats: dict[str, dict[str, float]]) -> None:
        for stat, values in stats.items():
            for task, value in values.items():
                self.values.setdefault(stat, {}).setdefault(task, []).append(value)

    def means(self) -> dict[str, dict[str, float]]:
        return {s: {t: statistics.fmean(v) for t, v in tasks.items()} for s, tasks in self.values.items()}


def shared_gradient_stats(
    losses: Mapping[str, Tensor], weights: Mapping[str, float], shared: list[nn.Parameter], primary: str
) -> dict[str, dict[str, float]]:
    """Each task's weighted-loss gradient norm on ``shared`` and its cosine with the primary's (diagnostics).

    Uses ``torch.autograd.grad`` on the step's own graph, so it changes no gradient, weight or statistic.
    """
    grads = {}
    for name, loss in losses.items():
        parts = torch.autograd.grad(weights[name] * loss, shared, retain_graph=True, allow_unused=True)
        grads[name] = torch.cat([torch.zeros(p.numel(), device=p.device) if g is None else g.detach().flatten().float()
                                 for g, p in zip(parts, shared)])
    stats: dict[str, dict[str, float]] = {"shared_grad_norm": {n: float(g.norm()) for n, g in grads.items()}}
    if primary in grads:
        stats["shared_grad_cos_primary"] = {
            n: float(F.cosine_similarity(g, grads[primary], dim=0)) for n, g in grads.items() if n != primary
        }
    return stats


def projection_norms(model: MultiTaskModel) -> dict[str, float]:
    """The norm of each of the model's non-empty ``monitored_parameters``, taken over all of them together."""
    return {name: float(torch.cat([p.detach().flatten() for p in params]).norm())
            for name, params in model.monitored_parameters().items() if params}


class Diagnostics(Callback):
    """``train.diagnose_every``: every that many steps, each task's gradient norm on the shared parameters and its
    cosine with the primary's (epoch means in the record's ``diagnostics``, with the norms of the model's
    ``monitored_parameters`` at the epoch's end); the validation metrics of each of the model's
    ``evaluation_variants`` as well (``val_<name>``)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.stats = EpochStats()

    def on_losses(self, state: TrainState, losses: Mapping[str, Tensor]) -> None:
        shared = state.model.shared_parameters()
        if state.step % self.every == 0 and shared:
            self.stats.add(shared_gradient_stats(losses, state.loss_weights, shared, state.model.primary))

    def on_validated(self, run: Run, record: EpochRecord) -> None:
        record.diagnostics = self.stats.means()
        norms = projection_norms(run.model)
        if norms:
            record.diagnostics["projection_norm"] = norms
        self.stats = EpochStats()
        for name, variant in run.model.evaluation_variants().items():
            record.val_variants[name] = evaluate_model(run.model, run.val_loader, run.state.device, run.state.amp,
                                                   run.progress, desc=f"val ({name.replace('_', ' ')})", dist=run.dist,
                                                   variant=variant)


class TensorBoard(Callback):
    """``train.tensorboard``: every epoch's record and the model's state as scalars in ``RUN_DIR/tensorboard``."""

    def __init__(self, run: Run) -> None:
        self.log = TensorBoardLog(run.out_dir, run.state.epoch + 1)

    def on_epoch_end(self, run: Run, record: EpochRecord) -> None:
        state = run.state
        optimizers = {"network": state.optimizer,
                      **({"architecture": state.arch_optimizer} if state.arch_optimizer is not None else {})}
        self.log.epoch(record, run.model, state.step / max(run.total_steps, 1), optimizers)

    def on_train_end(self, run: Run) -> None:
        self.log.close()


class Checkpoints(Callback):
    """Every epoch: ``last.pt`` (with the training state, what ``--resume`` continues from), and ``best.pt`` when
    the epoch is the best so far. Rank 0 alone writes (every process hands it its generators' states)."""

    def on_epoch_end(self, run: Run, record: EpochRecord) -> None:
        state = run.state
        state_dict = state.state_dict()
        if not run.dist.is_main():
            return
        payload = checkpoint_payload(run.cfg, run.model, state.weighting, state.epoch, record.val,
                                     run.splits.num_classes)
        if state.best_epoch == state.epoch:
            save_checkpoint(run.out_dir / "best.pt", payload)
        save_checkpoint(run.out_dir / "last.pt", {**payload, "state": state_dict})
