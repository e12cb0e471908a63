"""Task heads over a branch's stage-end taps: a dense decoder and a global classifier.

Dense: an FPN-lite fusion of feature maps (1x1 laterals to a common width, upsampled
to the finest tap, summed, 3x3 conv-BN-ReLU, 1x1 to the task's channels, bilinear to
the image size; that last resize follows the task's ``align_corners``, the internal ones
do not: docs/tasks.md). ViT taps are first reassembled DPT-style into maps at different
scales, then go through the same fusion. Image-level: the last tap pooled (maps) or
its class token (tokens), then a linear layer.

Token taps are layer-normed inside the head (one LayerNorm per tap): a ViT's own final
norm belongs to the head, so every tap a head reads is normalized the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn


class TokenReassemble(nn.Module):
    """ViT tokens -> a feature map at ``scale`` times the patch grid (prefix tokens dropped).

    ``scale`` is a power of two: > 1 upsamples with a transposed conv (kernel = stride), < 1
    downsamples with a strided conv (kernel = stride + 1: DPT's 3x3 stride 2 when halving).
    """

    def __init__(self, in_channels: int, width: int, scale: float, num_prefix_tokens: int, patch_size: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.patch_size = patch_size
        self.norm = nn.LayerNorm(in_channels)
        self.proj = nn.Conv2d(in_channels, width, kernel_size=1)
        if scale > 1:
            self.resample: nn.Module = nn.ConvTranspose2d(width, width, kernel_size=int(scale), stride=int(scale))
        elif scale < 1:
            factor = round(1 / scale)
            self.resample = nn.Conv2d(width, width, kernel_size=factor + 1, stride=factor, padding=factor // 2)
        else:
            self.resample = nn.Identity()

    def forward(self, tokens: Tensor, image_size: tuple[int, int]) -> Tensor:
        x = self.norm(tokens[:, self.num_prefix_tokens:])
        grid = (image_size[0] // self.patch_size, image_size[1] // self.patch_size)
        if grid[0] * grid[1] != x.shape[1]:
            raise ValueError(f"{x.shape[1]} patch tokens do not fit a {image_size} image with patch {self.patch_size}")
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)
        return self.resample(self.proj(x))


class MapFusion(nn.Module):
    """FPN-lite: feature maps of any strides -> ``B x out_channels x H x W`` at the image size.

    ``align_corners`` applies to the final resize to the image size only; taps are resized to the finest one with
    ``align_corners=False`` always.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, width: int = 64,
                 align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.out = nn.Conv2d(width, out_channels, kernel_size=1)

    def forward(self, maps: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
        finest = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
        fused = None
        for lateral, m in zip(self.laterals, maps):
            y = lateral(m)
            if y.shape[-2:] != finest:
                y = F.interpolate(y, size=finest, mode="bilinear", align_corners=False)
            fused = y if fused is None else fused + y
        return F.interpolate(self.out(self.fuse(fused)), size=image_size, mode="bilinear",
                             align_corners=self.align_corners)


class DenseHead(nn.Module):
    """Per-pixel prediction (``B x out_channels x H x W`` at the image size) from the stage taps.

    Token taps are reassembled DPT-style into maps at strides 4, 8, 16, 32, ... of the image, finest first
    (patch grid scales 4, 2, 1, 1/2 for 16-pixel patches).
    The common ``width`` defaults to the narrowest tap, at most 64, so decoders stay small next to tiny backbones.
    ``align_corners``: of the final bilinear resize to the image size (the task's convention).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        feature_format: Literal["map", "tokens"] = "map",
        num_prefix_tokens: int = 0,
        patch_size: int | None = None,
        width: int | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        width = width or min(64, *in_channels)
        self.reassemble: nn.ModuleList | None = None
        if feature_format == "tokens":
            if patch_size is None:
                raise ValueError("a token decoder needs the patch size")
            scales = [patch_size / 2 ** (2 + i) for i in range(len(in_channels))]
            self.reassemble = nn.ModuleList(
                TokenReassemble(c, width, s, num_prefix_tokens, patch_size) for c, s in zip(in_channels, scales)
            )
            in_channels = [width] * len(in_channels)
        self.fusion = MapFusion(in_channels, out_channels, width, align_corners)

    def forward(self, taps: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
        if self.reassemble is not None:
            taps = [r(t, image_size) for r, t in zip(self.reassemble, taps)]
        return self.fusion(taps, image_size)

    @property
    def last_norm(self) -> nn.Module | None:
        """LayerNorm applied to the last token tap (None for maps)."""
        return None if self.reassemble is None else self.reassemble[-1].norm


class GlobalHead(nn.Module):
    """Image-level logits from the last tap: average pool (maps) or layer-normed class token (tokens).

    Tokens without a class token are averaged instead.
    """

    def __init__(
        self, in_channels: int, num_classes: int, feature_format: Literal["map", "tokens"] = "map",
        num_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.norm = nn.LayerNorm(in_channels) if feature_format == "tokens" else None
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, taps: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
        x = taps[-1]
        if self.norm is None:
            x = x.mean(dim=(2, 3))
        else:
            x = self.norm(x)
            x = x[:, 0] if self.num_prefix_tokens else x.mean(dim=1)
        return self.fc(x)

    @property
    def last_norm(self) -> nn.Module | None:
        """LayerNorm applied to the last token tap (None for maps)."""
        return self.norm


def make_head(
    kind: Literal["dense", "image"],
    out_channels: int,
    tap_channels: Sequence[int],
    feature_format: Literal["map", "tokens"],
    num_prefix_tokens: int = 0,
    patch_size: int | None = None,
    align_corners: bool = False,
) -> DenseHead | GlobalHead:
    """The head for a task of ``kind`` over stage taps of widths ``tap_channels``; ``align_corners`` of a dense
    head's final resize to the image size."""
    if kind == "dense":
        return DenseHead(tap_channels, out_channels, feature_format, num_prefix_tokens, patch_size,
                         align_corners=align_corners)
    if kind == "image":
        return GlobalHead(tap_channels[-1], out_channels, feature_format, num_prefix_tokens)
    raise ValueError(f"unknown task kind {kind!r}; expected 'dense' or 'image'")
