"""ResNet branches: stem = conv1/bn1/act1/maxpool, one cell per residual block, one stage per layer."""

from __future__ import annotations

from typing import Any

import timm
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from ..tasks import Task
from .branch import Branch
from .heads import make_head
from .weights import load_pretrained

#: name -> timm model name (with hub weights), or the ``ResNet`` arguments of a tiny configuration
RESNETS: dict[str, str | dict[str, Any]] = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "tiny_resnet": {"block": BasicBlock, "layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128), "stem_width": 16},
}


def resnet_branch(name: str, task: Task, pretrained: str | None = None, dilated: bool = False) -> Branch:
    """A ResNet branch; ``dilated`` gives output stride 8 (dilated convolutions in layer3 and layer4)."""
    spec = RESNETS[name]
    kwargs = {"num_classes": 0, "output_stride": 8 if dilated else 32}
    if isinstance(spec, str):
        model = timm.create_model(spec, pretrained=False, **kwargs)
    else:
        model = ResNet(**spec, **kwargs)
    load_pretrained(model, pretrained, spec if isinstance(spec, str) else None)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    widths = {info["module"]: info["num_chs"] for info in model.feature_info}
    stage_widths = [widths[f"layer{s + 1}"] for s in range(len(stages))]
    cell_channels = [w for w, stage in zip(stage_widths, stages) for _ in stage]
    stem = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
    head = make_head(task.kind, task.out_channels, stage_widths, "map",
                     align_corners=getattr(task, "align_corners", False))
    cells = [cell for stage in stages for cell in stage]
    last_conv = "conv3" if hasattr(cells[-1], "conv3") else "conv2"  # Bottleneck or BasicBlock
    return Branch(stem, cells, [len(s) for s in stages], cell_channels, "map", head, last_layer=last_conv)
