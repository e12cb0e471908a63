"""Datasets: the built-in synthetic scenes, the MTAN-preprocessed NYUv2 / CityScapes readers, and the split
into train / val / test."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..config import DataConfig
from .labels import PartiallyLabelled, RandomTargets, labelled_subset
from .mtan import NpyFolders
from .readers import READERS, reader
from .synthetic import SyntheticScenes

__all__ = ["READERS", "DataSplits", "NpyFolders", "PartiallyLabelled", "RandomTargets", "SyntheticScenes",
           "build_splits", "labelled_subset", "num_val_images", "reader"]


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


def num_val_images(num_images: int, val_fraction: float) -> int:
    """How many of ``num_images`` training-folder images ``build_splits`` holds out for validation."""
    return max(1, round(val_fraction * num_images))


def build_splits(cfg: DataConfig, progress: bool = True) -> DataSplits:
    """Build the three splits; the validation images never come from the test split.

    ``cfg.name`` picks the dataset: the synthetic scenes (``num_train`` / ``num_test`` images at ``image_size``)
    or a real dataset under ``cfg.root`` (``READERS``: every image of its training split, its test split,
    native resolution). Validation images are carved from the training
    images with ``cfg.val_fraction`` and ``cfg.seed``. With ``cfg.labelled_fraction`` the training split
    withholds labels (``PartiallyLabelled``); with ``cfg.random_targets`` its targets of those tasks are random
    (``RandomTargets``). Validation and test images always carry every real label, as a held-out fully
    labelled set would.
    """
    if cfg.name == "synthetic":
        full = SyntheticScenes("train", cfg.num_train, cfg.image_size, cfg.seed, cfg.cache_dir, progress=progress)
        test = SyntheticScenes("test", cfg.num_test, cfg.image_size, cfg.seed, cfg.cache_dir, progress=progress)
    else:
        if cfg.root is None:
            raise ValueError(f"data.root: data.name={cfg.name} needs the dataset folder (see docs/datasets.md)")
        full, test = reader(cfg.name).open_splits(cfg)
    num_train = len(full)
    num_val = num_val_images(num_train, cfg.val_fraction)
    if num_val >= num_train:
        raise ValueError(f"data.val_fraction={cfg.val_fraction} leaves no training image out of {num_train}")
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    train = full.subset(sorted(order[num_val:]), augment=cfg.augment)
    val = full.subset(sorted(order[:num_val]), augment=False)
    if progress and cfg.name != "synthetic":
        height, width = full.size
        tqdm.write(f"{cfg.name} at {cfg.root} ({height}x{width}): {len(train)} train + {len(val)} validation images "
                   f"(from its training images), {len(test)} test images")
    if cfg.random_targets:
        train = RandomTargets(train, cfg.random_targets, full.num_classes, cfg.seed)
    if cfg.labelled_fraction:
        masks = {task: labelled_subset(len(train), f, task, cfg.seed) for task, f in cfg.labelled_fraction.items()}
        train = PartiallyLabelled(train, masks)
    return DataSplits(train=train, val=val, test=test, num_classes=full.num_classes)
