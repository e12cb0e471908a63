"""Where a run executes: seeds, the device, bfloat16 autocast, moving batches."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch

from ..config.schema import valid_device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU. An unknown name, or CUDA (or a GPU index) this machine does
    not have, raises ``ValueError`` saying what to use."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not valid_device(name):
        raise ValueError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine; use auto or cpu")
    if name.startswith("cuda:") and int(name.removeprefix("cuda:")) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    return torch.device(name)


def precision(device: torch.device, amp: bool) -> str:
    """The float format a run's forward passes compute in: ``bfloat16`` under ``autocast``, else ``float32``."""
    return "bfloat16" if amp and device.type == "cuda" else "float32"


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when enabled; a no-op on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move a batch (tensors, and the nested ``labelled`` masks) to ``device``."""
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True)
            for k, v in batch.items()}
