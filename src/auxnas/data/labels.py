"""Training labels that differ from the dataset's: withheld (partially labelled data) or random (noise control).

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

from ..tasks import TASK_NAMES


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

    Targets are drawn per image (fixed across epochs, seeded by ``seed``, the task and the image index), of
    the same shape as the real ones: uniform classes for segmentation and classification (a soft-label
    vector has its entries randomly permuted: same distribution of values, a uniformly random argmax), random
    unit vectors for normals, uniform values over [0.5, 10) for depth and over (0.1, 2] for disparity. An
    auxiliary task on such targets carries no information about the primary one.
    """

    def __init__(self, dataset: Dataset, tasks: list[str], num_classes: Mapping[str, int], seed: int) -> None:
        unknown = [t for t in tasks if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"no random targets for task(s) {unknown}")
        self.dataset = dataset
        self.tasks = list(tasks)
        self.num_classes = dict(num_classes)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.dataset[i])
        for task in self.tasks:
            key = np.random.SeedSequence([self.seed, zlib.crc32(task.encode()), i]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(key))
            sample[task] = random_target(task, sample[task], self.num_classes, generator)
        return sample


def random_target(
    task: str, real: torch.Tensor, num_classes: Mapping[str, int], generator: torch.Generator
) -> torch.Tensor:
    """A random target with the shape and dtype of ``real`` (see ``RandomTargets``)."""
    if task in ("object", "scene") and real.is_floating_point() and real.dim() == 1:  # a soft-label vector
        return real[torch.randperm(real.numel(), generator=generator)]
    if task in ("seg", "layout", "object", "scene"):
        return torch.randint(num_classes[task], real.shape, generator=generator, dtype=real.dtype)
    if task == "normal":
        return torch.nn.functional.normalize(torch.randn(real.shape, generator=generator), dim=0).to(real.dtype)
    low, high = (0.5, 10.0) if task == "depth" else (0.1, 2.0)
    return (low + (high - low) * torch.rand(real.shape, generator=generator)).to(real.dtype)
