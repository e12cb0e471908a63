"""Partially labelled training data: which images carry which task's label.

A sample may hold ``sample["labelled"] = {task: bool tensor}``; a task missing there (or a sample
without the key) is labelled. The training loop computes each task's loss over the images of a
batch that carry its label (``auxnas.tasks.labelled``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import Dataset


def labelled_subset(num_images: int, fraction: float, task: str, seed: int) -> np.ndarray:
    """Boolean mask over ``num_images``: a deterministic ``fraction`` of them, chosen per ``task`` and ``seed``.

    Subsets of one task and seed are nested: the images kept at 10 % are among those kept at 30 %. At
    least one image is kept when ``fraction > 0``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"labelled fraction of {task!r} must be in [0, 1], got {fraction}")
    order = np.random.default_rng([seed, zlib.crc32(task.encode())]).permutation(num_images)
    keep = 0 if fraction == 0 else max(1, round(fraction * num_images))
    mask = np.zeros(num_images, dtype=bool)
    mask[order[:keep]] = True
    return mask


class PartiallyLabelled(Dataset):
    """``dataset`` with some tasks' labels withheld: samples gain ``"labelled": {task: bool}``.

    The withheld targets stay in the sample (so that batches collate) but no loss or metric reads them.
    """

    def __init__(self, dataset: Dataset, labelled: Mapping[str, np.ndarray]) -> None:
        for task, mask in labelled.items():
            if len(mask) != len(dataset):
                raise ValueError(f"label mask of {task!r} has {len(mask)} entries for {len(dataset)} images")
        self.dataset = dataset
        self.labelled = {task: np.asarray(mask, dtype=bool) for task, mask in labelled.items()}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.dataset[i])
        sample["labelled"] = {task: torch.tensor(bool(mask[i])) for task, mask in self.labelled.items()}
        return sample

    def label_counts(self) -> dict[str, int]:
        """Task -> number of images that carry its label (tasks with every label are not listed)."""
        return {task: int(mask.sum()) for task, mask in self.labelled.items()}
