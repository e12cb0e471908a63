"""Users' own data (``data.name: folder``): images and per-task label files, described by ``dataset.yaml``.

Layout (docs/datasets.md, "Your own data: the folder layout")::

    ROOT/dataset.yaml
    ROOT/{train,val,test}/rgb/<id>.{png,jpg,jpeg,npy}
    ROOT/{train,val,test}/<task folder>/<id>.<ext>

``val`` is optional: when present it is the validation split, otherwise ``build_splits`` carves one from ``train``.
Each task of ``dataset.yaml`` is a built-in one or declared by its kind under any name (``auxnas.tasks.kinds``).
A missing label file means that the image is unlabelled for that task: every sample carries
``sample["labelled"] = {task: bool tensor}`` for every task of ``dataset.yaml``, with a placeholder target where the
file is missing (segmentation all ``IGNORE_INDEX``, classes 0, zeros for the other kinds), so that batches collate
and no loss or metric reads it. Samples are otherwise ``SyntheticScenes``'. Every bad file raises one line naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import DataConfig
from .base import IndexedImages, unchecked
from .folder_layout import DATASET_FILE, FolderSpec, read_spec, scan_split
from .folder_read import check_label_size, image_size, placeholder, read_image, read_label, size_mismatch
from .transforms import augment, normalise, resize


class FolderImages(IndexedImages):
    """One split (``train``, ``val`` or ``test``) of a folder dataset; samples like ``SyntheticScenes``' plus
    ``"labelled"``: ``{task: bool}`` for every task.

    ``size``: the (H, W) every image must have (None: the first image's); with ``size`` in dataset.yaml every image
    and label is resized to it instead. The layout (folders, extensions, labels without an image, duplicate ids) is
    checked here; the contents of a file when it is first read. Every error names the file.
    """

    def __init__(
        self, root: str | os.PathLike, split: str, spec: FolderSpec | None = None, augment: bool = False,
        size: tuple[int, int] | None = None,
    ) -> None:
        self.spec = spec if spec is not None else read_spec(root)
        found = scan_split(self.spec, split)
        if found.problems:
            raise found.problems[0]
        self.split_dir, self.files, self.ids = found.split_dir, found.files, found.ids
        self.augment = augment
        self.indices = np.arange(len(self.ids))
        self.checked = unchecked(len(self.ids))
        #: task -> bool over ``ids``: which images carry its label
        self.has_label = {task: np.array([i in found.files[task] for i in self.ids], dtype=bool)
                          for task in self.spec.tasks}
        self.size: tuple[int, int] = self.spec.size or size or image_size(self.files["image"][self.ids[0]])
        self.label_kinds = self.spec.kinds

    @property
    def num_classes(self) -> dict[str, Any]:
        """The task table (``FolderSpec.num_classes``)."""
        return self.spec.num_classes

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.spec.tasks)

    def image_names(self) -> list[str]:
        return [self.ids[j] for j in self.indices]

    def label_masks(self) -> dict[str, np.ndarray]:
        """Task -> bool over this view's images: which carry its label (a file exists)."""
        return {task: mask[self.indices] for task, mask in self.has_label.items()}

    def label_counts(self) -> dict[str, int]:
        """Task -> number of this view's images that carry its label."""
        return {task: int(mask.sum()) for task, mask in self.label_masks().items()}

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = int(self.indices[i])
        check = not self.checked[j]
        image_id = self.ids[j]
        image_path = self.files["image"][image_id]
        image = read_image(image_path, check)
        native = tuple(image.shape[-2:])
        if self.spec.size is None and native != self.size:
            raise size_mismatch(image_path, native, self.size)
        sample = {"image": resize("image", image, self.size)}
        labelled = {}
        for task, spec in self.spec.tasks.items():
            path = self.files[task].get(image_id)
            labelled[task] = torch.tensor(path is not None)
            if path is None:
                sample[task] = placeholder(spec, self.size)
                continue
            label = read_label(spec, path, check)
            check_label_size(path, label, image_path, native)
            sample[task] = resize(task, label, self.size, self.label_kinds)
        self.checked[j] = True
        if self.augment:
            sample = augment(sample, kinds=self.label_kinds)
        sample["image"] = normalise(sample["image"])
        sample["labelled"] = labelled
        return sample


def tasks(cfg: DataConfig) -> tuple[str, ...]:
    """The tasks ``ROOT/dataset.yaml`` names."""
    return tuple(read_spec(cfg.root).tasks)


def kinds(cfg: DataConfig) -> dict[str, str]:
    """Task -> kind of every task ``ROOT/dataset.yaml`` declares."""
    return read_spec(cfg.root).kinds


def absent(cfg: DataConfig, task: str) -> str:
    """Why a folder dataset has no ``task`` targets: its dataset.yaml does not name the task."""
    return f"{Path(cfg.root) / DATASET_FILE} names no {task} task"


def open_splits(cfg: DataConfig) -> tuple[FolderImages, FolderImages | None, FolderImages]:
    """``train``, ``val`` (None when ``ROOT/val`` does not exist: ``build_splits`` carves one) and ``test``."""
    spec = read_spec(cfg.root)
    train = FolderImages(spec.root, "train", spec)
    val = FolderImages(spec.root, "val", spec, size=train.size) if (spec.root / "val").is_dir() else None
    return train, val, FolderImages(spec.root, "test", spec, size=train.size)
