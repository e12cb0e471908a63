"""The training loop: one loop for every method, model selection on a validation split."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .config import ExperimentConfig, TrainConfig, config_from_dict
from .data import build_splits
from .io import load_checkpoint, resolve_checkpoint, save_checkpoint, write_json, write_text
from .methods import MultiTaskModel, build_model
from .tasks import Task, build_task
from .weighting import build_weighting


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA request without CUDA fails clearly."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available on this machine; use auto or cpu")
    return torch.device(name)


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD (with momentum) over ``params``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
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


def build_tasks(cfg: ExperimentConfig, num_classes: dict[str, int]) -> dict[str, Task]:
    """The run's tasks, primary first."""
    return {name: build_task(name, num_classes) for name in cfg.tasks.all}


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0) -> DataLoader:
    """A loader whose order (and augmentation draws) depend only on ``seed``."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=False,
        generator=torch.Generator().manual_seed(seed), pin_memory=torch.cuda.is_available(),
    )


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when enabled; a no-op on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def task_losses(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float]
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Forward ``batch``: every task's (unweighted, float32) loss, and the model's own extra loss if any."""
    preds = model(batch["image"])
    losses = {name: task.loss(preds[name].float(), batch[name]) for name, task in model.tasks.items()}
    return losses, model.auxiliary_loss(preds, batch, weights)


@torch.no_grad()
def evaluate_model(
    model: MultiTaskModel, loader: DataLoader, device: torch.device, amp: bool = True, progress: bool = False,
    desc: str = "eval",
) -> dict[str, dict[str, float]]:
    """Metrics of every task, pooled over the whole ``loader``."""
    was_training = model.training
    model.eval()
    metrics = {name: task.new_metric() for name, task in model.tasks.items()}
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch = to_device(batch, device)
        with autocast(device, amp):
            preds = model(batch["image"])
        for name, metric in metrics.items():
            metric.update(preds[name].float(), batch[name])
    model.train(was_training)
    return {name: metric.compute() for name, metric in metrics.items()}


def is_better(value: float, best: float | None, higher_is_better: bool) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
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


def checked_losses(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], device: torch.device, amp: bool
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Task losses and the model's extra loss of one batch; fails clearly on a non-finite value."""
    with autocast(device, amp):
        losses, extra = task_losses(model, batch, weights)
    values = [*losses.values(), *([extra] if extra is not None else [])]
    if not all(torch.isfinite(v.detach()) for v in values):
        shown = {k: float(v.detach()) for k, v in losses.items()}
        raise FloatingPointError(f"non-finite training loss: {shown}, model's extra loss {extra}")
    return losses, extra


def combined_loss(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], device: torch.device, amp: bool
) -> Tensor:
    """The static weighted sum of the task losses of one batch, plus the model's extra loss."""
    losses, extra = checked_losses(model, batch, weights, device, amp)
    loss = sum(weights[name] * value for name, value in losses.items())
    return loss if extra is None else loss + extra


def architecture_step(
    model: MultiTaskModel, batch: dict[str, Tensor], weights: dict[str, float], optimizer: torch.optim.Optimizer,
    progress: float, device: torch.device, amp: bool = True,
) -> float:
    """One update of the architecture weights on ``batch`` with the penalty at ``progress`` of training.

    The objective is the static weighted sum of the task losses (the weighting method acts
    on the network step only).

    ``backward(inputs=...)`` accumulates gradients into the architecture weights only:
    autograd skips the network weights' gradient computations entirely.
    """
    params = model.architecture_parameters()
    loss = combined_loss(model, batch, weights, device, amp)
    penalty = model.architecture_penalty(progress)
    if penalty is not None:
        loss = loss + penalty
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    optimizer.step()
    return float(loss.detach())


def steps_per_epoch(num_train: int, cfg: ExperimentConfig, bilevel: bool) -> int:
    """Steps in every epoch (the same for all epochs): one per network batch, of half the data when bilevel."""
    n = num_train // 2 if bilevel else num_train
    steps = math.ceil(n / cfg.data.batch_size)
    return steps if cfg.train.max_steps_per_epoch is None else min(steps, cfg.train.max_steps_per_epoch)


