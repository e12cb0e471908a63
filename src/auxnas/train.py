"""The training loop: one loop for every method, model selection on a validation split."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import random
import re
import shutil
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .config import ConfigError, ExperimentConfig, InitConfig, TrainConfig, config_from_dict
from .data import PartiallyLabelled, build_splits
from .distributed import Distributed, SeededSamples, session, world_size
from .io import load_checkpoint, resolve_checkpoint, save_checkpoint, write_json, write_text
from .methods import MultiTaskModel, build_model
from .tasks import Task, build_task, conventions, labelled
from .tensorboard_log import TensorBoardLog
from .weighting import build_weighting


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU. An unknown name, or CUDA (or a GPU index) this machine does
    not have, raises ``ValueError`` saying what to use."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    index = name.removeprefix("cuda:")
    if name != "cpu" and name != "cuda" and not (name.startswith("cuda:") and index.isdigit()):
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine; use auto or cpu")
    if name.startswith("cuda:") and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    return torch.device(name)


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


def build_tasks(cfg: ExperimentConfig, num_classes: dict[str, int]) -> dict[str, Task]:
    """The run's tasks, primary first, with their configured losses and metric conventions."""
    return {name: build_task(name, num_classes, **cfg.tasks.task_options(name)) for name in cfg.tasks.all}


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0) -> DataLoader:
    """A loader whose order (and augmentation draws) depend only on ``seed``."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=False,
        generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available(),
    )


def shuffled_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """Positions ``0 .. n-1`` in the batches that ``make_loader(dataset_of_n, batch_size, True, seed)`` draws (the
    same sampler and generator, so the same order)."""
    loader = DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return [batch.tolist() for batch in loader]


def process_loader(
    dataset: Dataset, batches: Sequence[Sequence[int]], seed: int, dist: Distributed, num_workers: int = 0
) -> DataLoader:
    """A loader of this process's part of each of ``batches`` (indices into ``dataset``) of the global batches.

    One process: the batches as they are. Several: each process loads ``Distributed.shard`` of every batch (a
    batch with fewer images than processes is left out), each image's random draws (augmentation) seeded by its
    position in the epoch (``SeededSamples``), so that they do not depend on which process loads it.
    """
    if dist.enabled:
        flat = [i for batch in batches for i in batch]
        dataset = SeededSamples(dataset, flat, seed)
        ends = list(itertools.accumulate(len(batch) for batch in batches))
        batches = [dist.shard(range(end - len(batch), end)) for batch, end in zip(batches, ends)
                   if len(batch) >= max(dist.world_size, MIN_TRAIN_BATCH)]
    return DataLoader(dataset, batch_sampler=[list(b) for b in batches], num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed + dist.rank), pin_memory=torch.cuda.is_available())


def evaluation_loader(dataset: Dataset, cfg: ExperimentConfig, dist: Distributed) -> DataLoader:
    """The loader of ``dataset`` for evaluation: all of it in order, or with several processes this process's
    contiguous part (no image twice, none left out), in batches of its share of ``data.batch_size``."""
    if not dist.enabled:
        return make_loader(dataset, cfg.data.batch_size, False, cfg.seed, cfg.data.num_workers)
    own, size = dist.shard(range(len(dataset))), cfg.data.batch_size // dist.world_size
    return DataLoader(dataset, batch_sampler=[own[i : i + size] for i in range(0, len(own), size)],
                      num_workers=cfg.data.num_workers, generator=torch.Generator().manual_seed(cfg.seed),
                      pin_memory=torch.cuda.is_available())  # its own generator: the global one is the model's


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when enabled; a no-op on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move a batch (tensors, and the nested ``labelled`` masks) to ``device``."""
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True)
            for k, v in batch.items()}


