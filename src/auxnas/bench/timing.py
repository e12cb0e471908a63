"""Timing and counting for the benchmarks: interleaved wall times, their summaries and ratios, FLOPs of a step."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from ..cost import attention_flop_rules


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
