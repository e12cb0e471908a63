"""The residual fusion op that joins linked branches (Aux-NAS, Aux-G; the auxiliary module reuses it).

The fusion op at a target cell computes

    out = post(x + W · concat_j(s_j · y_j))

with ``x`` the target's own cell output, ``y_j`` the source cell outputs (taken
before the source's own fusion, resized bilinearly to ``x``'s size), ``s_j`` the
link strengths and ``W`` a zero-initialised 1x1 convolution (a linear map on
ViT tokens), so a fused network starts exactly as its single-task branches.
``post`` is the identity (default, as in the authors' ViT code) or BatchNorm +
ReLU (the paper's CNN form).

``init`` > 0 starts ``W`` instead at ``init / k`` times the identity on each of the ``k`` sources as wide as the
target (the authors' code exposes this as the NDDR ``init``; 0 there and in the paper): the sources then pass
into the target, and the target's loss reaches the sources' branches, from the first step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FusionNorm = Literal["none", "bn_relu"]


class FusionPost(nn.Module):
    """BatchNorm + ReLU after the residual sum, for feature maps or tokens."""

    def __init__(self, channels: int, feature_format: Literal["map", "tokens"]) -> None:
        super().__init__()
        self.feature_format = feature_format
        self.norm = nn.BatchNorm2d(channels) if feature_format == "map" else nn.BatchNorm1d(channels)

    def forward(self, x: Tensor) -> Tensor:
        if self.feature_format == "tokens":
            return F.relu(self.norm(x.transpose(1, 2)).transpose(1, 2))
        return F.relu(self.norm(x))


class Fusion(nn.Module):
    """Residual fusion of one target cell with any number of weighted source features."""

    def __init__(
        self,
        channels: int,
        source_channels: Sequence[int],
        feature_format: Literal["map", "tokens"],
        norm: FusionNorm = "none",
        init: float = 0.0,
    ) -> None:
        super().__init__()
        if not source_channels:
            raise ValueError("a fusion op needs at least one source")
        self.feature_format = feature_format
        total = sum(source_channels)
        if feature_format == "map":
            self.proj: nn.Module = nn.Conv2d(total, channels, kernel_size=1, bias=False)
        else:
            self.proj = nn.Linear(total, channels, bias=False)
        nn.init.zeros_(self.proj.weight)
        matrix = self.proj.weight if feature_format == "tokens" else self.proj.weight[:, :, 0, 0]  # out x in view
        offset = 0
        with torch.no_grad():
            for width in source_channels:
                if width == channels:
                    matrix[:, offset : offset + width] = torch.eye(channels) * init / len(source_channels)
                offset += width
        self.post: nn.Module = FusionPost(channels, feature_format) if norm == "bn_relu" else nn.Identity()

    def forward(self, x: Tensor, sources: Sequence[Tensor], strengths: Tensor) -> Tensor:
        """``x`` plus the projected concatenation of ``strengths[k] * sources[k]``, then ``post``."""
        weighted = []
        for k, y in enumerate(sources):
            if self.feature_format == "map" and y.shape[-2:] != x.shape[-2:]:
                y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            weighted.append(strengths[k].to(y.dtype) * y)
        cat_dim = 1 if self.feature_format == "map" else -1
        return self.post(x + self.proj(torch.cat(weighted, dim=cat_dim)))
