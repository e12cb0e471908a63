"""Readers for datasets stored as a folder of per-index ``.npy`` arrays per task (the MTAN preprocessing).

Layout: ``ROOT/{train,val}/{folder}/{i}.npy`` with ``i = 0 .. N-1``, HWC arrays, one folder per sample key:

* ``nyuv2_mtan``: ``image`` (H, W, 3) in [0, 1], ``label`` (13 classes, -1 ignore) -> ``seg``,
  ``depth`` in metres -> ``depth``, ``normal`` unit vectors -> ``normal``; 795 / 654 images at 288 x 384.
* ``cityscapes``: ``image``, ``label_7`` or ``label_19`` (-1 ignore) -> ``seg``, ``depth`` (which holds
  disparity) -> ``disparity``; 2975 / 500 images at 128 x 256 (or 256 x 512).

Depth, disparity and normals mark invalid pixels with 0, as the tasks expect; -1 labels become ``IGNORE_INDEX``.
The image size is read from the files; every file of a dataset must have it. The values of every file are checked on
its first read (images in [0, 1] or uint8, whole labels in range, finite non-negative depth, unit normals). The
``val`` folder is the test split of every published result; see docs/datasets.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from .base import IndexedImages, unchecked
from .files import channels_first, check_normals, check_values, npy_image, read_npy, vector_norms
from .synthetic import IGNORE_INDEX
from .transforms import augment, normalise

#: dataset name -> the tasks it has targets for
DATASET_TASKS = {"nyuv2_mtan": ("seg", "depth", "normal"), "cityscapes": ("seg", "disparity")}
#: channels of each sample key on disk (1-channel arrays may also be stored as (H, W))
CHANNELS = {"image": 3, "seg": 1, "depth": 1, "disparity": 1, "normal": 3}
#: the norms a stored normal may have besides 0 (invalid): unit vectors, up to resampling (a blend of unit vectors is
#: shorter, a resampling filter may overshoot a little); most of a file's must still be near unit (``check_normals``)
NORMAL_NORMS = (0.0, 1.1)
#: what a task the dataset lacks is called here, where a near-miss exists
NEAR_MISSES = {("nyuv2_mtan", "disparity"): "its depth/ folder holds metric depth: use the task depth",
               ("cityscapes", "depth"): "its depth/ folder holds disparity (inverse depth): use the task disparity"}


@dataclass(frozen=True)
class FolderLayout:
    """A dataset's name, its folder of each sample key (``image`` included) and its class counts."""

    name: str
    folders: dict[str, str]
    num_classes: dict[str, int]

    def describe(self) -> str:
        """The on-disk layout, for error messages."""
        return f"ROOT/{{train,val}}/{{{','.join(self.folders.values())}}}/{{i}}.npy"


def folder_layout(name: str, cityscapes_classes: int = 7) -> FolderLayout:
    """The layout of dataset ``name`` (``nyuv2_mtan`` or ``cityscapes``)."""
    if name == "nyuv2_mtan":
        return FolderLayout(name, {"image": "image", "seg": "label", "depth": "depth", "normal": "normal"}, {"seg": 13})
    if name == "cityscapes":
        folders = {"image": "image", "seg": f"label_{cityscapes_classes}", "disparity": "depth"}
        return FolderLayout(name, folders, {"seg": cityscapes_classes})
    raise ValueError(f"unknown folder dataset {name!r}; known: {', '.join(DATASET_TASKS)}")


def _indices(folder: Path) -> set[int]:
    """The ``i`` of every ``{i}.npy`` in ``folder``."""
    with os.scandir(folder) as entries:
        return {int(e.name[:-4]) for e in entries if e.name.endswith(".npy") and e.name[:-4].isdigit()}


