"""Datasets: the built-in synthetic scenes and the split into train / val / test."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from .labels import PartiallyLabelled, RandomTargets, labelled_subset
from .synthetic import SyntheticScenes

__all__ = ["DataSplits", "PartiallyLabelled", "RandomTargets", "SyntheticScenes", "build_splits", "labelled_subset"]


@dataclass
class DataSplits:
    """Train (augmented), validation (carved from train, for model selection) and test."""

    train: Dataset
    val: Dataset
    test: Dataset
    #: class counts of the label kinds that have classes ("seg", "object", "scene")
    num_classes: dict[str, int]

    def train_label_counts(self, tasks: list[str]) -> dict[str, int]:
        """Task -> number of training images that carry its label."""
        counts = self.train.label_counts() if isinstance(self.train, PartiallyLabelled) else {}
        return {task: counts.get(task, len(self.train)) for task in tasks}


def build_splits(cfg: DataConfig, progress: bool = True) -> DataSplits:
    """Build the three splits; the validation images never come from the test split.

    With ``cfg.labelled_fraction`` the training split withholds labels (``PartiallyLabelled``); with
    ``cfg.random_targets`` its targets of those tasks are random (``RandomTargets``). Validation and test
    images always carry every real label, as a held-out fully labelled set would.
    """
    full = SyntheticScenes("train", cfg.num_train, cfg.image_size, cfg.seed, cfg.cache_dir, progress=progress)
    test = SyntheticScenes("test", cfg.num_test, cfg.image_size, cfg.seed, cfg.cache_dir, progress=progress)
    num_val = max(1, round(cfg.val_fraction * cfg.num_train))
    if num_val >= cfg.num_train:
        raise ValueError(f"data.val_fraction={cfg.val_fraction} leaves no training image out of {cfg.num_train}")
    order = torch.randperm(cfg.num_train, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    train = full.subset(sorted(order[num_val:]), augment=cfg.augment)
    val = full.subset(sorted(order[:num_val]), augment=False)
    if cfg.random_targets:
        train = RandomTargets(train, cfg.random_targets, full.num_classes, cfg.seed)
    if cfg.labelled_fraction:
        masks = {task: labelled_subset(len(train), f, task, cfg.seed) for task, f in cfg.labelled_fraction.items()}
        train = PartiallyLabelled(train, masks)
    return DataSplits(train=train, val=val, test=test, num_classes=full.num_classes)