def task_losses(
    model: MultiTaskModel, batch: dict[str, Any], weights: dict[str, float]
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Forward ``batch``: the (unweighted, float32) loss of every task some image of the batch has a label for,
    and the model's own extra loss if any. A task without any label in the batch is absent from the result."""
    preds = model(batch["image"])
    losses = {name: task.batch_loss(preds[name].float(), batch) for name, task in model.tasks.items()}
    return {k: v for k, v in losses.items() if v is not None}, model.auxiliary_loss(preds, batch, weights)


@torch.no_grad()
def evaluate_model(
    model: MultiTaskModel, loader: DataLoader, device: torch.device, amp: bool = True, progress: bool = False,
    desc: str = "eval", dist: Distributed | None = None, keep_a2p: bool = False,
) -> dict[str, dict[str, float]]:
    """Metrics of every task, pooled over the images of the whole ``loader`` that carry its label.

    ``keep_a2p``: evaluate the train-time network of a model with a2p links (``LinkedBranches``) with them kept,
    instead of the deployed network that cuts them.

    Each task's metrics include ``num_images``, how many images they cover. With several processes (``dist``),
    each evaluates its part of the set (``evaluation_loader``) and the metrics pool every process's images: rank 0
    gathers the accumulators, merges them (``Metric.merge``) and hands the metrics to every process.
    """
    was_training = model.training
    model.eval()
    metrics = {name: task.new_metric() for name, task in model.tasks.items()}
    counts = dict.fromkeys(model.tasks, 0)
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch = to_device(batch, device)
        with autocast(device, amp):
            preds = model(batch["image"], cut_a2p=False) if keep_a2p else model(batch["image"])
        for name, task in model.tasks.items():
            counts[name] += task.update_metric(metrics[name], preds[name].float(), batch)
    model.train(was_training)
    if dist is None or not dist.enabled:
        return {name: {**metric.compute(), "num_images": counts[name]} for name, metric in metrics.items()}
    parts, result = dist.gather_on_main((metrics, counts)), None
    if parts is not None:
        for other_metrics, other_counts in parts[1:]:
            for name in metrics:
                metrics[name].merge(other_metrics[name])
                counts[name] += other_counts[name]
        result = {name: {**metric.compute(), "num_images": counts[name]} for name, metric in metrics.items()}
    return dist.broadcast(result)


def is_better(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether ``value`` improves on ``best``; a non-finite value never does."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


@dataclass
class RunResult:
    """What a finished run returns; the same content is in ``metrics.json``."""

    out_dir: Path
    best_epoch: int
    val_best: dict[str, dict[str, float]]
    test_best: dict[str, dict[str, float]]
    test_last: dict[str, dict[str, float]]
    history: list[dict[str, Any]]
    wall_time_s: float
    #: task -> number of training images that carry its label
    train_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    #: task -> the loss and metric conventions that produced these numbers (``Task.conventions``, docs/tasks.md)
    conventions: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def checked_losses(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], device: torch.device, amp: bool
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Task losses (of the tasks labelled in the batch) and the model's extra loss of one batch; fails clearly
    on a non-finite value."""
    with autocast(device, amp):
        losses, extra = task_losses(model, batch, weights)
    values = [*losses.values(), *([extra] if extra is not None else [])]
    if not all(torch.isfinite(v.detach()) for v in values):
        shown = {k: float(v.detach()) for k, v in losses.items()}
        raise FloatingPointError(f"non-finite training loss: {shown}, model's extra loss {extra}")
    return losses, extra


def combined_loss(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], device: torch.device, amp: bool
) -> Tensor | None:
    """The static weighted sum of the task losses of one batch, plus the model's extra loss (None: no label)."""
    losses, extra = checked_losses(model, batch, weights, device, amp)
    terms = [weights[name] * value for name, value in losses.items()] + ([extra] if extra is not None else [])
    return sum(terms) if terms else None


def architecture_step(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], optimizer: torch.optim.Optimizer,
    progress: float, device: torch.device, amp: bool = True,
    average_gradients: Callable[[list[nn.Parameter]], None] | None = None,
) -> float | None:
    """One update of the architecture weights on ``batch`` with the penalty at ``progress`` of training; returns
    its loss, or None (no update) when the batch has no label and there is no penalty.

    The objective is the static weighted sum of the task losses (the weighting method acts
    on the network step only).

    ``backward(inputs=...)`` accumulates gradients into the architecture weights only:
    autograd skips the network weights' gradient computations entirely. Data-parallel training passes
    ``average_gradients`` (``Distributed.average_gradients``): the gradients are averaged over the processes
    before the update, so the architecture weights stay identical on every process.
    """
    params = model.architecture_parameters()
    terms = [combined_loss(model, batch, weights, device, amp), model.architecture_penalty(progress)]
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    loss = sum(terms)
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    if average_gradients is not None:
        average_gradients(params)
    optimizer.step()
    return float(loss.detach())


#: the fewest images a training batch may have: BatchNorm cannot train on one
MIN_TRAIN_BATCH = 2


def steps_per_epoch(num_train: int, cfg: ExperimentConfig, bilevel: bool, world_size: int = 1) -> int:
    """Steps in every epoch (the same for all epochs): one per network batch, of half the data when bilevel.

    A last batch with fewer than ``MIN_TRAIN_BATCH`` images, or than ``world_size`` processes, is left out.
    """
    n = num_train // 2 if bilevel else num_train
    steps = n // cfg.data.batch_size + (n % cfg.data.batch_size >= max(world_size, MIN_TRAIN_BATCH))
    return steps if cfg.train.max_steps_per_epoch is None else min(steps, cfg.train.max_steps_per_epoch)


def oversampled(indices: list[int], has_label: np.ndarray, share: float, generator: torch.Generator) -> list[int]:
    """``len(indices)`` draws from ``indices`` in which the images with the primary label make up ``share``.

    Those images are cycled (each drawn at least once) and the others fill the rest, drawn without
    replacement; the result is shuffled. With at least ``share`` of them labelled already, every image once.
    """
    labelled = [i for i in indices if has_label[i]]
    unlabelled = [i for i in indices if not has_label[i]]
    wanted = round(share * len(indices))
    if not labelled or wanted <= len(labelled):
        draws = indices
    else:
        cycled = [labelled[k] for k in torch.randperm(len(labelled), generator=generator).tolist()]
        rest = [unlabelled[k] for k in torch.randperm(len(unlabelled), generator=generator).tolist()]
        draws = [cycled[k % len(cycled)] for k in range(wanted)] + rest[: len(indices) - wanted]
    return [draws[k] for k in torch.randperm(len(draws), generator=generator).tolist()]


def epoch_batches(
    train: Dataset, cfg: ExperimentConfig, epoch: int, bilevel: bool, dist: Distributed | None = None
) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor] | None]]:
    """The ``(network batch, architecture batch or None)`` pairs of one epoch (``steps_per_epoch`` of them).

    Bilevel: the training set is reshuffled and split into two disjoint halves every
    epoch; architecture batches come from the first half, network batches from the other.
    With ``data.oversample_primary`` each half's draws are ``oversampled``.

    ``data.batch_size`` is the global batch: with several processes (``dist``) every process draws the same
    global batches of both halves (same seeds) and loads its part of each (``process_loader``).
    """
    dist = dist or Distributed()
    seed = cfg.seed * 100_003 + epoch
    bs, workers = cfg.data.batch_size, cfg.data.num_workers
    generator = torch.Generator().manual_seed(seed)
    primary_mask = train.labelled.get(cfg.tasks.primary) if isinstance(train, PartiallyLabelled) else None
    share = cfg.data.oversample_primary if primary_mask is not None else None

    def loader(indices: list[int] | None, loader_seed: int) -> DataLoader:
        indices = list(range(len(train))) if indices is None else indices
        if share is not None:
            draws = oversampled(indices, primary_mask, share, generator)
            batches = [draws[i : i + bs] for i in range(0, len(draws), bs)]
        else:
            batches = [[indices[k] for k in batch] for batch in shuffled_batches(len(indices), bs, loader_seed)]
        return process_loader(train, batches, loader_seed, dist, workers)

    if not bilevel:
        pairs: Iterator = ((batch, None) for batch in loader(None, seed))
    else:
        if len(train) < 2:
            raise ValueError("bilevel optimisation needs at least 2 training images")
        order = torch.randperm(len(train), generator=generator).tolist()
        half = len(order) // 2
        pairs = zip(loader(order[half:], seed + 2), loader(order[:half], seed + 1))
    return itertools.islice(pairs, steps_per_epoch(len(train), cfg, bilevel, dist.world_size))


