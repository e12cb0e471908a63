"""Measuring, below both the comparisons (``auxnas.compare``) and the benchmarks (``auxnas.bench``): the inference
cost of a network (parameters, FLOPs by torch's counter, latency), peak memory and fresh processes to measure it in,
interleaved wall times with their summaries and ratios, FLOPs of a training step."""

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
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm


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

    As ``auxnas.measure.count_flops``: matrix products, convolutions and attention, with rules for the
    fused attention kernels torch has none for (the CPU backward included). Runs the step once.
    """
    counter = FlopCounterMode(display=False, custom_mapping=attention_flop_rules())
    with counter:
        step()
    return int(counter.get_total_flops())

# ---------------------------------------------------------------------------------------------- inference cost


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def _sdpa_flops(query: torch.Size, key: torch.Size, value: torch.Size, *args: Any, **kwargs: Any) -> int:
    """FLOPs of scaled dot-product attention on ``B x H x N x D`` shapes: Q K^T and attention x V.

    2 FLOPs per multiply-add, softmax and scaling not counted: the convention of torch's own rule for
    the SDPA kernels it does count. Key/value may have fewer heads (grouped queries); the query's count.
    """
    batch, heads, queries, dim = query
    keys, value_dim = key[-2], value[-1]
    return 2 * batch * heads * queries * keys * (dim + value_dim)


def _sdpa_cpu_backward_flops(
    grad_out: torch.Size, query: torch.Size, key: torch.Size, value: torch.Size, *args: Any, **kwargs: Any
) -> int:
    """FLOPs of the CPU flash-attention backward, by torch's rule for the attention backward kernels it counts."""
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


#: fused attention kernels that torch's counter has no rule for, so their FLOPs would count as 0: the CPU
#: kernel behind ``F.scaled_dot_product_attention`` (timm's fused attention) and its backward, the MPS math
#: kernel and the out-of-tree-backend kernel (all take query, key, value first, ``B x H x N x D``)
_SDPA_WITHOUT_RULE = {
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa_flops,
    "_scaled_dot_product_attention_math_for_mps": _sdpa_flops,
    "_scaled_dot_product_fused_attention_overrideable": _sdpa_flops,
    "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_cpu_backward_flops,
}


def attention_flop_rules() -> dict[Any, Any]:
    """FLOP rules (``FlopCounterMode(custom_mapping=...)``) for the attention kernels torch does not count;
    torch's own rule wins once it has one."""
    from torch.utils.flop_counter import flop_registry

    ops = {getattr(torch.ops.aten, name): rule for name, rule in _SDPA_WITHOUT_RULE.items()
           if hasattr(torch.ops.aten, name)}
    return {op: rule for op, rule in ops.items() if op not in flop_registry}


@torch.no_grad()
def count_flops(module: nn.Module, example: Tensor) -> int:
    """FLOPs of one eval-mode forward on ``example``, counted by ``torch.utils.flop_counter``.

    The counter covers matrix multiplications, convolutions and attention (the ops that
    dominate); element-wise ops such as norms and activations count as 0. Attention
    kernels that the counter lacks a rule for get ``attention_flop_rules``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False, custom_mapping=attention_flop_rules())
    with counter:
        module(example)
    module.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(
    modules: dict[str, nn.Module], example: Tensor, rounds: int = 10, repeats: int = 10, warmup: int = 3
) -> dict[str, float]:
    """Median wall time (ms) of one eval-mode forward on ``example`` for each module.

    The modules are timed interleaved, round by round, so that machine noise (other
    processes, frequency changes) hits all of them alike and their ratios are fair.
    """
    sync = torch.cuda.synchronize if example.is_cuda else (lambda: None)
    states = {name: m.training for name, m in modules.items()}
    samples: dict[str, list[float]] = {name: [] for name in modules}
    for module in modules.values():
        module.eval()
        for _ in range(warmup):
            module(example)
    for _ in range(rounds):
        for name, module in modules.items():
            for _ in range(repeats):
                sync()
                start = time.perf_counter()
                module(example)
                sync()
                samples[name].append((time.perf_counter() - start) * 1000.0)
    for name, module in modules.items():
        module.train(states[name])
    return {name: statistics.median(times) for name, times in samples.items()}