class NpyFolders(IndexedImages):
    """One split (``train`` or ``val`` folder) of a ``FolderLayout`` dataset; samples like ``SyntheticScenes``'.

    ``size``: the expected (H, W); None takes it from ``image/0.npy``. With ``augment`` (training only), each
    sample is randomly scaled, cropped and flipped (``transforms.augment``). Files are read on access; a file
    that is unreadable or of the wrong shape raises ``ValueError`` naming it.
    """

    def __init__(
        self, root: str | os.PathLike, split: str, layout: FolderLayout, augment: bool = False,
        size: tuple[int, int] | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data.root: {root} is not a folder (expected the {layout.name} layout "
                                    f"{layout.describe()})")
        self.split_dir, self.layout, self.augment = root / split, layout, augment
        for folder in layout.folders.values():
            if not (self.split_dir / folder).is_dir():
                raise FileNotFoundError(f"{self.split_dir / folder}: missing folder (the {layout.name} layout is "
                                        f"{layout.describe()})")
        image_dir = self.split_dir / layout.folders["image"]
        found = _indices(image_dir)
        if not found:
            raise FileNotFoundError(f"{image_dir}: no {{i}}.npy files")
        count = max(found) + 1
        for folder in layout.folders.values():
            missing = set(range(count)) - (found if folder == layout.folders["image"] else _indices(
                self.split_dir / folder))
            if missing:
                raise FileNotFoundError(f"{self.split_dir / folder / f'{min(missing)}.npy'}: missing file (expected "
                                        f"0.npy .. {count - 1}.npy in every folder of {self.split_dir})")
        first = image_dir / "0.npy"
        shape = read_npy(first, mmap=True).shape
        if size is None and len(shape) == 3 and shape[2] == 3:
            size = shape[0], shape[1]
        if size is None or shape != (*size, 3):
            raise ValueError(f"{first}: expected an image of shape {(*size, 3) if size else '(H, W, 3)'}, got {shape}"
                             f"{channels_first(shape, 3)}")
        self.size: tuple[int, int] = size
        self.indices = np.arange(count)
        self.checked = unchecked(count)

    @property
    def num_classes(self) -> dict[str, int]:
        return dict(self.layout.num_classes)

    def load(self, key: str, index: int, check: bool = True) -> torch.Tensor:
        """Sample key ``key`` of image ``index`` as a CHW float tensor (``seg``: HxW int64, -1 -> IGNORE_INDEX); with
        ``check``, its values are checked."""
        path = self.split_dir / self.layout.folders[key] / f"{index}.npy"
        array = read_npy(path)
        (height, width), channels = self.size, CHANNELS[key]
        if channels == 1 and array.shape == (height, width):
            array = array[..., None]
        if array.shape != (height, width, channels):
            expected = f"{(height, width, 1)} or {(height, width)}" if channels == 1 else f"{(height, width, 3)}"
            raise ValueError(f"{path}: expected shape {expected}, got {array.shape}"
                             f"{channels_first(array.shape, channels)}")
        if array.dtype.kind not in "fiu":
            raise ValueError(f"{path}: expected a numeric array, got dtype {array.dtype}")
        if key == "image":
            return npy_image(path, array, check)
        if key == "seg":
            if check:
                classes = self.layout.num_classes["seg"]
                check_values(path, array[..., 0], "labels", f"-1 (ignore) or classes 0..{classes - 1}", -1,
                             classes - 1, integers=True)
            return torch.from_numpy(np.where(array[..., 0] < 0, IGNORE_INDEX, array[..., 0]).astype(np.int64))
        if check and key == "normal":
            check_normals(path, array, vector_norms(array), *NORMAL_NORMS)
        elif check:
            check_values(path, array, key, "finite and >= 0 (0 = invalid)", low=0, hint="mark invalid pixels with 0")
        return torch.from_numpy(array.astype(np.float32, copy=False)).permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = int(self.indices[i])
        check = not self.checked[j]
        sample = {key: self.load(key, j, check) for key in self.layout.folders}
        self.checked[j] = True
        if self.augment:
            sample = augment(sample)
        sample["image"] = normalise(sample["image"])
        return sample


def tasks(cfg: DataConfig) -> tuple[str, ...]:
    """The tasks ``nyuv2_mtan`` / ``cityscapes`` have targets for."""
    return DATASET_TASKS[cfg.name]


def absent(cfg: DataConfig, task: str) -> str:
    """Why ``nyuv2_mtan`` / ``cityscapes`` has no ``task`` targets, where another task is what was meant."""
    return NEAR_MISSES.get((cfg.name, task), "")


def open_splits(cfg: DataConfig) -> tuple[NpyFolders, None, NpyFolders]:
    """The ``train`` folder, no validation split (``build_splits`` carves it from ``train``) and the ``val`` folder
    (the test split of every published result)."""
    layout = folder_layout(cfg.name, cfg.cityscapes_classes)
    train = NpyFolders(cfg.root, "train", layout)
    return train, None, NpyFolders(cfg.root, "val", layout, size=train.size)
