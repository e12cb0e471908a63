"""Datasets: the built-in synthetic scenes, the MTAN-preprocessed NYUv2 / CityScapes readers, users' own folders,
and the split into train / val / test."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..config import DataConfig
from ..tasks import Task
from .base import IndexedImages, Resized
from .folder import FolderImages
from .labels import PartiallyLabelled, RandomTargets, labelled_subset
from .mtan import NpyFolders
from .readers import READERS, reader
from .synthetic import SyntheticScenes

__all__ = ["READERS", "DataSplits", "FolderImages", "NpyFolders", "PartiallyLabelled", "RandomTargets",
           "SyntheticScenes", "build_splits", "check_labels", "labelled_subset", "num_val_images", "reader"]


@dataclass
class DataSplits:
    """Train (augmented), validation (the dataset's own or carved from train, for model selection) and test."""

    train: Dataset
    val: Dataset
    test: Dataset
    #: the dataset's task table (``auxnas.tasks.kinds``): the class counts of its built-in tasks that have classes
    #: ("seg", "layout", "object", "scene"), the declaration of each task it declares
    num_classes: dict[str, Any]

    def train_label_counts(self, tasks: list[str]) -> dict[str, int]:
        """Task -> number of training images that carry its label."""
        counts = self.train.label_counts() if hasattr(self.train, "label_counts") else {}
        return {task: counts.get(task, len(self.train)) for task in tasks}

    def record(self) -> dict[str, dict[str, Any]]:
        """Split -> ``split_record``: what a run records at its start and a resume must find again."""
        return {"train": split_record(self.train), "val": split_record(self.val), "test": split_record(self.test)}


def split_record(split: Dataset) -> dict[str, Any]:
    """What a run trained on of one split: its image count and a fingerprint of its image names (the sha256 of
    the sorted names; no file is read)."""
    while not isinstance(split, IndexedImages):  # Resized, PartiallyLabelled, RandomTargets
        split = split.dataset
    names = "\n".join(sorted(split.image_names()))
    return {"images": len(split), "fingerprint": hashlib.sha256(names.encode()).hexdigest()}


#: what each split is called in errors
ROLES = {"train": "training", "val": "validation", "test": "test"}


def check_labels(splits: DataSplits, tasks: Mapping[str, Task], primary: str) -> None:
    """Refuse a run one of whose ``tasks`` has no valid label in a split (train, val or test): no image carries its
    label, or every pixel of those that do is ignored or invalid (``Task.loss_normaliser``). The run would otherwise
    train a task on nothing, select its checkpoint on a NaN metric (and report that it diverged) or score NaN. Reads
    images, without augmentation, until each task has a valid label: on good data, one image per split."""
    for name in ROLES:
        split = getattr(splits, name)
        missing = _tasks_without_labels(split, tasks)
        task = next((t for t in tasks if t in missing), None)  # the primary first
        if task is not None:
            raise ValueError(_no_label_error(splits, name, task, primary))


def _base(split: Dataset) -> tuple[IndexedImages, dict[str, np.ndarray]]:
    """The ``IndexedImages`` under ``split``'s wrappers and its label masks (task -> bool over its images; a task
    not listed: every image): the reader's (``label_masks``), overridden by those of ``PartiallyLabelled``."""
    masks: dict[str, np.ndarray] = {}
    while not isinstance(split, IndexedImages):  # Resized, PartiallyLabelled, RandomTargets
        if isinstance(split, PartiallyLabelled):
            masks = {**split.labelled, **masks}
        split = split.dataset
    own = split.label_masks() if hasattr(split, "label_masks") else {}
    return split, {**own, **masks}


def _tasks_without_labels(split: Dataset, tasks: Mapping[str, Task]) -> set[str]:
    """The tasks no image of ``split`` has a valid label of."""
    base, masks = _base(split)
    plain = base.subset(range(len(base)), augment=False)
    pending = set(tasks)
    for i in range(len(plain)):
        here = [t for t in pending if t not in masks or masks[t][i]]
        if here:
            sample = plain[i]
            pending -= {t for t in here if int(tasks[t].loss_normaliser(sample[t][None])) > 0}
        if not pending:
            break
    return pending


def _no_label_error(splits: DataSplits, name: str, task: str, primary: str) -> str:
    """The one line of a split without a valid ``task`` label, naming its folder where it has one."""
    base, _ = _base(getattr(splits, name))
    folder = getattr(base, "split_dir", None) or getattr(base, "root", None)
    carved = name == "val" and base.checked is _base(splits.train)[0].checked  # views of one dataset share it
    where = f"{folder}: " if folder else ""
    if folder and carved:
        where = f"{folder} (the {len(base)} validation images carved from it): "
    if name == "train":
        why, hint = "it would never train", ""
    elif name == "test":
        why, hint = "its test metrics would be NaN", ""
    elif task == primary:
        why = "the checkpoint is selected on it"
        hint = ", or raise data.val_fraction" if carved else \
            ", or remove the val folder to carve validation images from train"
    else:
        why, hint = "its validation metrics would be NaN", ""
    if task != primary:
        hint += ", or remove it from tasks.aux"
    return (f"{where}the {ROLES[name]} split has no {task} label (none of its {len(base)} images has one: no label "
            f"file, or every pixel ignored or invalid), and {why}: add {task} labels to its images{hint}")


def num_val_images(num_images: int, val_fraction: float) -> int:
    """How many of ``num_images`` training-folder images ``build_splits`` holds out for validation."""
    return max(1, round(val_fraction * num_images))


def _keep_fraction(has_label: np.ndarray | None, num_images: int, fraction: float, task: str, seed: int) -> np.ndarray:
    """``labelled_subset`` over the images that carry ``task``'s label (all ``num_images`` when ``has_label`` is
    None): ``fraction`` of them keep it."""
    if has_label is None:
        return labelled_subset(num_images, fraction, task, seed)
    carriers = np.flatnonzero(has_label)
    mask = np.zeros(num_images, dtype=bool)
    mask[carriers[labelled_subset(len(carriers), fraction, task, seed)]] = True
    return mask


def resizes(cfg: DataConfig) -> bool:
    """Whether ``build_splits`` resizes a real dataset's samples to ``data.image_size`` squares (``data.resize``;
    Taskonomy's reader resizes by itself)."""
    return cfg.resize and cfg.name not in ("synthetic", "taskonomy")


def build_splits(cfg: DataConfig, progress: bool = True) -> DataSplits:
    """Build the three splits; the validation images never come from the test split.

    ``cfg.name`` picks the dataset: the synthetic scenes (``num_train`` / ``num_test`` images at
    ``image_size``) or a real dataset under ``cfg.root`` (``READERS``: every image of its training split, its
    test split, native resolution, or ``data.image_size`` squares with ``data.resize``). A dataset's own
    validation split is used as it is; otherwise validation images are carved from the training images with
    ``cfg.val_fraction`` and ``cfg.seed``. A training split whose images lack some labels (``label_masks()``,
    e.g. ``FolderImages``) is wrapped in ``PartiallyLabelled`` with its masks; with ``cfg.labelled_fraction``
    the training split withholds labels too (that fraction of the images that carry the label keeps it); with
    ``cfg.random_targets`` its targets of those tasks are random (``RandomTargets``). Validation and test
    images carry every label their dataset has.
    """
    if cfg.name == "synthetic":
        full = SyntheticScenes("train", cfg.num_train, cfg.image_size, cfg.seed, cfg.cache_dir, progress=progress)
        test = SyntheticScenes("test", cfg.num_test, cfg.image_size, cfg.seed, cfg.cache_dir, progress=progress)
        given_val = None
    else:
        if cfg.root is None:
            raise ValueError(f"data.root: data.name={cfg.name} needs the dataset folder (see docs/datasets.md)")
        full, given_val, test = reader(cfg.name).open_splits(cfg)
    if given_val is not None:
        train, val = full.subset(range(len(full)), augment=cfg.augment), given_val
        source = "its val folder; data.val_fraction unused"
    else:
        num_train = len(full)
        num_val = num_val_images(num_train, cfg.val_fraction)
        if num_val >= num_train:
            raise ValueError(f"data.val_fraction={cfg.val_fraction} leaves no training image out of {num_train}")
        order = torch.randperm(num_train, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        train = full.subset(sorted(order[num_val:]), augment=cfg.augment)
        val = full.subset(sorted(order[:num_val]), augment=False)
        source = "from its training images"
    if progress and cfg.name != "synthetic":
        height, width = full.size
        resized = f", resized to {cfg.image_size}x{cfg.image_size}" if resizes(cfg) else ""
        tqdm.write(f"{cfg.name} at {cfg.root} ({height}x{width}{resized}): {len(train)} train + {len(val)} "
                   f"validation images ({source}), {len(test)} test images")
    masks = dict(train.label_masks()) if hasattr(train, "label_masks") else {}
    if resizes(cfg):
        size = (cfg.image_size, cfg.image_size)
        train, val, test = (Resized(split, size, full.label_kinds) for split in (train, val, test))
    if cfg.random_targets:
        train = RandomTargets(train, cfg.random_targets, full.num_classes, cfg.seed)
    for task, fraction in cfg.labelled_fraction.items():
        masks[task] = _keep_fraction(masks.get(task), len(train), fraction, task, cfg.seed)
    if masks:
        train = PartiallyLabelled(train, masks)
    return DataSplits(train=train, val=val, test=test, num_classes=full.num_classes)
