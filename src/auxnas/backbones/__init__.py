"""Single-task branches on timm backbones, and heads that read their stage taps.

Real architectures (``resnet18``, ``resnet50``, ``vgg16_bn``, ``vit_tiny``, ``vit_small``,
``vit_base``, ``efficientnet_lite0``) match timm's and accept its pretrained weights; ``tiny_*`` are the same
families at toy widths and depths, for CPU tests and demos; ``vgg16_narrow`` is VGG-16's layout (13 cells, stages
[2, 2, 3, 3, 3]) at an eighth of its widths, the paper's CNN search space at CPU cost. ``efficientnet_lite0`` also
has ImageNet weights that install with auxnas and load offline (``pretrained="packaged"``).
"""

from __future__ import annotations

import re

from timm.models.vgg import cfgs

from ..config import ConfigError, ExperimentConfig
from ..tasks import Task
from .branch import Branch
from .efficientnet import EFFICIENTNETS, efficientnet_branch
from .heads import DenseHead, GlobalHead, make_head
from .resnet import RESNETS, resnet_branch
from .vgg import VGGS, vgg_branch
from .vit import VITS, vit_branch

__all__ = ["BACKBONE_NAMES", "EFFICIENTNETS", "VITS", "Branch", "build_branch", "build_head", "check_config",
           "min_image_side"]

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


def check_config(cfg: ExperimentConfig) -> None:
    """The ``model`` section against the data and method: a known backbone, packaged weights only where installed,
    no BatchNorm + ReLU fusion on ViT tokens, square images for a ViT, an image size the backbone takes.
    ``ConfigError`` naming the key."""
    backbone, data = cfg.model.backbone, cfg.data
    if backbone not in BACKBONE_NAMES:
        raise ConfigError(f"model.backbone: unknown backbone {backbone!r}; valid: {', '.join(BACKBONE_NAMES)}")
    if cfg.model.pretrained == "packaged" and backbone not in EFFICIENTNETS:
        raise ConfigError(f"model.pretrained: 'packaged' weights are installed with auxnas for "
                          f"{', '.join(EFFICIENTNETS)} only, not {backbone}; pass a local weights file")
    if cfg.method.fusion_norm == "bn_relu" and cfg.method.name in ("aux_g", "aux_nas") and backbone in VITS:
        raise ConfigError(f"method.fusion_norm: bn_relu is for feature maps, not ViT tokens ({backbone}): it "
                          "would put a ReLU on the residual stream after every fused block; use none")
    if backbone in VITS and data.name != "synthetic" and not (data.resize or data.name == "taskonomy"):
        raise ConfigError(f"model.backbone: {backbone} needs square data.image_size images for its position "
                          f"embedding; {data.name} is read at its native resolution: set data.resize=true (and "
                          "data.image_size) or use a CNN backbone")
    _check_image_size(cfg)


def _min_image_size(backbone: str) -> tuple[int, int, str]:
    """(smallest side, the side must be a multiple of, why) of the images ``backbone`` takes.

    ResNets keep at least one pixel at any size (strided convolutions with padding); a VGG's max-pools floor the
    map to nothing below 2^pools pixels; a ViT cuts the image into whole patches.
    """
    if backbone in VITS:
        spec = VITS[backbone]
        patch = spec["patch_size"] if isinstance(spec, dict) else int(re.search(r"patch(\d+)", spec).group(1))
        return patch, patch, f"it cuts images into {patch}x{patch} patches"
    if backbone in VGGS:
        spec = VGGS[backbone]
        layers = cfgs[spec.removesuffix("_bn")] if isinstance(spec, str) else spec
        last_conv = max(i for i, layer in enumerate(layers) if layer != "M")
        pools = layers[:last_conv].count("M")
        return 2**pools, 1, f"its {pools} max-pools leave no pixel below {2**pools} px"
    return 1, 1, ""


def min_image_side(backbone: str) -> int:
    """The smallest image side ``backbone`` takes (at least 2: a side of 1 is one pixel, no map)."""
    return max(_min_image_size(backbone)[0], 2)


def _check_image_size(cfg: ExperimentConfig) -> None:
    """``data.image_size`` fits the backbone wherever images are that size."""
    if not (cfg.data.name in ("synthetic", "taskonomy") or cfg.data.resize):
        return  # native resolution: data.image_size is unused
    size, backbone = cfg.data.image_size, cfg.model.backbone
    smallest, multiple, why = _min_image_size(backbone)
    if size % multiple or size < smallest:
        need = f"a multiple of its patch size {multiple}" if multiple > 1 else f"at least {smallest} px"
        raise ConfigError(f"data.image_size: {backbone} needs {need} ({why}), got {size}")
