"""The training loop: one run built in one place (``build_run``), its epochs (``train_epoch``, ``end_epoch``), and
``fit``, which puts them together with the callbacks, selects the checkpoint on the validation split and reports
the test metrics of the best and the last one."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import ConfigError, ExperimentConfig, config_from_dict, read_config_file, replace
from ..config.validate import validate
from ..data import build_splits, check_labels
from ..distributed import Distributed, session, world_size
from ..methods import build_model, ignored_options, trains_bilevel
from ..storage import load_checkpoint, write_json
from ..tasks import build_tasks, conventions
from .callbacks import Callback, Checkpoints, Diagnostics, EpochStats, TensorBoard
from .evaluation import evaluate_model, is_better
from .loaders import (
    MIN_TRAIN_BATCH,
    epoch_batches,
    epoch_pools,
    evaluation_loader,
    held_out_images,
    meta_batches,
    steps_per_epoch,
)
from .optim import advance_schedule
from .record import EpochRecord
from .run import Run
from .run_dir import RunDirectoryError, check_same_data, record_data, resumable_checkpoint, start_run_dir
from .runtime import resolve_device, seed_everything
from .state import build_train_state, model_weighting
from .steps import architecture_step, meta_step, network_step


@dataclass
class RunResult:
    """What a finished run returns; the same content is in ``metrics.json``."""

    out_dir: Path
    best_epoch: int
    val_best: dict[str, dict[str, float]]
    test_best: dict[str, dict[str, float]]
    test_last: dict[str, dict[str, float]]
    history: list[EpochRecord]
    wall_time_s: float
    #: task -> number of training images that carry its label
    train_labels: dict[str, int] = dataclasses.field(default_factory=dict)
    #: task -> the loss and metric conventions that produced these numbers (``Task.conventions``, docs/tasks.md)
    conventions: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


def build_run(
    cfg: ExperimentConfig, dist: Distributed, device: torch.device, progress: bool,
    resume_from: dict[str, Any] | None = None, start: float | None = None,
) -> Run:
    """Seed, build the data, the model (data-parallel with several processes), the loaders and the training state
    of ``cfg``; with ``resume_from`` (a ``last.pt`` payload) restore the weights and the state it holds. ``start``:
    when the run started (``time.perf_counter()``; default now), what its wall time counts from."""
    start = time.perf_counter() if start is None else start
    seed_everything(cfg.seed)
    with dist.node_first():  # each node's first process generates (and caches) the data, the others then read it
        splits = build_splits(cfg.data, progress=progress)
    tasks = build_tasks(cfg, splits.num_classes)
    check_labels(splits, tasks, cfg.tasks.primary)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    model = dist.prepare_model(build_model(cfg, tasks).to(device, memory_format=memory_format))
    bilevel = trains_bilevel(cfg, model)
    val_loader, test_loader = evaluation_loader(splits.val, cfg, dist), evaluation_loader(splits.test, cfg, dist)
    weighting = model_weighting(cfg, model)
    held_out = held_out_images(splits.train, cfg, weighting.meta_split)
    trained = len(splits.train) - len(held_out)
    total_steps = steps_per_epoch(trained, cfg, bilevel, dist.world_size) * cfg.train.epochs
    if total_steps == 0:
        halved = "halved by the bilevel search, " if bilevel else ""
        raise ValueError(f"{trained} training images ({halved}in batches of {cfg.data.batch_size}) "
                         f"make no batch of at least {MIN_TRAIN_BATCH} images: use more training images")
    state = build_train_state(cfg, model, device, total_steps, dist, weighting)
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        state.load_state_dict({"weighting": resume_from["weighting"], **resume_from["state"]})  # older: in both
    else:
        state.record_links()
    return Run(cfg, Path(cfg.out_dir), dist, splits, val_loader, test_loader, total_steps, state, progress,
               start - state.elapsed_s, held_out)


def train_epoch(run: Run, epoch: int, callbacks: Sequence[Callback] = ()) -> EpochRecord:
    """Train epoch ``epoch``: for every step an architecture step (bilevel search, every ``method.arch_every``
    steps), a meta step (a meta-learned weighting) and a network step. Returns the start of its record: the mean
    training loss (the weighted sum, per image), every task's mean loss (per labelled image) and the weighting's
    statistics."""
    cfg, state, dist, model = run.cfg, run.state, run.dist, run.model
    parallel = state.parallel
    model.train()
    running, seen = 0.0, 0
    task_sums, task_images = dict.fromkeys(model.tasks, 0.0), dict.fromkeys(model.tasks, 0)
    weighting_stats = EpochStats()
    record_every = max(1, run.total_steps // 100)
    train = run.splits.train
    meta = None
    if state.weighting.needs_meta_batch:  # its held-out images, or the network's own of this epoch
        pool = run.held_out or epoch_pools(len(train), cfg, epoch, state.bilevel)[0]
        meta = meta_batches(train, cfg, epoch, pool, dist)
    bar = tqdm(epoch_batches(train, cfg, epoch, state.bilevel, dist, run.held_out),
               total=run.total_steps // cfg.train.epochs, desc=f"epoch {epoch}/{cfg.train.epochs}", leave=False,
               disable=not run.progress)
    for net_batch, arch_batch in bar:
        done = state.step / max(run.total_steps, 1)
        model.set_progress(done)
        if arch_batch is not None and state.step % cfg.method.arch_every == 0:
            architecture_step(state, parallel.batch(arch_batch, model.tasks), done)
        batch = parallel.batch(net_batch, model.tasks)
        if meta is not None and state.weighting.meta_due(state.step):
            weighting_stats.add(meta_step(state, batch, parallel.batch(next(meta), model.tasks)))
        task_values, stats = network_step(state, batch, done, callbacks)
        weighting_stats.add(stats)
        for name, value in task_values.items():
            task_sums[name] += value * batch.labelled[name]
            task_images[name] += batch.labelled[name]
        advance_schedule(state.schedule)
        if state.arch_schedule is not None:
            advance_schedule(state.arch_schedule)
        state.step += 1
        if state.step % record_every == 0:
            state.record_links()
        running += sum(state.loss_weights[name] * value for name, value in task_values.items()) * batch.images
        seen += batch.images
        bar.set_postfix(loss=f"{running / seen:.4f}")
    task_means = {name: total / task_images[name] for name, total in task_sums.items() if task_images[name]}
    return EpochRecord(epoch, running / max(seen, 1), task_means, weighting_stats.means())


def end_epoch(run: Run, record: EpochRecord, callbacks: Sequence[Callback] = ()) -> None:
    """Close the epoch of ``record`` (``train_epoch``'s): the weighting's epoch update, the validation metrics,
    the record kept in the history, the selection on the primary's main metric, the callbacks."""
    state, model, epoch = run.state, run.model, record.epoch
    state.weighting.end_epoch(record.train_task_losses)
    run.dist.broadcast_buffers(model)  # as DistributedDataParallel does; BatchNorm's are equal already
    record.val = evaluate_model(model, run.val_loader, state.device, state.amp, run.progress, desc="val",
                                dist=run.dist)
    if model.record_key is not None:
        record.recorded[model.record_key] = model.recorded_values()
    for callback in callbacks:
        callback.on_validated(run, record)
    state.history.append(record)
    state.epoch = epoch
    state.elapsed_s = time.perf_counter() - run.start
    value = record.val[run.primary.name][run.select_metric]
    if is_better(value, state.best_value, run.primary.higher_is_better[run.select_metric]):
        state.best_value, state.best_epoch, state.val_best = value, epoch, record.val
    for callback in callbacks:
        callback.on_epoch_end(run, record)
    if run.progress:
        tqdm.write(f"epoch {epoch}: train loss {record.train_loss:.4f}  val {run.primary.name}/"
                   f"{run.select_metric} {value:.4f}{'  (best)' if state.best_epoch == epoch else ''}")


def evaluate_and_report(run: Run) -> RunResult:
    """The test metrics of the last weights and of the selected (best) checkpoint, which the model ends with;
    ``metrics.json``. Its wall time counts every session of a resumed run."""
    state, model, dist, primary, metric = run.state, run.model, run.dist, run.primary, run.select_metric
    if state.best_epoch == 0:
        first_bad = next(r.epoch for r in state.history if not math.isfinite(r.val[primary.name][metric]))
        raise FloatingPointError(
            f"{run.out_dir}: the validation metric {primary.name}/{metric} was never finite (not finite from epoch "
            f"{first_bad} on); the run diverged and no checkpoint was selected: lower train.lr or check the data"
        )
    test_last = evaluate_model(model, run.test_loader, state.device, state.amp, run.progress, desc="test (last)",
                               dist=dist)
    if dist.is_main():
        model.load_state_dict(load_checkpoint(run.out_dir / "best.pt", state.device)["model"])
    dist.broadcast_module(model)  # rank 0 read best.pt: the others need not see the run directory
    test_best = evaluate_model(model, run.test_loader, state.device, state.amp, run.progress, desc="test (best)",
                               dist=dist)
    label_counts = run.splits.train_label_counts(list(model.tasks))
    result = RunResult(run.out_dir, state.best_epoch, state.val_best, test_best, test_last, state.history,
                       time.perf_counter() - run.start, label_counts, conventions(model.tasks))
    summary = {
        "name": run.cfg.name, "method": run.cfg.method.name, "primary": primary.name,
        "selection": f"val {primary.name}/{metric}", "conventions": result.conventions,
        "train_images": len(run.splits.train), "train_labels": label_counts, "best_epoch": state.best_epoch,
        "val_best": state.val_best, "test_best": test_best, "test_last": test_last,
        "history": [r.to_dict() for r in state.history],
        "wall_time_s": result.wall_time_s,
    }
    if model.record_key is not None:
        summary[model.record_key] = state.links
    if dist.is_main():
        write_json(run.out_dir / "metrics.json", summary)
    return result


def with_global_batch(cfg: ExperimentConfig, processes: int) -> ExperimentConfig:
    """``cfg`` with ``data.batch_size`` = ``data.batch_size_per_device`` x ``processes`` when the per-device batch is
    set (what the run then records), else ``cfg``."""
    per_device = cfg.data.batch_size_per_device
    if per_device is None:
        return cfg
    return replace(cfg, data={"batch_size": per_device * processes})


def fit(
    cfg: ExperimentConfig, progress: bool = True, overwrite: bool = False, resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Train ``cfg``, select the checkpoint on the validation split, report test metrics of best and last.

    Methods with architecture weights alternate an architecture step and a network step
    (``method.optimization``). Writes ``config.yaml``, ``data.json``, ``best.pt``, ``last.pt`` and ``metrics.json`` into
    ``cfg.out_dir``, which must be empty unless ``overwrite``. With ``resume``, continues the run in
    ``cfg.out_dir`` from its ``last.pt`` (the end of its last finished epoch) and ends with the weights an
    uninterrupted run would have (see ``resume_run``). ``callbacks`` run after the built-in ones (diagnostics,
    TensorBoard, checkpoints). ``cfg`` is first checked against the components it names (``auxnas.config.validate``).

    Started by ``torchrun`` with several processes, every process runs this loop on its part of each global
    batch of ``data.batch_size`` images (``auxnas.distributed``, docs/distributed.md): gradients, losses, label
    counts and metrics are reduced over the processes, so weights, architecture and selection are identical on
    every process; rank 0 alone writes files and shows progress. Every process returns the same ``RunResult``.
    """
    start = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    validate(cfg)
    cfg = with_global_batch(cfg, world_size())
    if cfg.data.batch_size % world_size():
        raise ConfigError(f"data.batch_size: {cfg.data.batch_size} (the global batch) is not divisible by the "
                          f"{world_size()} processes; each loads batch_size / processes images (or set "
                          "data.batch_size_per_device)")
    with session(resolve_device(cfg.train.device)) as (dist, device):
        progress = progress and dist.is_main()
        if resume:
            payload = resumable_checkpoint(out_dir, cfg)  # every process reads the same last.pt
        else:
            payload = None
            dist.on_main(lambda: start_run_dir(out_dir, cfg, overwrite))
        run = build_run(cfg, dist, device, progress, payload, start=start)
        if resume:
            check_same_data(out_dir, run.splits.record())
        else:
            dist.on_main(lambda: record_data(out_dir, run.splits.record()))
        if progress:
            counts = run.splits.train_label_counts(list(run.model.tasks))
            tqdm.write("training images with a label: " + ", ".join(f"{t} {n}/{len(run.splits.train)}"
                                                                    for t, n in counts.items()))
            if ignored := ignored_options(cfg):
                tqdm.write(f"ignored (not options of {cfg.method.name}, docs/methods.md): "
                           + ", ".join(f"{key}={value}" for key, value in ignored.items()))
            if resume:
                tqdm.write(f"resuming {out_dir} after epoch {run.state.epoch}/{cfg.train.epochs} "
                           f"(step {run.state.step})")
        hooks = [*([Diagnostics(cfg.train.diagnose_every)] if cfg.train.diagnose_every else []),
                 *([TensorBoard(run)] if cfg.train.tensorboard and dist.is_main() else []), Checkpoints(), *callbacks]
        for epoch in range(run.state.epoch + 1, cfg.train.epochs + 1):
            end_epoch(run, train_epoch(run, epoch, hooks), hooks)
        for callback in hooks:
            callback.on_train_end(run)
        return evaluate_and_report(run)


def resume_run(run_dir: str | Path, progress: bool = True, callbacks: Sequence[Callback] = ()) -> RunResult:
    """Continue the interrupted (or finished) run in ``run_dir`` from its ``last.pt``, with its own
    ``config.yaml``: optimisers, schedules, regulariser ramp, architecture and weighting state, data order and
    random number generators continue as if the run had never stopped."""
    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise RunDirectoryError(f"{run_dir}: no config.yaml; is it a run directory written by `auxnas train`?")
    try:
        data = read_config_file(config)
        if not isinstance(data, dict):
            raise ConfigError(f"{config}: expected a mapping at the top level, got {type(data).__name__}")
    except ConfigError as err:
        raise ConfigError(f"{err}; it is the run's own config (written by `auxnas train`): restore it, or start the "
                          "run again with --overwrite") from None
    cfg = config_from_dict(data, source=str(config))
    if Path(cfg.out_dir).resolve() != run_dir.resolve():  # the folder was moved: it is still the same run
        cfg = replace(cfg, out_dir=str(run_dir))
    return fit(cfg, progress=progress, resume=True, callbacks=callbacks)
