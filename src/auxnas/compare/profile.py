"""What a row costs: to train, the time of one training iteration and its peak memory, measured on the run's own
config (model, data, device, precision) in a fresh process per row, so that one row's allocations do not hide
another's (the steps timed are ``fit``'s own, ``auxnas.engine.steps``); at inference, the latency of its exported
network, timed side by side with single-task's export."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import load_config
from ..data import build_splits
from ..engine.loaders import make_loader
from ..engine.runtime import resolve_device, seed_everything, to_device
from ..engine.state import build_train_state
from ..engine.steps import iteration
from ..export import load_exported
from ..measure import (
    in_fresh_process,
    memory_mark,
    peak_mib_since,
    start_method,
    time_interleaved,
    time_ratio,
    warm_up_kernels,
)
from ..methods import build_model
from ..tasks import build_tasks

#: iterations before the measured ones (kernel selection, allocator warm-up) and measured ones
WARMUP_ITERATIONS, TIMED_ITERATIONS = 2, 5
#: untimed and timed rounds of the exported networks' forward (each round: one forward of every network)
LATENCY_WARMUP, LATENCY_ROUNDS = 3, 20


def _iteration_profile(config: str, overrides: list[str]) -> dict[str, float]:
    """Median milliseconds of a training iteration (``auxnas.engine.steps.iteration``, as the cost benchmark takes
    it) on the first training batch, and the MiB of peak memory the model and its iterations add. Meant for a
    fresh process (``in_fresh_process``): CPU memory is the growth of the peak resident set size."""
    cfg = load_config(config, overrides)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.seed)
    splits = build_splits(cfg.data, progress=False)
    raw = to_device(next(iter(make_loader(splits.train, cfg.data.batch_size, False, cfg.seed))), device)
    warm_up_kernels(device)
    mark = memory_mark(device)
    model = build_model(cfg, build_tasks(cfg, splits.num_classes)).to(device).train()
    state = build_train_state(cfg, model, device, total_steps=WARMUP_ITERATIONS + TIMED_ITERATIONS)
    batch = state.parallel.batch(raw, model.tasks)  # as fit prepares every batch
    times = []
    for k in range(WARMUP_ITERATIONS + TIMED_ITERATIONS):
        start = time.perf_counter()
        iteration(state, batch, 0.5)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k >= WARMUP_ITERATIONS:
            times.append(1000 * (time.perf_counter() - start))
    return {"iteration_ms": statistics.median(times), "peak_memory_mib": peak_mib_since(device, mark)}


def profile_row(config: str, overrides: list[str]) -> dict[str, Any]:
    """``_iteration_profile`` of one row's run config, in a fresh process; with how it was measured."""
    cfg = load_config(config, overrides)
    measured = in_fresh_process(_iteration_profile, config, overrides)
    how = (f"median of {TIMED_ITERATIONS} training iterations after {WARMUP_ITERATIONS} on the first training batch "
           f"of {cfg.data.batch_size} images; ")
    if cfg.train.device != "cpu" and torch.cuda.is_available():
        how += "peak memory: torch.cuda.max_memory_allocated over what was allocated before the model was built"
    else:
        how += f"peak memory: growth of the peak resident set size ({start_method()} child process)"
    return {**measured, "how": how}


def inference_latency(exports: Mapping[str, str | Path], image: torch.Tensor, device: str) -> dict[str, Any]:
    """Per row of ``exports`` (row -> export folder, ``single`` among them): the milliseconds of an eval forward of
    its exported network on ``image`` (one test image, C x H x W) on ``device``, in float32 as exported, and its
    ratio to single-task's export. Timed interleaved (``time_interleaved``: every network once per round), so a
    change of the machine's load hits every row alike and the per-round ratios are paired."""
    target = resolve_device(device)
    batch = image[None].to(target)

    def forward(network: torch.nn.Module) -> Callable[[], None]:
        def call() -> None:
            with torch.no_grad():
                network(batch)
        return call

    calls = {row: forward(load_exported(folder).to(target)) for row, folder in exports.items()}
    sync = (lambda: torch.cuda.synchronize(target)) if target.type == "cuda" else (lambda: None)
    samples = time_interleaved(calls, LATENCY_ROUNDS, LATENCY_WARMUP, sync)
    threads = f" (torch threads: {torch.get_num_threads()})" if target.type == "cpu" else ""
    how = (f"median of {LATENCY_ROUNDS} eval forwards of one {batch.shape[-2]}x{batch.shape[-1]} test image in "
           f"float32 on {target}{threads}, after {LATENCY_WARMUP} untimed rounds, every exported network once per "
           "round beside single-task's; the ratio is of the medians")
    return {row: {"ms_per_image": statistics.median(times), "how": how,
                  "vs_single": time_ratio(samples, {row: 1.0}, {"single": 1.0})} for row, times in samples.items()}
