"""Inference cost of a network: parameters, FLOPs (torch's counter) and latency."""

from __future__ import annotations

import statistics
import time

import torch
from torch import Tensor, nn


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(module: nn.Module, example: Tensor) -> int:
    """FLOPs of one eval-mode forward on ``example``, counted by ``torch.utils.flop_counter``.

    The counter covers matrix multiplications and convolutions (the ops that
    dominate); element-wise ops such as norms and activations count as 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
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
