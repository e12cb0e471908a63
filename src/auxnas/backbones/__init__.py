"""Single-task branches on timm backbones, and heads that read their stage taps.

Real architectures (``resnet18``, ``resnet50``, ``vgg16_bn``, ``vit_tiny``, ``vit_small``,
``vit_base``, ``efficientnet_lite0``) match timm's and accept its pretrained weights; ``tiny_*`` are the same
families at toy widths and depths, for CPU tests and demos. ``efficientnet_lite0`` also has ImageNet weights
that install with auxnas and load offline (``pretrained="packaged"``).
"""

from __future__ import annotations

from ..tasks import Task
from .branch import Branch
from .efficientnet import EFFICIENTNETS, efficientnet_branch
from .heads import DenseHead, GlobalHead, make_head
from .resnet import RESNETS, resnet_branch
from .vgg import VGGS, vgg_branch
from .vit import VITS, vit_branch

__all__ = ["BACKBONE_NAMES", "EFFICIENTNETS", "VITS", "Branch", "build_branch", "build_head"]

BACKBONE_NAMES = (*RESNETS, *VGGS, *VITS, *EFFICIENTNETS)


def build_branch(
    name: str, task: Task, image_size: int = 64, pretrained: str | None = None, dilated: bool = False
) -> Branch:
    """A single-task network for ``task`` on backbone ``name``.

    ``image_size``: side of the (square) input images; ViTs size their position embedding to it.
    ``pretrained``: None, a local weights file in timm's key names (``.safetensors`` or a torch
    file), ``"hub"``/``"timm"`` for timm's hub weights (network, or the Hugging Face cache), or ``"packaged"``
    for weights installed with auxnas (``efficientnet_lite0`` only).
    ``dilated`` (ResNets only): output stride 8 instead of 32.
    """
    if name not in BACKBONE_NAMES:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONE_NAMES)}")
    if dilated and name not in RESNETS:
        raise ValueError(f"dilated=True is only supported by ResNets, not {name!r}")
    if name in RESNETS:
        return resnet_branch(name, task, pretrained, dilated)
    if name in VGGS:
        return vgg_branch(name, task, pretrained)
    if name in EFFICIENTNETS:
        return efficientnet_branch(name, task, pretrained)
    return vit_branch(name, task, image_size, pretrained)


def build_head(branch: Branch, task: Task, image_size: int = 64) -> DenseHead | GlobalHead:
    """A fresh head for ``task`` reading the same stage taps as ``branch``'s own head (for auxiliary tasks).

    ``image_size`` is accepted to mirror ``build_branch``; heads take the size at call time.
    """
    taps = [branch.cell_channels[i] for i in branch.stage_ends]
    return make_head(task.kind, task.out_channels, taps, branch.feature_format, branch.num_prefix_tokens,
                     branch.patch_size, align_corners=getattr(task, "align_corners", False))
