"""Reader of Taskonomy in its public per-building, per-domain layout (``data.name: taskonomy``; docs/datasets.md).

Each building holds one folder per domain, either as ``ROOT/BUILDING/DOMAIN/`` (how the per-building archives unpack)
or as ``ROOT/DOMAIN/BUILDING/`` (chosen when ``ROOT/rgb/`` exists), with one file per camera view::

    rgb/point_P_view_V_domain_rgb.png                           8-bit RGB, 512 x 512 in the public release
    segment_semantic/point_P_view_V_domain_segment_semantic.png 8-bit, 0 = unlabelled, 1..17 = classes 0..16
    normal/point_P_view_V_domain_normal.png                     8-bit RGB, (n + 1) * 127.5
    depth_zbuffer/point_P_view_V_domain_depth_zbuffer.png       16-bit, 1/512 m; 0 and >= 64500 = invalid
    class_object/point_P_view_V_domain_class_object.npy         1000 ImageNet class probabilities
    class_scene/point_P_view_V_domain_class_scene.npy           365 Places class probabilities

(Only the ``point_P_view_V`` part of a label's name has to match its image: ``segmentsemantic`` spellings work.)
Which label domains a run gets: those whose folder exists in every building of the splits; ``rgb`` is required.

Splits are formed by buildings: ``data.taskonomy_split`` names a CSV with columns ``id,train,val,test`` and a 1 in
the column of each building's split (Taskonomy's ``train_val_test_{tiny,medium,full,fullplus}.csv``); buildings
with no 1 are not used.

Every sample is resized to ``data.image_size`` square: the image bilinearly (with antialiasing), the dense labels
by nearest neighbour (depth values unchanged, normals renormalised). A normal is invalid (zero) where the depth is
invalid, when depth_zbuffer is there, as in Taskonomy's own loaders. ``object`` / ``scene`` are the soft labels the
dataset stores: float32 vectors of 1000 / 365 probabilities summing to 1 (a vector with negative entries is taken as
logits and softmaxed).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import DataConfig
from .base import IndexedImages, unchecked
from .files import (
    check_values,
    decode_normals,
    image_tensor,
    label_plane,
    read_npy,
    read_png,
    resize_nearest,
    rgb_array,
)
from .synthetic import IGNORE_INDEX
from .transforms import augment, normalise

#: sample key -> Taskonomy domain folder (``image`` required, the others when present)
DOMAINS = {"image": "rgb", "seg": "segment_semantic", "normal": "normal", "depth": "depth_zbuffer",
           "object": "class_object", "scene": "class_scene"}
#: class counts: segment_semantic 17 (file values 1..17), ImageNet objects, Places365 scenes
NUM_CLASSES = {"seg": 17, "object": 1000, "scene": 365}
#: depth_zbuffer: metres per unit, and the first invalid value (65535 is the documented 128 m maximum range;
#: Taskonomy's own loaders treat every value from 64500 on as invalid)
DEPTH_UNIT = 1 / 512
DEPTH_INVALID_FROM = 64500
#: the splits of the split CSV, in the order ``open_splits`` returns them
SPLITS = ("train", "val", "test")
LAYOUT = ("ROOT/BUILDING/DOMAIN/point_P_view_V_domain_DOMAIN.{png,npy} (or ROOT/DOMAIN/BUILDING/...) with DOMAIN in "
          + ", ".join(DOMAINS.values()))
_NAME = re.compile(r"point_(\d+)_view_(\d+)_domain_([A-Za-z0-9_]+)\.(png|npy)")


def split_file(cfg: DataConfig) -> Path:
    """The building split CSV: ``data.taskonomy_split``, relative to ``data.root`` unless absolute."""
    path = Path(cfg.taskonomy_split).expanduser()
    return path if path.is_absolute() else Path(cfg.root) / path


def read_split_file(path: Path) -> dict[str, list[str]]:
    """``train`` / ``val`` / ``test`` -> the buildings of that split in a split CSV (``id,train,val,test``; spaces
    around the values are ignored)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = csv.reader(f)
            rows = [(lines.line_num, [cell.strip() for cell in row]) for row in lines if row]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing split file (data.taskonomy_split: a CSV with columns id,train,val,"
                                "test such as Taskonomy's train_val_test_tiny.csv)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: unreadable split file ({err})") from None
    columns = ("id", *SPLITS)
    header = rows[0][1] if rows else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: expected a CSV with the columns {','.join(columns)}, got "
                         f"{','.join(header) if header else 'nothing'} (no column {', '.join(missing)})")
    position = {c: header.index(c) for c in columns}
    buildings: dict[str, list[str]] = {split: [] for split in SPLITS}
    for number, row in rows[1:]:
        cell = {c: row[i] if i < len(row) else "" for c, i in position.items()}
        flags = [cell[split] for split in SPLITS]
        if any(flag not in ("0", "1") for flag in flags) or flags.count("1") > 1:
            raise ValueError(f"{path}:{number}: expected 0/1 in {','.join(SPLITS)} with at most one 1, got "
                             f"{','.join(flags)}")
        if "1" in flags:
            buildings[SPLITS[flags.index("1")]].append(cell["id"])
    for split in ("train", "test"):
        if not buildings[split]:
            raise ValueError(f"{path}: no {split} building (no row with {split}=1)")
    return buildings


