"""Peak memory in fresh processes: the resident set size of this process, and running a function in a new one."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from torch import nn


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
