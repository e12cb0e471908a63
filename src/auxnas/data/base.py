"""What every dataset split shares: a view over some of its images, with or without augmentation."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks import BUILTIN_KINDS
from .transforms import resize_sample


class IndexedImages(Dataset):
    """A split whose samples are looked up through ``indices`` (positions in its arrays or files).

    ``checked[j]``: whether the values in the files of image ``j`` have been checked (``unchecked``). A reader checks
    them on the first read of each image only, so that checking costs nothing after that.
    """

    indices: np.ndarray
    augment: bool
    checked: torch.Tensor
    #: sample key -> the kind of its task (what the transforms do to it): the built-in tasks', or a dataset's own
    label_kinds: Mapping[str, str] = BUILTIN_KINDS

    def subset(self, indices: Sequence[int], augment: bool) -> IndexedImages:
        """A view over some images of this split (e.g. the validation part of ``train``), sharing its data."""
        view = copy.copy(self)
        view.indices = self.indices[np.asarray(indices, dtype=np.int64)]
        view.augment = augment
        return view

    def __len__(self) -> int:
        return len(self.indices)

    def image_names(self) -> list[str]:
        """Names of this view's images (by default their positions), for the record of what a run trained on."""
        return [str(j) for j in self.indices]


def unchecked(count: int) -> torch.Tensor:
    """The record of ``count`` images none of whose values have been checked yet, in shared memory: views
    (``subset``), DataLoader worker processes and the epochs after the first all share it, so that each image is
    checked once per dataset object."""
    return torch.zeros(count, dtype=torch.bool).share_memory_()


class Resized(Dataset):
    """``dataset``'s samples with every image and dense label resized to ``size`` (``data.resize``): the image
    bilinearly, labels by nearest neighbour, so depth values, unit normals and ignore labels stay valid. ``kinds``:
    the kind of each label (``IndexedImages.label_kinds``)."""

    def __init__(self, dataset: Dataset, size: tuple[int, int], kinds: Mapping[str, str] = BUILTIN_KINDS) -> None:
        self.dataset, self.size, self.kinds = dataset, size, kinds

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return resize_sample(self.dataset[i], self.size, self.kinds)
