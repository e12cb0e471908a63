"""Datasets: the built-in synthetic scenes and the split into train / val / test."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from .synthetic import SyntheticScenes

__all__ = ["DataSplits", "SyntheticScenes", "build_splits"]


@dataclass
class DataSplits:
    """Train (augmented), validation (carved from train, for model selection) and test."""

    train: Dataset
    val: Dataset
    test: Dataset
    #: class counts of the label kinds that have classes ("seg", "object", "scene")
    num_classes: dict[str, int]


def build_splits(cfg: DataConfig, progress: bool = True) -> DataSplits:
    """Build the three splits; the validation images never come from the test split."""
    full = SyntheticScenes("train", cfg.num_train, cfg.image_size, cfg.seed, cfg.cache_dir, progress=progress)
    test = SyntheticScenes("test", cfg.num_test, cfg.image_size, cfg.seed, cfg.cache_dir, progress=progress)
    num_val = max(1, round(cfg.val_fraction * cfg.num_train))
    if num_val >= cfg.num_train:
        raise ValueError(f"data.val_fraction={cfg.val_fraction} leaves no training image out of {cfg.num_train}")
    order = torch.randperm(cfg.num_train, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    train = full.subset(sorted(order[num_val:]), augment=cfg.augment)
    val = full.subset(sorted(order[:num_val]), augment=False)
    return DataSplits(train=train, val=val, test=test, num_classes=full.num_classes)