@dataclass
class BatchCounts:
    """What one step's global batch holds: its images, and every task's labelled images among them."""

    images: int
    labelled: dict[str, int]


def share_batch(batch: dict[str, Any], tasks: Mapping[str, Task], dist: Distributed) -> BatchCounts:
    """Count the images and labels of the global batch that ``batch`` (this process's part of it) belongs to.

    With several processes the counts are summed over them (one all-reduce), and ``batch["share"]`` records, for
    every task the global batch has labels for, this process's loss factor ``world_size * n_p / n``: ``n_p`` and
    ``n`` are the terms its loss averages over here and in the whole global batch (``Task.loss_normaliser``:
    labelled images, or valid pixels), so the mean over the processes of their scaled losses is exactly the global
    batch's loss even when they hold different numbers of labels, and a process without a label of a task
    labelled elsewhere still back-propagates a (zero) loss of it (``Task.batch_loss``).
    """
    size = batch["image"].shape[0]
    masks = {name: labelled(batch, name) for name in tasks}
    counts = {name: size if mask is None else int(mask.sum()) for name, mask in masks.items()}
    if not dist.enabled:
        return BatchCounts(size, counts)
    device = batch["image"].device
    terms = [task.loss_normaliser(batch[name] if masks[name] is None else batch[name][masks[name]])
             for name, task in tasks.items()]
    local = torch.cat([torch.tensor([size, *counts.values()], dtype=torch.float64, device=device),
                       torch.stack([t.to(device, torch.float64) for t in terms])])
    total = local.clone()
    dist.sum_([total])
    k, (size, *total), own_terms = len(tasks), total.tolist(), local[1 + len(tasks) :].tolist()
    images, total_terms = dict(zip(tasks, total[:k])), dict(zip(tasks, total[k:]))
    batch["share"] = {
        name: dist.world_size * own / total_terms[name] if total_terms[name] > 0 else 1.0
        for name, own in zip(tasks, own_terms) if images[name] > 0
    }
    return BatchCounts(int(size), {name: int(n) for name, n in images.items()})


