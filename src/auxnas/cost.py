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
def measure_latency(module: nn.Module, example: Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of one eval-mode forward on ``example``, in milliseconds."""
    was_training = module.training
    module.eval()
    sync = torch.cuda.synchronize if example.is_cuda else (lambda: None)
    for _ in range(warmup):
        module(example)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        module(example)
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    module.train(was_training)
    return statistics.median(times)
