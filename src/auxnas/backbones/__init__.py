"""Single-task branches on timm backbones, and heads that read their stage taps."""

from __future__ import annotations

from torch import nn

from ..tasks import Task
from .branch import Branch
from .heads import make_head
from .resnet import RESNETS, resnet_branch
from .vgg import VGGS, vgg_branch
from .vit import VITS, vit_branch

__all__ = ["BACKBONE_NAMES", "Branch", "build_branch", "build_head"]

BACKBONE_NAMES = (*RESNETS, *VGGS, *VITS)


def build_branch(
    name: str, task: Task, image_size: int = 64, pretrained: str | None = None, dilated: bool = False
) -> Branch:
    """A single-task network for ``task`` on backbone ``name``.

    ``pretrained``: a local weights file in timm's key names (``.safetensors`` or a torch
    file), ``"hub"`` for timm's hub weights (needs network), or None.
    ``dilated`` (ResNets only): output stride 8.
    """
    if dilated and name not in RESNETS:
        raise ValueError(f"dilated=True is only supported by ResNets, not {name!r}")
    if name in RESNETS:
        return resnet_branch(name, task, pretrained, dilated)
    if name in VGGS:
        return vgg_branch(name, task, pretrained)
    if name in VITS:
        return vit_branch(name, task, image_size, pretrained)
    raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONE_NAMES)}")


def build_head(branch: Branch, task: Task, image_size: int = 64) -> nn.Module:
    """A head for ``task`` that reads the same stage taps as ``branch``'s own head (for extra tasks)."""
    taps = [branch.cell_channels[i] for i in branch.stage_ends]
    return make_head(task.kind, task.out_channels, taps, branch.feature_format, branch.num_prefix_tokens,
                     branch.patch_size)
