"""What every dataset split shares: a view over some of its images, with or without augmentation."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset


class IndexedImages(Dataset):
    """A split whose samples are looked up through ``indices`` (positions in its arrays or files)."""

    indices: np.ndarray
    augment: bool

    def subset(self, indices: Sequence[int], augment: bool) -> IndexedImages:
        """A view over some images of this split (e.g. the validation part of ``train``), sharing its data."""
        view = copy.copy(self)
        view.indices = self.indices[np.asarray(indices, dtype=np.int64)]
        view.augment = augment
        return view

    def __len__(self) -> int:
        return len(self.indices)
