"""Training labels that differ from the dataset's: withheld (partially labelled data) or random (noise control).

A sample may hold ``sample["labelled"] = {task: bool tensor}``; a task missing there (or a sample
without the key) is labelled. The training loop computes each task's loss over the images of a
batch that carry its label (``auxnas.tasks.labelled``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..tasks import build_task


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


class RandomTargets(Dataset):
    """``dataset`` with some tasks' targets replaced by random ones: the noise control of auxiliary learning.

    Targets are drawn per image (fixed across epochs, seeded by ``seed``, the task and the image index), of the
    same shape as the real ones, by the task's kind (``Task.random_target``; ``num_classes``: the dataset's task
    table): uniform classes for segmentation and classification (a soft-label vector has its entries randomly
    permuted: same distribution of values, a uniformly random argmax), random unit vectors for normals, uniform
    values over [0.5, 10) for depth and over [0.1, 2) for disparity, the label's own values at randomly permuted
    pixels for dense regression, uniformly random subsets for multi-label classification and standard normal values
    for image regression. An auxiliary task on such targets carries no information about the primary one.
    """

    def __init__(self, dataset: Dataset, tasks: list[str], num_classes: Mapping[str, Any], seed: int) -> None:
        self.dataset = dataset
        self.tasks = {task: build_task(task, num_classes) for task in tasks}
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.dataset[i])
        for name, task in self.tasks.items():
            key = np.random.SeedSequence([self.seed, zlib.crc32(name.encode()), i]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(key))
            sample[name] = task.random_target(sample[name], generator)
        return sample


def random_target(
    task: str, real: torch.Tensor, num_classes: Mapping[str, Any], generator: torch.Generator
) -> torch.Tensor:
    """A random target with the shape and dtype of ``real`` for task ``task`` of the task table ``num_classes``
    (see ``RandomTargets``)."""
    return build_task(task, num_classes).random_target(real, generator)
