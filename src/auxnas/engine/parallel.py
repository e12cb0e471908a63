"""Data-parallel training's one owner (docs/distributed.md): ``DataParallel`` prepares every batch (this process's
part of the global batch, on the device, with what the global batch holds and each task's loss share), runs the
network step's forward (through ``DistributedDataParallel`` for a loss weighting), and averages over the processes
what the steps leave unaveraged. In one process every part of it is the plain single-process code."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import Distributed
from ..methods import MultiTaskModel
from ..tasks import Task, labelled
from ..weighting import Weighting
from ..weighting.base import Reduce
from .losses import TaskLosses, task_losses
from .runtime import to_device


def data_parallel(module: nn.Module, device: torch.device, ignore: Sequence[nn.Parameter] = ()) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` for the current process group: its gradients are averaged
    over the processes in buckets, overlapped with the backward, in the backward that follows each forward through
    the wrapper (a forward through ``module`` itself is not reduced).

    ``ignore``: parameters of ``module`` the wrapper leaves alone (reduced by hand where they are stepped).
    ``find_unused_parameters``: a step's graph can leave parameters without a gradient (the head of a task
    labelled nowhere in the global batch, AdaShare's skipped cells); every process has the same graph
    (the loss shares of ``DataParallel.batch``, identical random draws), so such a parameter keeps ``.grad`` None
    everywhere, as in one process. Buffers are not broadcast at each forward: BatchNorm's statistics are global
    already, and ``fit`` broadcasts the buffers after every epoch. ``module``'s forward should return only what the
    loss is made of (the losses), so that unused parameters are found from them."""
    from torch.nn.parallel import DistributedDataParallel

    skipped = {id(p) for p in ignore}
    names = [name for name, p in module.named_parameters() if id(p) in skipped]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, names)
    on_cuda = device.type == "cuda"
    # torch 2.14 renamed broadcast_buffers (deprecated) to forward_sync_buffers; both sync the buffers once at init
    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                      else {"broadcast_buffers": False})
    return DistributedDataParallel(module, device_ids=[device] if on_cuda else None,
                                   output_device=device if on_cuda else None, find_unused_parameters=True,
                                   **no_buffer_sync)


@dataclass(frozen=True)
class Batch:
    """One step's batch as the steps see it: this process's tensors (``data``, on the device), what the global
    batch holds (its images, and every task's labelled images among them) and, with several processes, every task's
    loss share (``shares``: task -> ``world_size * n_p / n`` for the tasks the global batch has labels of, where
    ``n_p`` and ``n`` are the terms the task's loss averages over here and in the global batch; None in one
    process)."""

    data: dict[str, Any]
    images: int
    labelled: dict[str, int]
    shares: dict[str, float] | None = None

    @property
    def labelled_tasks(self) -> frozenset[str]:
        """The tasks some image of the global batch carries a label of."""
        return frozenset(name for name, n in self.labelled.items() if n)


@dataclass
class DataParallel:
    """How the steps train over ``dist``'s processes; a single process when ``dist`` has one.

    ``wrapper``: with several processes and a loss weighting, ``DistributedDataParallel`` around ``TaskLosses``
    of the model (its architecture weights left out), which the network step forwards through, so that its one
    backward averages the network's gradients in buckets; None otherwise (the plain model; always in one process).
    Checkpoints hold the model's state dict, never the wrapper's.
    """

    dist: Distributed
    device: torch.device
    wrapper: nn.Module | None = None

    @classmethod
    def build(
        cls, dist: Distributed, device: torch.device, model: MultiTaskModel, weighting: Weighting
    ) -> DataParallel:
        """The strategy of ``model`` trained by ``weighting`` on ``device``: a wrapper for a loss weighting over
        several processes (a gradient method averages each task's gradient itself, through ``reduce``)."""
        wrapper = None
        if dist.enabled and not weighting.needs_task_gradients:
            wrapper = data_parallel(TaskLosses(model), device, ignore=model.architecture_parameters())
        return cls(dist, device, wrapper)

    @property
    def reduce(self) -> Reduce | None:
        """What a weighting averages a gradient or loss over the processes with (``Weighting.backward``); None in
        one process."""
        return self.dist.average_ if self.dist.enabled else None

    def batch(self, raw: dict[str, Any], tasks: Mapping[str, Task]) -> Batch:
        """``raw`` (this process's part of a global batch, from the loader) on the device, with the global batch's
        counts and every task's loss share: with several processes the counts and loss terms are summed over them
        (one all-reduce), so that the mean over the processes of their scaled losses is exactly the global batch's
        loss even when they hold different numbers of labels."""
        data = to_device(raw, self.device)
        size = data["image"].shape[0]
        masks = {name: labelled(data, name) for name in tasks}
        counts = {name: size if mask is None else int(mask.sum()) for name, mask in masks.items()}
        if not self.dist.enabled:
            return Batch(data, size, counts)
        terms = [task.loss_normaliser(data[name] if masks[name] is None else data[name][masks[name]])
                 for name, task in tasks.items()]
        local = torch.cat([torch.tensor([size, *counts.values()], dtype=torch.float64, device=self.device),
                           torch.stack([t.to(self.device, torch.float64) for t in terms])])
        total = local.clone()
        self.dist.sum_([total])
        k, (size, *total), own_terms = len(tasks), total.tolist(), local[1 + len(tasks) :].tolist()
        images, total_terms = dict(zip(tasks, total[:k])), dict(zip(tasks, total[k:]))
        shares = {name: self.dist.world_size * own / total_terms[name] if total_terms[name] > 0 else 1.0
                  for name, own in zip(tasks, own_terms) if images[name] > 0}
        return Batch(data, int(size), {name: int(n) for name, n in images.items()}, shares)

    def network_losses(
        self, model: MultiTaskModel, batch: Batch, weights: Mapping[str, float]
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        """The network step's forward: ``task_losses`` of ``batch``, through the wrapper when there is one."""
        if self.wrapper is None:
            return task_losses(model, batch.data, weights, batch.shares)
        return self.wrapper(batch.data, weights, batch.shares)

    def averaged_by_backward(self, model: MultiTaskModel, weighting: Weighting, extra: Tensor | None) -> set[int]:
        """The parameters (``id``) whose gradients the network step's backward left averaged already: the wrapped
        network's, or the shared ones a gradient method combined from averaged per-task gradients (unless the
        step's extra terms added this process's own part to them)."""
        if self.wrapper is not None:
            return {id(p) for p in model.network_parameters()}
        if self.dist.enabled and weighting.reduces_shared_gradients and extra is None:
            return {id(p) for p in model.shared_parameters()}
        return set()

    def average_gradients(self, params: Sequence[nn.Parameter], done: set[int] = frozenset()) -> None:
        """Average over the processes the gradients of ``params`` not in ``done`` (``id``s), once each."""
        self.dist.average_gradients([p for p in params if id(p) not in done])

    def average(self, values: Sequence[Tensor | None]) -> None:
        """Replace every tensor by its mean over the processes, in place (the processes' scaled losses: their mean
        is the global batch's)."""
        self.dist.average_(values)
