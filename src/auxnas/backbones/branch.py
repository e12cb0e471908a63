"""A single-task network laid out as stem -> cells -> head.

Cells are the units after which cross-task links may attach (a VGG conv layer,
a ResNet block, a ViT block); they are grouped in stages. Methods that fuse
branches drive the loop themselves through ``stem``, ``cells`` and ``decode``;
``forward`` is the plain single-task network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn


class Branch(nn.Module):
    """Stem, ordered cells in stages, and a task head fed by the stage outputs.

    Args:
        stem: image -> input of the first cell.
        cells: the ordered units; ``len(cells) == sum(stage_depths)``.
        stage_depths: number of cells in each stage.
        cell_channels: channel width of each cell's output.
        feature_format: ``"map"`` for ``B x C x H x W`` cell outputs, ``"tokens"``
            for ``B x N x C`` (ViT; see ``num_prefix_tokens``).
        head: maps the outputs of the last cell of every stage (and the image
            size) to the task prediction.
        num_prefix_tokens: class/register tokens in front of the patch tokens.
        patch_size: ViT patch size (None for CNNs), so heads can rebuild the token grid.
        last_layer: path, inside the last cell, of the module whose ``weight`` is the branch's last layer
            before the head (GradNorm measures gradient norms there).
    """

    def __init__(
        self,
        stem: nn.Module,
        cells: Sequence[nn.Module],
        stage_depths: Sequence[int],
        cell_channels: Sequence[int],
        feature_format: Literal["map", "tokens"],
        head: nn.Module,
        num_prefix_tokens: int = 0,
        patch_size: int | None = None,
        last_layer: str = "",
    ) -> None:
        super().__init__()
        if len(cells) != sum(stage_depths):
            raise ValueError(f"{len(cells)} cells but stage depths {list(stage_depths)} sum to {sum(stage_depths)}")
        if len(cell_channels) != len(cells):
            raise ValueError(f"{len(cell_channels)} channel widths for {len(cells)} cells")
        self.stem = stem
        self.cells = nn.ModuleList(cells)
        self.stage_depths = tuple(int(d) for d in stage_depths)
        self.cell_channels = tuple(int(c) for c in cell_channels)
        self.feature_format = feature_format
        self.num_prefix_tokens = num_prefix_tokens
        self.patch_size = patch_size
        self.head = head
        self.last_layer = last_layer
        self.last_layer_weight()  # fails now, not in the middle of training, if the path is wrong

    def last_layer_weight(self) -> nn.Parameter:
        """The weight of the last layer before the head: the last conv of the last ResNet block or VGG cell, the
        last block's ``mlp.fc2`` on a ViT."""
        weight = getattr(self.cells[-1].get_submodule(self.last_layer), "weight", None)
        if not isinstance(weight, nn.Parameter):
            raise ValueError(f"last_layer {self.last_layer!r} of the last cell has no weight parameter")
        return weight

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Index of the last cell of every stage (the decoder's taps)."""
        ends, total = [], 0
        for depth in self.stage_depths:
            total += depth
            ends.append(total - 1)
        return tuple(ends)

    @property
    def cell_stage(self) -> tuple[int, ...]:
        """Stage index of every cell."""
        return tuple(s for s, depth in enumerate(self.stage_depths) for _ in range(depth))

    def decode(self, cell_outputs: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
        """Task prediction from the outputs of all cells (only stage ends are used)."""
        return self.head([cell_outputs[i] for i in self.stage_ends], image_size)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        outputs: list[Tensor] = []
        for cell in self.cells:
            h = cell(h)
            outputs.append(h)
        return self.decode(outputs, (x.shape[-2], x.shape[-1]))
