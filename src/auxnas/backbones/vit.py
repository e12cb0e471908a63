"""Vision Transformer branches: stem = patch and position embedding, one cell per block, DPT-like dense head."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import Tensor, nn

from ..tasks import Task
from .branch import Branch
from .heads import make_head
from .weights import apply_pretrained

#: name -> (timm name or None for tiny, patch size, width, depth, heads, blocks per stage)
VITS = {
    "vit_tiny": ("vit_tiny_patch16_224", 16, 192, 12, 3, (3, 3, 3, 3)),
    "vit_small": ("vit_small_patch16_224", 16, 384, 12, 6, (3, 3, 3, 3)),
    "vit_base": ("vit_base_patch16_224", 16, 768, 12, 12, (3, 3, 3, 3)),
    "tiny_vit": (None, 8, 48, 4, 3, (1, 1, 1, 1)),
}


class ViTStem(nn.Module):
    """Patch embedding, class token and absolute position embedding of a timm ViT."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
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
    """A ViT branch at ``image_size`` (position embeddings resized when loading other-size weights)."""
    timm_name, patch, width, depth, heads, stages = VITS[name]
    if image_size % patch:
        raise ValueError(f"{name}: image size {image_size} is not a multiple of the patch size {patch}")
    kwargs = {"img_size": image_size, "patch_size": patch, "embed_dim": width, "depth": depth, "num_heads": heads,
              "num_classes": 0}
    model = VisionTransformer(**kwargs)
    apply_pretrained(model, pretrained, timm_name, filter_fn=checkpoint_filter_fn, img_size=image_size, num_classes=0)
    ends = [sum(stages[: s + 1]) - 1 for s in range(len(stages))]
    head = make_head(task.kind, task.out_channels, [width] * len(ends), "tokens", model.num_prefix_tokens, patch)
    return Branch(ViTStem(model), list(model.blocks), stages, [width] * depth, "tokens", head,
                  num_prefix_tokens=model.num_prefix_tokens, patch_size=patch)
