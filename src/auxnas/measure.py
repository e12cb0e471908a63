"""Measuring, below both the comparisons (``auxnas.compare``) and the benchmarks (``auxnas.bench``): peak memory
and fresh processes to measure it in, interleaved wall times with their summaries and ratios, FLOPs of a step."""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from .cost import attention_flop_rules


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (``getrusage``: kB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


MIB = 2**20


def memory_mark(device: torch.device) -> int:
    """The point peak memory is measured from (``peak_mib_since``): on CUDA the bytes allocated now (and the peak
    statistics reset), on CPU the peak resident set size so far."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return peak_rss_bytes()


def peak_mib_since(device: torch.device, mark: int) -> float:
    """MiB of peak memory added since ``mark``: ``torch.cuda.max_memory_allocated`` on CUDA, the growth of the peak
    resident set size on CPU (meaningful in a fresh process, ``in_fresh_process``)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - mark) / MIB
    return (peak_rss_bytes() - mark) / MIB


def warm_up_kernels(device: torch.device) -> None:
    """One step of a throwaway convolution + linear model, so that the libraries' one-off allocations
    (thread pools, kernel caches) fall before the baseline."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).to(device)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 3, 8, 8, device=device)).sum().backward()
    optimizer.step()


def start_method() -> str:
    """``forkserver`` where available: every child is forked from a clean server that has imported this module
    once (fast, no parent state); ``spawn`` elsewhere."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a new process (its own peak memory and allocator state)."""
    context = multiprocessing.get_context(start_method())
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def time_interleaved(
    calls: Mapping[str, Callable[[], object]], rounds: int, warmup: int, sync: Callable[[], None] = lambda: None,
    desc: str = "timing", progress: bool = False,
) -> dict[str, list[float]]:
    """Wall times (ms) of every call, ``rounds`` samples each, after ``warmup`` untimed rounds.

    Every round runs each call once (A, B, C, A, B, C, ...), so load changes hit all calls alike;
    the starting call rotates from round to round, so none always follows the same one. Sample
    ``r`` of every call comes from round ``r``: per-round ratios are paired.
    """
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in tqdm(range(-warmup, rounds), desc=desc, leave=False, disable=not progress):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            sync()
            start = time.perf_counter()
            calls[name]()
            sync()
            if r >= 0:
                samples[name].append((time.perf_counter() - start) * 1000.0)
    return samples


def summarize(times: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, extremes and count of a list of times."""
    low, q25, median, q75, high = np.percentile(times, [0, 25, 50, 75, 100]).tolist()
    return {"median": median, "q25": q25, "q75": q75, "min": low, "max": high, "n": len(times)}


def _combine(values: Mapping[str, float], coefficients: Mapping[str, float]) -> float:
    return sum(c * values[name] for name, c in coefficients.items())


def time_ratio(
    samples: Mapping[str, Sequence[float]], num: Mapping[str, float], den: Mapping[str, float]
) -> dict[str, float]:
    """``sum c_n median(n) / sum c_d median(d)`` over calls of one interleaved loop, and the quartiles of the
    same ratio taken round by round (how much the noise moves it)."""
    medians = {name: statistics.median(s) for name, s in samples.items()}
    rounds = [{name: s[r] for name, s in samples.items()} for r in range(len(next(iter(samples.values()))))]
    q25, q75 = np.percentile([_combine(t, num) / _combine(t, den) for t in rounds], [25, 75]).tolist()
    return {"value": _combine(medians, num) / _combine(medians, den), "rounds_q25": q25, "rounds_q75": q75}


def flops_ratio(flops: Mapping[str, int], num: Mapping[str, float], den: Mapping[str, float]) -> float:
    """The FLOP counterpart of ``time_ratio``."""
    return _combine(flops, num) / _combine(flops, den)


def count_step_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step`` (a training step: forward and backward), by ``torch.utils.flop_counter``.

    As ``auxnas.cost.count_flops``: matrix products, convolutions and attention, with rules for the
    fused attention kernels torch has none for (the CPU backward included). Runs the step once.
    """
    counter = FlopCounterMode(display=False, custom_mapping=attention_flop_rules())
    with counter:
        step()
    return int(counter.get_total_flops())
