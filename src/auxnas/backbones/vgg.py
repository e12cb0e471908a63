"""VGG branches with BatchNorm: one cell per conv-BN-ReLU (a preceding max-pool belongs to its cell).

A max-pool starts a new stage: VGG-16 has 13 cells in stages [2, 2, 3, 3, 3]. The
trailing pool after the last conv is dropped (the decoders work at stride 16).
"""

from __future__ import annotations

from typing import Any

from timm.models.vgg import VGG
from torch import nn

from ..tasks import Task
from .branch import Branch
from .heads import make_head
from .weights import apply_pretrained

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
TINY_VGG = [16, "M", 24, "M", 32, 32, "M", 48, 48, "M", 64, 64, "M"]

#: name -> (timm name or None for tiny, layer configuration)
VGGS: dict[str, tuple[str | None, list[Any]]] = {"vgg16_bn": ("vgg16_bn", VGG16), "tiny_vgg": (None, TINY_VGG)}


def vgg_branch(name: str, task: Task, pretrained: str | None = None) -> Branch:
    """A VGG-BN branch split into conv cells grouped by pooling stage."""
    timm_name, layout = VGGS[name]
    model = VGG(layout, norm_layer=nn.BatchNorm2d, num_classes=0)
    apply_pretrained(model, pretrained, timm_name, num_classes=0)
    cells: list[nn.Module] = []
    channels: list[int] = []
    depths: list[int] = []
    pending: list[nn.Module] = []
    layers = list(model.features)
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.MaxPool2d):
            pending.append(layer)
            i += 1
            continue
        conv, norm, act = layers[i : i + 3]
        if pending or not depths:
            depths.append(0)
        cells.append(nn.Sequential(*pending, conv, norm, act))
        channels.append(conv.out_channels)
        depths[-1] += 1
        pending = []
        i += 3
    ends = [sum(depths[: s + 1]) - 1 for s in range(len(depths))]
    head = make_head(task.kind, task.out_channels, [channels[e] for e in ends], "map")
    return Branch(nn.Identity(), cells, depths, channels, "map", head)