#: the files a run writes into its directory
RUN_FILES = ("config.yaml", "best.pt", "last.pt", "metrics.json", "tensorboard")


class RunDirectoryError(ValueError):
    """The run directory cannot be used (it already holds files and overwriting was not asked for)."""


def prepare_run_dir(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite``, which removes an earlier run's files.

    A run must never pick up a checkpoint it did not write (a diverged run would report the older model).
    """
    from .io import unwritable

    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirectoryError(f"out_dir {out_dir}: exists and is a file, not a folder; choose another out_dir")
    try:
        existing = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
        if existing and not overwrite:
            shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
            raise RunDirectoryError(f"out_dir {out_dir}: not empty ({shown}); choose another out_dir or overwrite its "
                                    "run files (auxnas train --overwrite, fit(..., overwrite=True))")
        for name in RUN_FILES if existing else ():
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
            (out_dir / name).unlink(missing_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file on the way, no permission, a read-only file system
        raise RunDirectoryError(f"out_dir {out_dir}: cannot be written ({unwritable(out_dir, err)}); choose another "
                                "out_dir") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"out_dir {out_dir}: cannot be written (no permission); choose another out_dir")


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


def rng_state() -> dict[str, Any]:
    """The random number generators' states (Python, NumPy, torch CPU and CUDA), in weights-only-loadable types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(), "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                  "cached": cached},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))


@dataclass
class TrainState:
    """Everything the loop changes as it trains: what ``last.pt`` holds and ``--resume`` restores.

    The model, its optimisers and schedules, the weighting method's state, the progress (step, finished
    epochs; the regulariser ramp and data order follow from them), the selection so far, the history, and
    the random number generators.
    """

    model: MultiTaskModel
    weighting: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    arch_optimizer: torch.optim.Optimizer | None = None
    arch_schedule: torch.optim.lr_scheduler.LRScheduler | None = None
    #: network updates made, and epochs finished
    step: int = 0
    epoch: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    val_best: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: link strengths recorded along training (``steps``, ``values``, ``names``)
    links: dict[str, Any] = dataclasses.field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """Plain containers of tensors and numbers (a checkpoint loadable with ``weights_only=True``)."""
        optional = {k: getattr(self, k).state_dict() for k in ("arch_optimizer", "arch_schedule")
                    if getattr(self, k) is not None}
        return {
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), **optional,
            "weighting": self.weighting.state_dict(), "step": self.step, "epoch": self.epoch,
            "best_value": self.best_value, "best_epoch": self.best_epoch, "val_best": self.val_best,
            "history": self.history, "links": self.links, "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s content (the model's weights are loaded separately)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.arch_optimizer is not None:
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
            self.arch_schedule.load_state_dict(state["arch_schedule"])
        self.weighting.load_state_dict(state["weighting"])
        for key in ("step", "epoch", "best_value", "best_epoch", "val_best", "history", "links"):
            setattr(self, key, state[key])
        set_rng_state(state["rng"])

    def record_links(self) -> None:
        """Append the model's current link strengths (models with links only)."""
        if "names" in self.links:
            self.links["steps"].append(self.step)
            self.links["values"].append(self.model.link_strengths())


def start_run_dir(out_dir: Path, cfg: ExperimentConfig, overwrite: bool) -> None:
    """``prepare_run_dir`` and write the resolved ``config.yaml``."""
    prepare_run_dir(out_dir, overwrite)
    write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _resumable(out_dir: Path, cfg: ExperimentConfig) -> dict[str, Any]:
    """The ``last.pt`` payload to resume ``cfg`` from in ``out_dir``; fails unless the run's config and
    checkpoint belong together and the checkpoint holds the training state."""
    last = out_dir / "last.pt"
    if not last.is_file():
        raise RunDirectoryError(f"{out_dir}: no last.pt to resume from (the run stopped before its first epoch "
                                "ended): start it again with --overwrite")
    payload = load_checkpoint(last)
    if {**payload.get("config", {}), "out_dir": None} != {**cfg.to_dict(), "out_dir": None}:  # may have moved
        raise RunDirectoryError(f"{last}: was written with another config than {out_dir / 'config.yaml'}; the "
                                "folder mixes two runs: start again with --overwrite")
    if "state" not in payload:
        raise RunDirectoryError(f"{last}: holds no training state (a checkpoint of an older auxnas or a finished "
                                "run's export); start again with --overwrite")
    return payload


def fit(cfg: ExperimentConfig, progress: bool = True, overwrite: bool = False, resume: bool = False) -> RunResult:
    """Train ``cfg``, select the checkpoint on the validation split, report test metrics of best and last.

    Methods with architecture weights alternate an architecture step and a network
    step (``method.optimization``). Writes ``config.yaml``, ``best.pt``, ``last.pt``
    and ``metrics.json`` into ``cfg.out_dir``, which must be empty unless ``overwrite``.
    With ``resume``, continues the run in ``cfg.out_dir`` from its ``last.pt`` (the end of its
    last finished epoch) and ends with the weights an uninterrupted run would have (see ``resume_run``).

    Started by ``torchrun`` with several processes, every process runs this loop on its part of each global
    batch of ``data.batch_size`` images (``auxnas.distributed``, docs/distributed.md): gradients, losses, label
    counts and metrics are reduced over the processes, so weights, architecture and selection are identical on
    every process; rank 0 alone writes files and shows progress. Every process returns the same ``RunResult``.
    """
    start = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    if cfg.data.batch_size % world_size():
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} (the global batch) is not divisible by the "
                          f"{world_size()} processes; each loads batch_size / processes images")
    with session(resolve_device(cfg.train.device)) as (dist, device):
        progress = progress and dist.is_main()
        if resume:
            payload = _resumable(out_dir, cfg)  # every process reads the same last.pt
        else:
            dist.on_main(lambda: start_run_dir(out_dir, cfg, overwrite))
        seed_everything(cfg.seed)
        with dist.main_first():  # rank 0 generates (and caches) the data, the others then read it
            splits = build_splits(cfg.data, progress=progress)
        tasks = build_tasks(cfg, splits.num_classes)
        model = dist.prepare_model(build_model(cfg, tasks).to(device))
        primary = tasks[cfg.tasks.primary]
        select_metric = primary.main_metric
        weights = {name: cfg.tasks.loss_weights.get(name, 1.0) for name in tasks}
        label_counts = splits.train_label_counts(list(tasks))
        if progress:
            tqdm.write("training images with a label: " + ", ".join(f"{t} {n}/{len(splits.train)}"
                                                                    for t, n in label_counts.items()))
        arch_params = model.architecture_parameters()
        bilevel = bool(arch_params) and cfg.method.optimization == "bilevel"
        single_level = bool(arch_params) and not bilevel

        val_loader = evaluation_loader(splits.val, cfg, dist)
        test_loader = evaluation_loader(splits.test, cfg, dist)
        total_steps = steps_per_epoch(len(splits.train), cfg, bilevel, dist.world_size) * cfg.train.epochs
        if total_steps == 0:
            halved = "halved by the bilevel search, " if bilevel else ""
            raise ValueError(f"{len(splits.train)} training images ({halved}in batches of {cfg.data.batch_size}) "
                             f"make no batch of at least {MIN_TRAIN_BATCH} images: use more training images")
        weighting = build_weighting(cfg.weighting.name, list(model.tasks), primary.name, **cfg.weighting.options)
        weighting.to(device)
        optimizer = build_optimizer([{"params": model.network_parameters()}, *weighting.optimizer_groups()],
                                    cfg.train)
        state = TrainState(model, weighting, optimizer, build_schedule(optimizer, total_steps, cfg.train))
        if arch_params:
            state.arch_optimizer, state.arch_schedule = build_architecture_optimizer(arch_params, cfg, total_steps)
        if hasattr(model, "link_strengths"):
            state.links = {"steps": [], "values": [], "names": {k: [list(p) for p in v]
                                                               for k, v in model.link_names().items()}}
        if resume:
            model.load_state_dict(payload["model"])
            state.load_state_dict(payload["state"])
            if progress:
                tqdm.write(f"resuming {out_dir} after epoch {state.epoch}/{cfg.train.epochs} (step {state.step})")
        else:
            state.record_links()
        # what the network step updates; with several processes their gradients are averaged before each update
        stepped = [p for group in optimizer.param_groups for p in group["params"]]
        if single_level:
            stepped += arch_params
        # several processes: the weighting method averages per-task gradients over them before combining them
        data_parallel = {"reduce": dist.average_} if dist.enabled else {}

        def network_step(
            batch: dict[str, Tensor], done: float
        ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
            """One network update through the weighting method; single level also updates the architecture.

            Returns every task's loss (the global batch's) and what the weighting method reports (its effective
            weights, or gradient norms and cosines with the primary).
            """
            losses, extra = checked_losses(model, batch, weights, device, cfg.train.amp)
            if not losses and extra is None:  # no image of the batch carries any label: nothing to learn from
                return {}, {}
            if diagnose_every and state.step % diagnose_every == 0 and model.shared_parameters():
                diagnostics.add(shared_gradient_stats(losses, weights, model.shared_parameters(), primary.name))
            optimizer.zero_grad(set_to_none=True)
            if single_level:
                state.arch_optimizer.zero_grad(set_to_none=True)
                penalty = model.architecture_penalty(done)
                if penalty is not None:
                    penalty.backward()
            if extra is not None:
                extra.backward(retain_graph=True)
            stats = weighting.backward(losses, model.shared_parameters(), weights, model.last_shared_layer(),
                                       **data_parallel)
            dist.average_gradients(stepped)
            optimizer.step()
            if single_level:
                state.arch_optimizer.step()
            values = torch.stack([value.detach().float() for value in losses.values()]) if losses else None
            dist.average_([values])  # the processes' scaled losses: their mean is the global batch's loss
            return dict(zip(losses, [] if values is None else values.tolist())), stats

        def checkpoint(val: dict[str, dict[str, float]], with_state: bool) -> dict[str, Any]:
            payload = {
                "config": cfg.to_dict(), "model": model.state_dict(), "epoch": state.epoch, "val": val,
                "num_classes": splits.num_classes, "weighting": weighting.state_dict(),
            }
            return {**payload, "state": state.state_dict()} if with_state else payload

        record_every = max(1, total_steps // 100)
        diagnose_every = cfg.train.diagnose_every
        keeps_a2p = bool(getattr(model, "a2p", None))
        log = TensorBoardLog(out_dir, state.epoch + 1) if cfg.train.tensorboard and dist.is_main() else None
        optimizers = {"network": optimizer, **({"architecture": state.arch_optimizer} if arch_params else {})}
        for epoch in range(state.epoch + 1, cfg.train.epochs + 1):
            model.train()
            running, seen = 0.0, 0
            task_sums, task_images = dict.fromkeys(model.tasks, 0.0), dict.fromkeys(model.tasks, 0)
            weighting_stats, diagnostics = EpochStats(), EpochStats()
            bar = tqdm(
                epoch_batches(splits.train, cfg, epoch, bilevel, dist), total=total_steps // cfg.train.epochs,
                desc=f"epoch {epoch}/{cfg.train.epochs}", leave=False, disable=not progress,
            )
            for net_batch, arch_batch in bar:
                done = state.step / max(total_steps, 1)
                model.set_progress(done)
                if arch_batch is not None and state.step % cfg.method.arch_every == 0:
                    arch_batch = to_device(arch_batch, device)
                    share_batch(arch_batch, model.tasks, dist)
                    architecture_step(model, arch_batch, weights, state.arch_optimizer, done, device, cfg.train.amp,
                                      dist.average_gradients)
                batch = to_device(net_batch, device)
                counts = share_batch(batch, model.tasks, dist)  # of the global batch
                task_values, stats = network_step(batch, done)
                weighting_stats.add(stats)
                loss = sum(weights[name] * value for name, value in task_values.items())
                for name, value in task_values.items():
                    task_sums[name] += value * counts.labelled[name]
                    task_images[name] += counts.labelled[name]
                advance_schedule(state.schedule)
                if arch_params:
                    advance_schedule(state.arch_schedule)
                state.step += 1
                if state.step % record_every == 0:
                    state.record_links()
                running += loss * counts.images
                seen += counts.images
                bar.set_postfix(loss=f"{running / seen:.4f}")
            task_means = {name: total / task_images[name] for name, total in task_sums.items() if task_images[name]}
            weighting.end_epoch(task_means)
            dist.broadcast_buffers(model)  # as DistributedDataParallel does; BatchNorm's are equal already
            val = evaluate_model(model, val_loader, device, cfg.train.amp, progress, desc="val", dist=dist)
            value = val[primary.name][select_metric]
            record = {
                "epoch": epoch, "train_loss": running / max(seen, 1), "train_task_losses": task_means,
                "weighting": weighting_stats.means(), "val": val,
            }
            if "names" in state.links:
                record["link_strengths"] = model.link_strengths()
            if diagnose_every:
                record["diagnostics"] = diagnostics.means()
                if keeps_a2p:
                    record["val_a2p_kept"] = evaluate_model(model, val_loader, device, cfg.train.amp, progress,
                                                            desc="val (a2p kept)", dist=dist, keep_a2p=True)
            state.history.append(record)
            state.epoch = epoch
            if log is not None:
                log.epoch(epoch, record, model, state.step / max(total_steps, 1), optimizers)
            if is_better(value, state.best_value, primary.higher_is_better[select_metric]):
                state.best_value, state.best_epoch, state.val_best = value, epoch, val
                if dist.is_main():
                    save_checkpoint(out_dir / "best.pt", checkpoint(val, with_state=False))
            if dist.is_main():
                save_checkpoint(out_dir / "last.pt", checkpoint(val, with_state=True))
            if progress:
                tqdm.write(f"epoch {epoch}: train loss {record['train_loss']:.4f}  val {primary.name}/"
                           f"{select_metric} {value:.4f}{'  (best)' if state.best_epoch == epoch else ''}")

        if log is not None:
            log.close()
        history, best_epoch = state.history, state.best_epoch
        if best_epoch == 0:
            first_bad = next(r["epoch"] for r in history if not math.isfinite(r["val"][primary.name][select_metric]))
            raise FloatingPointError(
                f"{out_dir}: the validation metric {primary.name}/{select_metric} was never finite (not finite from "
                f"epoch {first_bad} on); the run diverged and no checkpoint was selected: lower train.lr or check "
                "the data"
            )
        test_last = evaluate_model(model, test_loader, device, cfg.train.amp, progress, desc="test (last)", dist=dist)
        if dist.is_main():
            model.load_state_dict(load_checkpoint(out_dir / "best.pt", device)["model"])
        dist.broadcast_module(model)  # rank 0 read best.pt: the others need not see the run directory
        test_best = evaluate_model(model, test_loader, device, cfg.train.amp, progress, desc="test (best)", dist=dist)
        result = RunResult(out_dir, best_epoch, state.val_best, test_best, test_last, history,
                           time.perf_counter() - start, label_counts, conventions(tasks))
        summary = {
            "name": cfg.name, "method": cfg.method.name, "primary": primary.name,
            "selection": f"val {primary.name}/{select_metric}", "conventions": result.conventions,
            "train_images": len(splits.train),
            "train_labels": label_counts, "best_epoch": best_epoch, "val_best": state.val_best,
            "test_best": test_best, "test_last": test_last, "history": history, "wall_time_s": result.wall_time_s,
        }
        if "names" in state.links:
            summary["link_strengths"] = state.links
        if dist.is_main():
            write_json(out_dir / "metrics.json", summary)
        return result


def resume_run(run_dir: str | Path, progress: bool = True) -> RunResult:
    """Continue the interrupted (or finished) run in ``run_dir`` from its ``last.pt``, with its own
    ``config.yaml``: optimisers, schedules, regulariser ramp, architecture and weighting state, data order and
    random number generators continue as if the run had never stopped."""
    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise RunDirectoryError(f"{run_dir}: no config.yaml; is it a run directory written by `auxnas train`?")
    cfg = config_from_dict(yaml.safe_load(config.read_text()), source=str(config))
    if Path(cfg.out_dir).resolve() != run_dir.resolve():  # the folder was moved: it is still the same run
        cfg = dataclasses.replace(cfg, out_dir=str(run_dir))
    return fit(cfg, progress=progress, resume=True)


def load_trained(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[ExperimentConfig, MultiTaskModel, dict[str, Any]]:
    """Rebuild the train-time model of a checkpoint (or run directory) with its weights.

    A file that is not a checkpoint of its own config (keys missing, weights of another model) is a one-line
    ``CheckpointError`` naming it.
    """
    from .io import TRAINED_KEYS, CheckpointError, weights_mismatch

    ckpt_path = resolve_checkpoint(path)
    payload = load_checkpoint(ckpt_path, keys=TRAINED_KEYS)
    cfg = config_from_dict(_without_unused_aux(payload["config"]), source=str(ckpt_path))
    num_classes, weights = payload["num_classes"], payload["model"]
    if not isinstance(num_classes, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0 for k, v in num_classes.items()
    ):
        raise CheckpointError(f"{ckpt_path}: num_classes: expected a mapping of task to class count, got "
                              f"{num_classes!r:.100}")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{ckpt_path}: model: expected the model's weights (a state dict), got "
                              f"a {type(weights).__name__}")
    try:
        tasks = build_tasks(cfg, num_classes)
    except ValueError as err:  # a class count missing for one of its tasks
        raise CheckpointError(f"{ckpt_path}: num_classes: {err}") from None
    # the checkpoint holds every weight: no backbone weights or single-task runs to read (they may be gone)
    weightless = dataclasses.replace(cfg, init=InitConfig(), model=dataclasses.replace(cfg.model, pretrained=None))
    model = build_model(weightless, tasks)
    mismatch = weights_mismatch(model.state_dict(), weights)
    if mismatch:
        raise CheckpointError(f"{ckpt_path}: its weights do not fit its own config ({cfg.method.name} on "
                              f"{cfg.model.backbone}, tasks {', '.join(cfg.tasks.all)}): {mismatch}")
    model.load_state_dict(weights)
    return cfg, model.to(device), payload


def _without_unused_aux(config: Any) -> Any:
    """A checkpoint config of a single-task run that lists auxiliary tasks (allowed before they were refused; the
    run never used them), without them."""
    method = config.get("method", {}) if isinstance(config, dict) else None
    tasks = config.get("tasks", {}) if isinstance(config, dict) else None
    if isinstance(method, dict) and isinstance(tasks, dict) and method.get("name", "single") == "single" and \
            tasks.get("aux"):
        return {**config, "tasks": {**tasks, "aux": []}}
    return config


def evaluate(
    path: str | Path, split: str = "test", device: str = "auto", progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Metrics of a saved run (its best checkpoint) or checkpoint on the ``test`` or ``val`` split.

    Task -> its metrics, and under ``"conventions"`` task -> the loss and metric conventions the run was
    configured with (``Task.conventions``), which produced these numbers.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split: expected 'test' or 'val', got {split!r}")
    target = resolve_device(device)
    cfg, model, _ = load_trained(path, target)
    splits = build_splits(cfg.data, progress=progress)
    loader = make_loader(getattr(splits, split), cfg.data.batch_size, False, cfg.seed, cfg.data.num_workers)
    metrics = evaluate_model(model, loader, target, cfg.train.amp, progress, desc=split)
    return {**metrics, "conventions": conventions(model.tasks)}
