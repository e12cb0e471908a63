"""Vision Transformer branches: stem = patch and position embedding, one cell per block, four stages.

Cells output ``B x N x C`` tokens (class token first). The ViT's final norm moves to
the head: it initializes the head's LayerNorm of the last tap (pretrained when the
backbone is), while the earlier taps get fresh LayerNorms.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import Tensor, nn

from ..tasks import Task
from .branch import Branch
from .heads import make_head
from .weights import load_pretrained

#: name -> timm model name (with hub weights), or the ``VisionTransformer`` arguments of a tiny configuration
VITS: dict[str, str | dict[str, Any]] = {
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
    "tiny_vit": {"patch_size": 8, "embed_dim": 48, "depth": 4, "num_heads": 3},
}
NUM_STAGES = 4


class ViTStem(nn.Module):
    """Patch embedding, class token, absolute position embedding and pre-norm of a timm ViT."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        if vit.cls_token is None or vit.reg_token is not None or vit.no_embed_class or vit.pos_embed is None:
            raise ValueError("ViTStem needs a class token, no register tokens and a position embedding that covers it")
        self.patch_embed = vit.patch_embed
        self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.pos_drop = vit.pos_drop
        self.norm_pre = vit.norm_pre

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm_pre(self.pos_drop(x))


def vit_branch(name: str, task: Task, image_size: int = 64, pretrained: str | None = None) -> Branch:
    """A ViT branch for ``image_size`` images (loaded position embeddings are resampled to its grid)."""
    spec = VITS[name]
    kwargs = {"img_size": image_size, "num_classes": 0}
    if isinstance(spec, str):
        model = timm.create_model(spec, pretrained=False, **kwargs)
    else:
        model = VisionTransformer(**spec, **kwargs)
    patch = model.patch_embed.patch_size[0]
    if image_size % patch:
        raise ValueError(f"{name}: image size {image_size} is not a multiple of the patch size {patch}")
    load_pretrained(model, pretrained, spec if isinstance(spec, str) else None, filter_fn=checkpoint_filter_fn)
    depth, width = len(model.blocks), model.embed_dim
    if depth % NUM_STAGES:
        raise ValueError(f"{name}: {depth} blocks do not split into {NUM_STAGES} equal stages")
    stages = [depth // NUM_STAGES] * NUM_STAGES
    head = make_head(task.kind, task.out_channels, [width] * NUM_STAGES, "tokens", model.num_prefix_tokens, patch,
                     align_corners=getattr(task, "align_corners", False))
    head.last_norm.load_state_dict(model.norm.state_dict())
    return Branch(ViTStem(model), list(model.blocks), stages, [width] * depth, "tokens", head,
                  num_prefix_tokens=model.num_prefix_tokens, patch_size=patch, last_layer="mlp.fc2")