def domain_dir(root: Path, building: str, domain: str) -> Path:
    """The folder of one domain of one building, in either layout."""
    return root / domain / building if (root / "rgb").is_dir() else root / building / domain


def _missing_building(folder: Path, building: str) -> FileNotFoundError:
    return FileNotFoundError(f"{folder}: missing folder of building {building} (the taskonomy layout is {LAYOUT})")


def available(root: Path, buildings: list[str]) -> tuple[str, ...]:
    """The sample keys whose domain folder exists in every one of ``buildings`` (``image``, which every building
    must have, first)."""
    for building in buildings:
        if not domain_dir(root, building, DOMAINS["image"]).is_dir():
            raise _missing_building(domain_dir(root, building, DOMAINS["image"]), building)
    return ("image", *(key for key, domain in DOMAINS.items()
                       if key != "image" and all(domain_dir(root, b, domain).is_dir() for b in buildings)))


def _views(folder: Path) -> tuple[dict[tuple[int, int], str], str | None]:
    """(point, view) -> file name of every Taskonomy file of ``folder``, and the name suffix after ``_domain_``."""
    found, suffixes = {}, set()
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _NAME.fullmatch(entry.name)
            if match:
                found[int(match[1]), int(match[2])] = entry.name
                suffixes.add(f"{match[3]}.{match[4]}")
    if len(suffixes) > 1:
        raise ValueError(f"{folder}: files of several kinds ({', '.join(sorted(suffixes))}); keep one domain per "
                         "folder")
    return found, suffixes.pop() if suffixes else None


