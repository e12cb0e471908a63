"""Reader of NYUv2 in the NDDR preprocessing: 40 classes at 480 x 640, the data of NDDR-CNN, MTL-NAS, AdaShare and
the Aux-NAS paper (``data.name: nyuv2_nddr``; docs/datasets.md).

Two layouts under ``data.root``, chosen by whether ``ROOT/list/`` exists:

* folders: ``ROOT/{training,testing}/img/NAME.png`` with ``seg/NAME.png``, ``normal_mask/NAME.png`` and, optionally,
  ``depth/NAME.npy`` beside ``img/``;
* list files (the form NDDR-CNN and MTL-NAS read): ``ROOT/list/{training,testing}_{seg,normal_mask}.txt``, one
  ``IMAGE LABEL`` pair of paths relative to ``ROOT`` per line (a leading ``/`` is allowed), the images of both lists
  the same line by line; optionally ``ROOT/list/{training,testing}_depth.txt`` of ``IMAGE DEPTH.npy`` pairs.

Files: ``img`` 8-bit RGB; ``seg`` 8-bit classes 0..39, 255 = ignore; ``normal_mask`` 8-bit RGB encoding a unit
normal ``n`` as ``(n + 1) * 127.5``, (255, 255, 255) = invalid, grey pixels such as (127, 127, 127) kept as their
short decodings (``tasks.nddr_grey_normals`` decides about them); ``depth`` float (H, W) metres, 0 = invalid.
``training`` is the training split (the validation split is carved from it), ``testing`` the test split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from .base import IndexedImages, unchecked
from .files import (
    check_shape,
    check_values,
    decode_normals,
    image_tensor,
    label_plane,
    png_size,
    read_npy,
    read_png,
    rgb_array,
)
from .synthetic import IGNORE_INDEX
from .transforms import augment, normalise

NUM_CLASSES = 40
#: the dataset's folders of its training and test images, in this order
SPLITS = ("training", "testing")
#: sample key -> folder name (``depth`` optional)
FOLDERS = {"image": "img", "seg": "seg", "normal": "normal_mask", "depth": "depth"}
#: sample key -> list file suffix of the list-file form (``list/{split}_{suffix}.txt``)
LISTS = {"seg": "seg", "normal": "normal_mask", "depth": "depth"}
LAYOUT = ("ROOT/{training,testing}/{img,seg,normal_mask}/NAME.png [+ depth/NAME.npy], or the list files "
          "ROOT/list/{training,testing}_{seg,normal_mask}.txt [+ _depth.txt]")


def uses_lists(root: Path) -> bool:
    """Whether ``root`` is in the list-file form (``ROOT/list/`` exists) rather than the folder form."""
    return (root / "list").is_dir()


def has_depth(root: Path) -> bool:
    """Whether the training split has depth: ``training/depth/`` or ``list/training_depth.txt``."""
    if uses_lists(root):
        return (root / "list" / f"{SPLITS[0]}_{LISTS['depth']}.txt").is_file()
    return (root / SPLITS[0] / FOLDERS["depth"]).is_dir()


def _names(folder: Path, suffix: str) -> dict[str, Path]:
    """Stem -> file of every ``*{suffix}`` file of ``folder``."""
    with os.scandir(folder) as entries:
        return {e.name[:-len(suffix)]: folder / e.name for e in entries if e.name.endswith(suffix)}


def _folder_files(root: Path, split: str, keys: tuple[str, ...]) -> list[dict[str, Path]]:
    """Files of every image of ``ROOT/split`` in the folder form, sorted by name."""
    split_dir = root / split
    for key in keys:
        if not (split_dir / FOLDERS[key]).is_dir():
            raise FileNotFoundError(f"{split_dir / FOLDERS[key]}: missing folder (the nyuv2_nddr layout is {LAYOUT})")
    images = _names(split_dir / FOLDERS["image"], ".png")
    if not images:
        raise FileNotFoundError(f"{split_dir / FOLDERS['image']}: no .png images")
    files = []
    labels = {key: _names(split_dir / FOLDERS[key], ".npy" if key == "depth" else ".png") for key in keys[1:]}
    for name in sorted(images):
        entry = {"image": images[name]}
        for key, found in labels.items():
            if name not in found:
                suffix = ".npy" if key == "depth" else ".png"
                raise FileNotFoundError(f"{split_dir / FOLDERS[key] / (name + suffix)}: missing file (every "
                                        f"{FOLDERS['image']}/NAME.png of {split_dir} needs "
                                        f"{FOLDERS[key]}/NAME{suffix})")
            entry[key] = found[name]
        files.append(entry)
    return files


def _read_list(path: Path, root: Path) -> list[tuple[Path, Path]]:
    """The (image, label) path pairs of a list file, relative to ``root``."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing list file (the nyuv2_nddr layout is {LAYOUT})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: unreadable list file ({err})") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'IMAGE LABEL' (two paths relative to {root}), got {line!r}")
        pairs.append((root / parts[0].lstrip("/"), root / parts[1].lstrip("/")))
    if not pairs:
        raise ValueError(f"{path}: empty list file")
    return pairs


