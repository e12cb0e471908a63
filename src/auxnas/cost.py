"""Inference cost of a network: parameters, FLOPs (torch's counter) and latency."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn


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