def epoch_batches(
    train: Dataset, cfg: ExperimentConfig, epoch: int, bilevel: bool
) -> Iterator[tuple[dict[str, Tensor], dict[str, Tensor] | None]]:
    """The ``(network batch, architecture batch or None)`` pairs of one epoch (``steps_per_epoch`` of them).

    Bilevel: the training set is reshuffled and split into two disjoint halves every
    epoch; architecture batches come from the first half, network batches from the other.
    """
    seed = cfg.seed * 100_003 + epoch
    bs, workers = cfg.data.batch_size, cfg.data.num_workers
    if not bilevel:
        pairs: Iterator = ((batch, None) for batch in make_loader(train, bs, True, seed, workers))
    else:
        if len(train) < 2:
            raise ValueError("bilevel optimisation needs at least 2 training images")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
        half = len(order) // 2
        arch = make_loader(Subset(train, order[:half]), bs, True, seed + 1, workers)
        net = make_loader(Subset(train, order[half:]), bs, True, seed + 2, workers)
        pairs = zip(net, arch)
    return itertools.islice(pairs, steps_per_epoch(len(train), cfg, bilevel))


def fit(cfg: ExperimentConfig, progress: bool = True) -> RunResult:
    """Train ``cfg``, select the checkpoint on the validation split, report test metrics of best and last.

    Methods with architecture weights alternate an architecture step and a network
    step (``method.optimization``). Writes ``config.yaml``, ``best.pt``, ``last.pt``
    and ``metrics.json`` into ``cfg.out_dir``.
    """
    start = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    seed_everything(cfg.seed)
    device = resolve_device(cfg.train.device)
    splits = build_splits(cfg.data, progress=progress)
    tasks = build_tasks(cfg, splits.num_classes)
    model = build_model(cfg, tasks).to(device)
    primary = tasks[cfg.tasks.primary]
    select_metric = primary.main_metric
    weights = {name: cfg.tasks.loss_weights.get(name, 1.0) for name in tasks}
    arch_params = model.architecture_parameters()
    bilevel = bool(arch_params) and cfg.method.optimization == "bilevel"

    val_loader = make_loader(splits.val, cfg.data.batch_size, False, cfg.seed, cfg.data.num_workers)
    test_loader = make_loader(splits.test, cfg.data.batch_size, False, cfg.seed, cfg.data.num_workers)
    total_steps = steps_per_epoch(len(splits.train), cfg, bilevel) * cfg.train.epochs
    weighting = build_weighting(cfg.weighting.name, list(model.tasks), primary.name, **cfg.weighting.options)
    weighting.to(device)
    optimizer = build_optimizer([*model.network_parameters(), *weighting.parameters()], cfg.train)
    schedule = build_schedule(optimizer, total_steps, cfg.train)
    if arch_params:
        arch_cfg = dataclasses.replace(
            cfg.train, optimizer=cfg.method.arch_optimizer, lr=cfg.method.arch_lr,
            weight_decay=cfg.method.arch_weight_decay,
        )
        arch_optimizer = build_optimizer(arch_params, arch_cfg)
        arch_schedule = build_schedule(arch_optimizer, total_steps, arch_cfg)

    single_level = bool(arch_params) and not bilevel

    def network_step(batch: dict[str, Tensor], done: float) -> dict[str, float]:
        """One network update through the weighting method; single level also updates the architecture."""
        losses, extra = checked_losses(model, batch, weights, device, cfg.train.amp)
        optimizer.zero_grad(set_to_none=True)
        if single_level:
            arch_optimizer.zero_grad(set_to_none=True)
            penalty = model.architecture_penalty(done)
            if penalty is not None:
                penalty.backward()
        if extra is not None:
            extra.backward(retain_graph=True)
        weighting.backward(losses, model.shared_parameters(), weights)
        optimizer.step()
        if single_level:
            arch_optimizer.step()
        return {name: float(value.detach()) for name, value in losses.items()}

    def checkpoint(epoch: int, val: dict[str, dict[str, float]]) -> dict[str, Any]:
        return {
            "config": cfg.to_dict(), "model": model.state_dict(), "epoch": epoch, "val": val,
            "num_classes": splits.num_classes,
        }

    record_every = max(1, total_steps // 100)
    links: dict[str, Any] = {"steps": [], "values": []}
    if hasattr(model, "link_strengths"):
        links["names"] = {k: [list(p) for p in v] for k, v in model.link_names().items()}

    def record_links() -> None:
        if "names" in links:
            links["steps"].append(step)
            links["values"].append(model.link_strengths())

    history: list[dict[str, Any]] = []
    best_value: float | None = None
    best_epoch, val_best = 0, {}
    step = 0
    record_links()
    for epoch in range(1, cfg.train.epochs + 1):
        model.train()
        running, seen = 0.0, 0
        task_sums = dict.fromkeys(model.tasks, 0.0)
        bar = tqdm(
            epoch_batches(splits.train, cfg, epoch, bilevel), total=total_steps // cfg.train.epochs,
            desc=f"epoch {epoch}/{cfg.train.epochs}", leave=False, disable=not progress,
        )
        for net_batch, arch_batch in bar:
            done = step / max(total_steps, 1)
            model.set_progress(done)
            if arch_batch is not None:
                architecture_step(model, to_device(arch_batch, device), weights, arch_optimizer, done, device,
                                  cfg.train.amp)
            batch = to_device(net_batch, device)
            task_values = network_step(batch, done)
            loss = sum(weights[name] * value for name, value in task_values.items())
            for name, value in task_values.items():
                task_sums[name] += value * batch["image"].shape[0]
            schedule.step()
            if arch_params:
                arch_schedule.step()
            step += 1
            if step % record_every == 0:
                record_links()
            running += loss * batch["image"].shape[0]
            seen += batch["image"].shape[0]
            bar.set_postfix(loss=f"{running / seen:.4f}")
        task_means = {name: total / max(seen, 1) for name, total in task_sums.items()}
        weighting.end_epoch(task_means)
        val = evaluate_model(model, val_loader, device, cfg.train.amp, progress, desc="val")
        value = val[primary.name][select_metric]
        record = {"epoch": epoch, "train_loss": running / max(seen, 1), "train_task_losses": task_means, "val": val}
        if "names" in links:
            record["link_strengths"] = model.link_strengths()
        history.append(record)
        if is_better(value, best_value, primary.higher_is_better[select_metric]):
            best_value, best_epoch, val_best = value, epoch, val
            save_checkpoint(out_dir / "best.pt", checkpoint(epoch, val))
        save_checkpoint(out_dir / "last.pt", checkpoint(epoch, val))
        if progress:
            tqdm.write(f"epoch {epoch}: train loss {record['train_loss']:.4f}  val {primary.name}/{select_metric} "
                       f"{value:.4f}{'  (best)' if best_epoch == epoch else ''}")

    test_last = evaluate_model(model, test_loader, device, cfg.train.amp, progress, desc="test (last)")
    model.load_state_dict(load_checkpoint(out_dir / "best.pt", device)["model"])
    test_best = evaluate_model(model, test_loader, device, cfg.train.amp, progress, desc="test (best)")
    result = RunResult(out_dir, best_epoch, val_best, test_best, test_last, history, time.perf_counter() - start)
    summary = {
        "name": cfg.name, "method": cfg.method.name, "primary": primary.name,
        "selection": f"val {primary.name}/{select_metric}", "best_epoch": best_epoch, "val_best": val_best,
        "test_best": test_best, "test_last": test_last, "history": history, "wall_time_s": result.wall_time_s,
    }
    if "names" in links:
        summary["link_strengths"] = links
    write_json(out_dir / "metrics.json", summary)
    return result


def load_trained(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[ExperimentConfig, MultiTaskModel, dict[str, Any]]:
    """Rebuild the train-time model of a checkpoint (or run directory) with its weights."""
    ckpt_path = resolve_checkpoint(path)
    payload = load_checkpoint(ckpt_path)
    cfg = config_from_dict(payload["config"], source=str(ckpt_path))
    tasks = build_tasks(cfg, payload["num_classes"])
    model = build_model(cfg, tasks)
    model.load_state_dict(payload["model"])
    return cfg, model.to(device), payload


def evaluate(
    path: str | Path, split: str = "test", device: str = "auto", progress: bool = True
) -> dict[str, dict[str, float]]:
    """Metrics of a saved run (its best checkpoint) or checkpoint on the ``test`` or ``val`` split."""
    if split not in ("test", "val"):
        raise ValueError(f"split: expected 'test' or 'val', got {split!r}")
    target = resolve_device(device)
    cfg, model, _ = load_trained(path, target)
    splits = build_splits(cfg.data, progress=progress)
    loader = make_loader(getattr(splits, split), cfg.data.batch_size, False, cfg.seed, cfg.data.num_workers)
    return evaluate_model(model, loader, target, cfg.train.amp, progress, desc=split)