def _list_files(root: Path, split: str, keys: tuple[str, ...]) -> list[dict[str, Path]]:
    """Files of every image of ``split`` in the list-file form, in list order."""
    lists = {key: root / "list" / f"{split}_{LISTS[key]}.txt" for key in keys[1:]}
    pairs = {key: _read_list(path, root) for key, path in lists.items()}
    first = keys[1]
    files = []
    for i, (image, label) in enumerate(pairs[first]):
        entry = {"image": image, first: label}
        for key in keys[2:]:
            if len(pairs[key]) != len(pairs[first]):
                raise ValueError(f"{lists[key]}: {len(pairs[key])} lines, but {lists[first]} has "
                                 f"{len(pairs[first])}; both list the same images")
            other, entry[key] = pairs[key][i]
            if other != image:
                raise ValueError(f"{lists[key]}: line {i + 1} lists image {other}, {lists[first]} lists {image}; "
                                 "both list the same images in the same order")
        files.append(entry)
    for entry in files:
        for key, path in entry.items():
            if not path.is_file():
                where = lists[first] if key in ("image", first) else lists[key]
                raise FileNotFoundError(f"{path}: missing file (listed in {where})")
    return files


class NddrImages(IndexedImages):
    """One split (``training`` or ``testing``) of NYUv2 in the NDDR preprocessing; samples like ``SyntheticScenes``':
    ``image``, ``seg`` (H x W int64, 255 = ignore), ``normal`` (3 x H x W unit vectors, 0 = invalid) and, with
    depth, ``depth`` (1 x H x W metres, 0 = invalid).

    ``size``: the expected (H, W); None takes it from the first image. ``depth``: read depth (None: when the
    training split has it). With ``augment`` (training only), each sample is randomly scaled, cropped and flipped
    (``transforms.augment``). Files are listed when the split is opened and read on access; a file that is
    unreadable, of the wrong shape or holds values outside its encoding raises ``ValueError`` naming it (values are
    checked on the first read of each image).
    """

    def __init__(
        self, root: str | os.PathLike, split: str, augment: bool = False, size: tuple[int, int] | None = None,
        depth: bool | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data.root: {root} is not a folder (expected the nyuv2_nddr layout {LAYOUT})")
        if split not in SPLITS:
            raise ValueError(f"nyuv2_nddr: unknown split {split!r}; the splits are {', '.join(SPLITS)}")
        depth = has_depth(root) if depth is None else depth
        self.keys: tuple[str, ...] = ("image", "seg", "normal", "depth") if depth else ("image", "seg", "normal")
        self.root, self.split, self.augment = root, split, augment
        self.files = (_list_files if uses_lists(root) else _folder_files)(root, split, self.keys)
        if size is None:
            size = png_size(self.files[0]["image"])
        self.size: tuple[int, int] = tuple(size)
        self.indices = np.arange(len(self.files))
        self.checked = unchecked(len(self.files))

    @property
    def num_classes(self) -> dict[str, int]:
        return {"seg": NUM_CLASSES}

    def load(self, key: str, path: Path, check: bool = True) -> torch.Tensor:
        """Sample key ``key`` from its file ``path``, decoded; with ``check``, its values are checked."""
        if key == "image":
            return image_tensor(check_shape(rgb_array(path), path, self.size, 3, "an RGB image"))
        if key == "seg":
            labels = check_shape(label_plane(read_png(path), path), path, self.size, 1, "a label image")
            if labels.dtype.kind not in "iu":
                raise ValueError(f"{path}: expected a label image of integer classes, got dtype {labels.dtype}")
            if check:
                bad = ((labels >= NUM_CLASSES) & (labels != 255)) | (labels < 0)
                if bad.any():
                    raise ValueError(f"{path}: labels must be classes 0..{NUM_CLASSES - 1} or 255 (ignore), got "
                                     f"{np.unique(labels[bad])[:5].tolist()}")
            return torch.from_numpy(np.where(labels == 255, IGNORE_INDEX, labels).astype(np.int64))
        if key == "normal":
            encoded = check_shape(rgb_array(path), path, self.size, 3, "an RGB normal image")
            invalid = (encoded[..., 0] & encoded[..., 1] & encoded[..., 2]) == 255
            return decode_normals(encoded, invalid, keep_short=True)
        array = read_npy(path)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        check_shape(array, path, self.size, 1, "a depth map")
        if array.dtype.kind not in "fiu":
            raise ValueError(f"{path}: expected a numeric depth map, got dtype {array.dtype}")
        if check:
            check_values(path, array, "depth", "finite and >= 0 (0 = invalid)", low=0,
                         hint="mark invalid pixels with 0")
        return torch.from_numpy(array.astype(np.float32))[None]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = int(self.indices[i])
        check = not self.checked[j]
        sample = {key: self.load(key, self.files[j][key], check) for key in self.keys}
        self.checked[j] = True
        if self.augment:
            sample = augment(sample)
        sample["image"] = normalise(sample["image"])
        return sample


def tasks(cfg: DataConfig) -> tuple[str, ...]:
    """seg and normal, and depth when the training split has it (assumed while ``data.root`` is not there: opening
    the splits then reports the missing folder)."""
    root = Path(cfg.root) if cfg.root is not None else None
    if root is None or not root.is_dir() or has_depth(root):
        return ("seg", "normal", "depth")
    return ("seg", "normal")


def absent(cfg: DataConfig, task: str) -> str:
    """Why ``nyuv2_nddr`` has no ``task`` targets: depth when its files are not there."""
    if task != "depth" or cfg.root is None:
        return ""
    root = Path(cfg.root)
    where = root / "list" / f"{SPLITS[0]}_{LISTS['depth']}.txt" if uses_lists(root) else root / SPLITS[0] / "depth"
    return f"no {where}"


def open_splits(cfg: DataConfig) -> tuple[NddrImages, None, NddrImages]:
    """The ``training`` images, no separate validation images (``build_splits`` carves them from training), and the
    ``testing`` images (the test split of every published result), all of the training images' size."""
    train = NddrImages(cfg.root, SPLITS[0])
    return train, None, NddrImages(cfg.root, SPLITS[1], size=train.size, depth="depth" in train.keys)
