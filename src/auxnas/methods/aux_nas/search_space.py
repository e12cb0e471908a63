"""Aux-NAS's search space: which cell of one branch may feed which cell of the other.

A link carries the output of cell ``j`` of a source branch into cell ``i`` of a target branch. ``C[i, j] = True``
marks a link (rows: target cells, columns: source cells); the same matrix serves both directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor


def connectivity_matrix(
    stage_depths: Sequence[int], granularity: Literal["layer", "stage"] = "layer", window: int = 3
) -> Tensor:
    """Boolean ``n x n`` link matrix over ``n = sum(stage_depths)`` cells.

    ``layer``: ``C[i, j]`` iff ``j <= i``, ``i - j < window`` and both cells are in
    the same stage (the authors' search space: 24 links per direction on ViT-B).
    ``stage``: one link per stage, last cell to last cell.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    stage_of = [s for s, depth in enumerate(stage_depths) for _ in range(depth)]
    n = len(stage_of)
    matrix = torch.zeros(n, n, dtype=torch.bool)
    if granularity == "stage":
        end = -1
        for depth in stage_depths:
            end += depth
            matrix[end, end] = True
        return matrix
    if granularity != "layer":
        raise ValueError(f"granularity must be 'layer' or 'stage', got {granularity!r}")
    for i in range(n):
        for j in range(max(0, i - window + 1), i + 1):
            matrix[i, j] = stage_of[i] == stage_of[j]
    return matrix


def links_of(matrix: Tensor) -> list[tuple[int, int]]:
    """The ``(target, source)`` cell pairs of a link matrix, in row-major order."""
    return [(int(i), int(j)) for i, j in matrix.nonzero().tolist()]
