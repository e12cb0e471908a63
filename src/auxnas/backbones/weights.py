"""Pretrained backbone weights: from a local file, or from the timm hub.

Weights are loaded into the whole timm model, in timm's key names, before a family
module splits it into stem and cells. Classifier parts (which a branch never uses)
may be absent from or extra in the weights; any other mismatch is an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import PretrainedWeightsError

#: state-dict prefixes of classifier parts that a branch does not use
CLASSIFIER_PREFIXES = ("fc.", "head.", "head_drop.", "pre_logits.", "fc_norm.", "classifier.")
#: values of ``pretrained`` that ask timm for its hub weights
HUB = ("hub", "timm")
#: value of ``pretrained`` that asks for weights installed with auxnas (``backbones.efficientnet``)
PACKAGED = "packaged"

StateDict = dict[str, torch.Tensor]


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Tensors of a ``.safetensors`` file or of a torch file (loaded with ``weights_only=True``).

    A torch file may hold the state dict itself or nest it under ``"state_dict"`` or ``"model"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many types for foreign files
        raise ValueError(f"{path}: cannot be read as weights ({type(err).__name__}: {err})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return state


def hub_state_dict(timm_name: str) -> StateDict:
    """timm's pretrained weights for ``timm_name``; a clear ``PretrainedWeightsError`` when they cannot be fetched.

    Works offline (``HF_HUB_OFFLINE=1``) when the weights are already in the Hugging Face cache.
    """
    try:
        return timm.create_model(timm_name, pretrained=True).state_dict()
    except Exception as err:  # network, hub and cache errors come in many types
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        reason = "the hub is offline (HF_HUB_OFFLINE) and they are not cached" if offline else "no network?"
        raise PretrainedWeightsError(
            f"could not fetch timm hub weights for {timm_name}: {reason} ({type(err).__name__}: {str(err)[:200]}). "
            "Download them where there is network and pass the local .safetensors/.pth file as `pretrained`."
        ) from None


def load_backbone_weights(model: nn.Module, state: StateDict, source: str, classifier: bool = False) -> None:
    """Load ``state`` (timm key names) into the timm ``model``; classifier keys may be missing or extra.

    ``classifier``: load the classifier keys that ``state`` has too (for a model kept whole, not split).
    """
    if not classifier:
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{source}: weights do not fit the backbone: {str(err)[:500]}") from None
    missing = [k for k in result.missing_keys if not k.startswith(CLASSIFIER_PREFIXES)]
    unexpected = result.unexpected_keys
    if missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        raise ValueError(
            f"{source}: weights do not fit the backbone: missing keys [{few(missing)}], "
            f"unexpected keys [{few(unexpected)}]"
        )


def load_pretrained(
    model: nn.Module,
    pretrained: str | os.PathLike | None,
    timm_name: str | None,
    filter_fn: Callable[[StateDict, nn.Module], StateDict] | None = None,
    classifier: bool = False,
) -> None:
    """Load weights into a freshly built timm ``model`` in place.

    ``pretrained``: None (keep the random init), a file path, or ``"hub"``/``"timm"`` for
    timm's weights of ``timm_name``. ``filter_fn`` adapts a state dict to ``model``
    (e.g. resamples ViT position embeddings to another image size). ``classifier``: see ``load_backbone_weights``.
    """
    if pretrained is None:
        return
    if pretrained == PACKAGED:
        raise ValueError(f"pretrained={PACKAGED!r}: weights are installed with auxnas for efficientnet_lite0 only, "
                         f"not {timm_name or 'the tiny configurations'}; pass a local weights file")
    if pretrained in HUB:
        if timm_name is None:
            raise ValueError("no hub weights exist for the tiny configurations; pass a local weights file")
        state, source = hub_state_dict(timm_name), f"timm hub weights of {timm_name}"
    else:
        state, source = read_state_dict(pretrained), str(pretrained)
    if filter_fn is not None:
        state = filter_fn(state, model)
    load_backbone_weights(model, state, source, classifier)
