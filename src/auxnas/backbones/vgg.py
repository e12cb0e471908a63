"""VGG branches with BatchNorm: one cell per conv-BN-ReLU; a max-pool belongs to the cell of the conv after it.

A max-pool starts a new stage: VGG-16 has 13 cells in stages [2, 2, 3, 3, 3]. The
stem is the identity and the trailing pool after the last conv is dropped (the
decoders read the last stage at stride 16).
"""

from __future__ import annotations

from typing import Any

import timm
from timm.models.vgg import VGG
from torch import nn

from ..tasks import Task
from .branch import Branch
from .heads import make_head
from .weights import load_pretrained

TINY_VGG = [16, "M", 24, "M", 32, 32, "M", 48, 48, "M", 64, 64, "M"]
#: VGG-16's 13 conv cells in its stages [2, 2, 3, 3, 3] at an eighth of its widths: the paper's search space (24
#: links per direction with the authors' window of 3) at about tiny_resnet's cost per step on a CPU
VGG16_NARROW = [8, 8, "M", 16, 16, "M", 32, 32, 32, "M", 64, 64, 64, "M", 64, 64, 64, "M"]

#: name -> timm model name (with hub weights), or the layer configuration of a small VGG
VGGS: dict[str, str | list[Any]] = {"vgg16_bn": "vgg16_bn", "tiny_vgg": TINY_VGG, "vgg16_narrow": VGG16_NARROW}

# timm's VGG always builds a 7x7 conv MLP (4096 wide) before its classifier; a branch drops it, so it is built
# 1 channel wide instead of 4096 (saves ~120M parameters of construction time; its weights are never loaded).
_NO_MLP = {"num_classes": 0, "mlp_ratio": 1 / 4096}


def vgg_branch(name: str, task: Task, pretrained: str | None = None) -> Branch:
    """A VGG-BN branch split into conv cells grouped by pooling stage."""
    spec = VGGS[name]
    if isinstance(spec, str):
        model = timm.create_model(spec, pretrained=False, **_NO_MLP)
    else:
        model = VGG(spec, norm_layer=nn.BatchNorm2d, **_NO_MLP)
    load_pretrained(model, pretrained, spec if isinstance(spec, str) else None)
    cells: list[list[nn.Module]] = []
    channels: list[int] = []
    depths: list[int] = []
    pools: list[nn.Module] = []  # max-pools waiting for the next conv
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            pools.append(layer)
        elif isinstance(layer, nn.Conv2d):
            if pools or not depths:
                depths.append(0)
            depths[-1] += 1
            cells.append([*pools, layer])
            channels.append(layer.out_channels)
            pools = []
        else:  # BN and ReLU of the current conv
            cells[-1].append(layer)
    stage_ends = [sum(depths[: s + 1]) - 1 for s in range(len(depths))]
    head = make_head(task.kind, task.out_channels, [channels[e] for e in stage_ends], "map",
                     align_corners=getattr(task, "align_corners", False))
    last_conv = next(str(k) for k, layer in enumerate(cells[-1]) if isinstance(layer, nn.Conv2d))
    return Branch(nn.Identity(), [nn.Sequential(*c) for c in cells], depths, channels, "map", head,
                  last_layer=last_conv)
