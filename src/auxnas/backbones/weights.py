"""Pretrained backbone weights: from a local file, or (with network) from the timm hub."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

#: state-dict prefixes of classifier parts that a branch does not use
CLASSIFIER_PREFIXES = ("fc.", "head.", "head_drop.", "pre_logits.", "fc_norm.", "classifier.")
HUB = ("hub", "timm")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a torch file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise several types for foreign files
        raise ValueError(f"{path}: cannot be read as weights ({type(err).__name__}: {err})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return state


def load_backbone_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` (timm key names) into the timm ``model``; classifier keys may be absent or extra."""
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{source}: does not match the backbone: {str(err)[:500]}") from None
    missing = [k for k in result.missing_keys if not k.startswith(CLASSIFIER_PREFIXES)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{source}: does not match the backbone: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}"
        )


def apply_pretrained(
    model: nn.Module,
    pretrained: str | None,
    timm_name: str | None,
    filter_fn: Callable[[dict, nn.Module], dict] | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """Load weights into a freshly built timm ``model``: from a local file, or from the hub when asked.

    ``pretrained``: None (keep the random init), a file path, or ``"hub"``/``"timm"``
    (timm's own weights for ``timm_name``; needs network). Asking for hub weights
    offline fails with a message that says so instead of a deep download traceback.
    """
    if pretrained is None:
        return model
    if pretrained in HUB:
        if timm_name is None:
            raise ValueError("no hub weights exist for the tiny test configurations; use a local file")
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            raise RuntimeError(
                f"hub weights for {timm_name} requested but the hub is offline (HF_HUB_OFFLINE is set); "
                "download them elsewhere and set model.pretrained to the local file"
            )
        try:
            state = timm.create_model(timm_name, pretrained=True, **timm_kwargs).state_dict()
        except Exception as err:  # network and hub errors come in many types
            raise RuntimeError(
                f"could not fetch hub weights for {timm_name} ({type(err).__name__}: no network?); set "
                "model.pretrained to a local .safetensors/.pth file instead"
            ) from None
    else:
        state = read_state_dict(pretrained)
        if filter_fn is not None:
            state = filter_fn(state, model)
    load_backbone_weights(model, state, str(pretrained))
    return model
