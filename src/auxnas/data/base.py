"""What every dataset split shares: a view over some of its images, with or without augmentation."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import resize_sample


class IndexedImages(Dataset):
    """A split whose samples are looked up through ``indices`` (positions in its arrays or files).

    ``checked[j]``: whether the values in the files of image ``j`` have been checked. A reader checks them on the
    first read of each image only, so that checking costs nothing after the first epoch; views (``subset``) share
    the record, and each DataLoader worker process keeps its own copy.
    """

    indices: np.ndarray
    augment: bool
    checked: np.ndarray

    def subset(self, indices: Sequence[int], augment: bool) -> IndexedImages:
        """A view over some images of this split (e.g. the validation part of ``train``), sharing its data."""
        view = copy.copy(self)
        view.indices = self.indices[np.asarray(indices, dtype=np.int64)]
        view.augment = augment
        return view

    def __len__(self) -> int:
        return len(self.indices)


class Resized(Dataset):
    """``dataset``'s samples with every image and dense label resized to ``size`` (``data.resize``): the image
    bilinearly, labels by nearest neighbour, so depth values, unit normals and ignore labels stay valid."""

    def __init__(self, dataset: Dataset, size: tuple[int, int]) -> None:
        self.dataset, self.size = dataset, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return resize_sample(self.dataset[i], self.size)