class TaskonomyImages(IndexedImages):
    """The views of some Taskonomy buildings; samples like ``SyntheticScenes``': ``image``, and of ``keys`` ``seg``
    (H x W int64, 255 = ignore), ``normal`` (3 x H x W unit vectors, 0 = invalid), ``depth`` (1 x H x W metres,
    0 = invalid), ``object`` and ``scene`` (float32 probability vectors of 1000 / 365 classes).

    Every sample is resized to ``image_size`` square. Files are listed when the split is opened (a building without
    a file of some domain for one of its views is an error naming the file) and read on access; a file that is
    unreadable, of the wrong shape or holds values outside its encoding raises ``ValueError`` naming it.
    """

    def __init__(
        self, root: str | os.PathLike, buildings: list[str], keys: tuple[str, ...], image_size: int,
        augment: bool = False,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data.root: {root} is not a folder (expected the taskonomy layout {LAYOUT})")
        self.root, self.keys, self.augment = root, keys, augment
        self.size: tuple[int, int] = (image_size, image_size)
        self.buildings = list(buildings)
        #: per building: sample key -> its folder, and the file name after ``point_P_view_V_domain_``
        self.folders: list[dict[str, Path]] = []
        self.suffixes: list[dict[str, str]] = []
        views = []
        for b, building in enumerate(self.buildings):
            folders = {key: domain_dir(root, building, DOMAINS[key]) for key in keys}
            for folder in folders.values():
                if not folder.is_dir():
                    raise _missing_building(folder, building)
            self.folders.append(folders)
            found = {key: _views(folder) for key, folder in folders.items()}
            images, _ = found["image"]
            if not images:
                raise FileNotFoundError(f"{folders['image']}: no point_P_view_V_domain_rgb.png images")
            self.suffixes.append({key: suffix for key, (_, suffix) in found.items()})
            for key, (files, suffix) in found.items():
                missing = sorted(set(images) - set(files))
                if missing:
                    point, view = missing[0]
                    kind = suffix or f"{DOMAINS[key]}.{'npy' if key in ('object', 'scene') else 'png'}"
                    name = f"point_{point}_view_{view}_domain_{kind}"
                    raise FileNotFoundError(f"{folders[key] / name}: missing file ({len(missing)} of the "
                                            f"{len(images)} views of building {building} have no {DOMAINS[key]} file)")
            views.extend((b, point, view) for point, view in sorted(images))
        self.views = np.array(views, dtype=np.int64).reshape(-1, 3)
        self.indices = np.arange(len(self.views))
        self.checked = unchecked(len(self.views))

    @property
    def num_classes(self) -> dict[str, int]:
        return {key: count for key, count in NUM_CLASSES.items() if key in self.keys}

    def image_names(self) -> list[str]:
        return [f"{self.buildings[b]}/point_{p}_view_{v}" for b, p, v in self.views[self.indices].tolist()]

    def path(self, key: str, index: int) -> Path:
        """The file of sample key ``key`` of view ``index`` (a position in ``views``)."""
        b, point, view = (int(v) for v in self.views[index])
        return self.folders[b][key] / f"point_{point}_view_{view}_domain_{self.suffixes[b][key]}"

    def _image(self, array: np.ndarray) -> torch.Tensor:
        if array.shape[:2] != self.size:
            resized = Image.fromarray(array).resize(self.size[::-1], Image.BILINEAR)
            return image_tensor(np.array(resized))
        return image_tensor(array)

    @staticmethod
    def _dense(path: Path, shape: tuple[int, int]) -> np.ndarray:
        """A dense label file at ``path``, checked against its image's ``shape`` (resize it with ``resize_nearest``
        once its kind is checked, so that errors give the file's own shape)."""
        array = read_png(path)
        if array.shape[:2] != shape:
            raise ValueError(f"{path}: expected the size {shape} of its rgb image, got shape {array.shape}")
        return array

    def _classes(self, key: str, path: Path) -> torch.Tensor:
        values = read_npy(path)
        count = NUM_CLASSES[key]
        if values.size != count or values.dtype.kind not in "fiu":
            raise ValueError(f"{path}: expected {count} class probabilities, got shape {values.shape} dtype "
                             f"{values.dtype}")
        values = values.reshape(count).astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{path}: non-finite class scores")
        if values.min() < 0:  # logits: softmax
            values = np.exp(values - values.max())
        total = values.sum()
        if total <= 0:
            raise ValueError(f"{path}: class probabilities sum to {total}; expected a distribution")
        return torch.from_numpy((values / total).astype(np.float32))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index = int(self.indices[i])
        check = not self.checked[index]
        image = rgb_array(self.path("image", index))
        shape = image.shape[:2]
        sample = {"image": self._image(image)}
        depth_invalid = None
        if "depth" in self.keys:
            path = self.path("depth", index)
            raw = self._dense(path, shape)
            if raw.ndim != 2 or raw.dtype.kind not in "iu" or (raw.dtype.itemsize < 2):
                hint = "; an 8-bit copy of it has lost the depth: use the original file" if raw.itemsize == 1 else ""
                raise ValueError(f"{path}: expected a 16-bit one-channel depth PNG (units of 1/512 m), got shape "
                                 f"{raw.shape} dtype {raw.dtype}{hint}")
            raw = resize_nearest(raw, self.size)
            depth_invalid = (raw >= DEPTH_INVALID_FROM) | (raw == 0)
            metres = np.where(depth_invalid, 0, raw).astype(np.float32) * np.float32(DEPTH_UNIT)
            sample["depth"] = torch.from_numpy(metres)[None]
        if "seg" in self.keys:
            path = self.path("seg", index)
            labels = label_plane(self._dense(path, shape), path)
            if check:
                check_values(path, labels, "labels", f"0 (unlabelled) or 1..{NUM_CLASSES['seg']}", 0,
                             NUM_CLASSES["seg"], integers=True)
            labels = resize_nearest(labels, self.size).astype(np.int64)
            sample["seg"] = torch.from_numpy(np.where(labels == 0, IGNORE_INDEX, labels - 1))
        if "normal" in self.keys:
            path = self.path("normal", index)
            encoded = self._dense(path, shape)
            if encoded.ndim != 3 or encoded.shape[2] != 3 or encoded.dtype != np.uint8:
                raise ValueError(f"{path}: expected an 8-bit RGB normal image, got shape {encoded.shape} dtype "
                                 f"{encoded.dtype}")
            sample["normal"] = decode_normals(resize_nearest(encoded, self.size), depth_invalid)
        for key in ("object", "scene"):
            if key in self.keys:
                sample[key] = self._classes(key, self.path(key, index))
        self.checked[index] = True
        if self.augment:
            sample = augment(sample)
        sample["image"] = normalise(sample["image"])
        return sample


def _splits(cfg: DataConfig) -> tuple[Path, dict[str, list[str]]]:
    """``data.root`` and the buildings of each split of its split file."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: {root} is not a folder (expected the taskonomy layout {LAYOUT})")
    return root, read_split_file(split_file(cfg))


def tasks(cfg: DataConfig) -> tuple[str, ...]:
    """The tasks whose domain folder every building of the splits has (all of them while ``data.root`` is not there:
    opening the splits then reports the missing folder)."""
    if cfg.root is None or not Path(cfg.root).is_dir():
        return tuple(key for key in DOMAINS if key != "image")
    root, buildings = _splits(cfg)
    return available(root, [b for split in SPLITS for b in buildings[split]])[1:]


def _squashed(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def absent(cfg: DataConfig, task: str) -> str:
    """Why the buildings of the splits have no ``task`` targets: the domain folder looked for, and a folder of a
    near-miss name (``segmentsemantic`` for ``segment_semantic``) beside it."""
    domain = DOMAINS.get(task)
    if domain is None or cfg.root is None or not Path(cfg.root).is_dir():
        return ""
    root, buildings = _splits(cfg)
    for building in (b for split in SPLITS for b in buildings[split]):
        folder = domain_dir(root, building, domain)
        if not folder.is_dir():
            home = root if (root / DOMAINS["image"]).is_dir() else root / building
            near = sorted(e.name for e in os.scandir(home) if e.is_dir() and e.name != domain
                          and _squashed(e.name) == _squashed(domain))
            hint = f"; {home / near[0]} is there: rename it {domain}" if near else ""
            return f"no folder {folder}{hint}"
    return ""


def open_splits(cfg: DataConfig) -> tuple[TaskonomyImages, TaskonomyImages | None, TaskonomyImages]:
    """The views of the split file's train, val (None when it lists no val building: ``build_splits`` carves the
    validation images from train) and test buildings, at ``data.image_size`` square."""
    root, buildings = _splits(cfg)
    keys = available(root, [b for split in SPLITS for b in buildings[split]])
    opened = {split: TaskonomyImages(root, buildings[split], keys, cfg.image_size) if buildings[split] else None
              for split in SPLITS}
    return opened["train"], opened["val"], opened["test"]
