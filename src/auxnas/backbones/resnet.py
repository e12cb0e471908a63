"""ResNet branches: stem = conv1/bn1/act1/maxpool, one cell per residual block, one stage per layer."""

from __future__ import annotations

from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from ..tasks import Task
from .branch import Branch
from .heads import make_head
from .weights import apply_pretrained

#: name -> (timm name or None for tiny, block, blocks per stage, stage widths)
RESNETS = {
    "resnet18": ("resnet18", BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet50": ("resnet50", Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512)),
    "tiny_resnet": (None, BasicBlock, (1, 1, 1, 1), (16, 32, 64, 128)),
}


def resnet_branch(name: str, task: Task, pretrained: str | None = None, dilated: bool = False) -> Branch:
    """A ResNet branch; ``dilated`` gives output stride 8 (dilated last two stages)."""
    timm_name, block, layers, widths = RESNETS[name]
    output_stride = 8 if dilated else 32
    kwargs = {"output_stride": output_stride, "num_classes": 0}
    if timm_name is None:
        model = ResNet(block, layers, channels=widths, stem_width=widths[0], **kwargs)
    else:
        model = ResNet(block, layers, **kwargs)
    apply_pretrained(model, pretrained, timm_name, **kwargs)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    out_widths = [w * block.expansion for w in widths]
    cell_channels = [w for w, stage in zip(out_widths, stages) for _ in stage]
    head = make_head(task.kind, task.out_channels, out_widths, "map")
    stem = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
    return Branch(stem, [cell for stage in stages for cell in stage], layers, cell_channels, "map", head)
