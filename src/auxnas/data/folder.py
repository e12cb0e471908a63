"""Users' own data (``data.name: folder``): images and per-task label files, described by ``dataset.yaml``.

Layout (docs/datasets.md, "Your own data: the folder layout")::

    ROOT/dataset.yaml
    ROOT/{train,val,test}/rgb/<id>.{png,jpg,jpeg,npy}
    ROOT/{train,val,test}/<task folder>/<id>.<ext>

``val`` is optional: when present it is the validation split, otherwise ``build_splits`` carves one from ``train``.
A missing label file means that the image is unlabelled for that task: every sample carries
``sample["labelled"] = {task: bool tensor}`` for every task of ``dataset.yaml``, with a placeholder target where the
file is missing (segmentation all ``IGNORE_INDEX``, dense labels zeros, classes 0), so that batches collate and no
loss or metric reads it. Samples are otherwise ``SyntheticScenes``'. Every bad file raises one line naming it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..config import DataConfig
from ..tasks import TASK_NAMES
from .base import IndexedImages, unchecked
from .files import (
    channels_first,
    check_normals,
    check_values,
    decode_normals,
    image_tensor,
    label_plane,
    npy_image,
    png_size,
    read_npy,
    read_png,
    rgb_array,
    vector_norms,
)
from .synthetic import IGNORE_INDEX
from .transforms import augment, normalise, resize

DATASET_FILE = "dataset.yaml"
#: the folder of the images in every split
IMAGE_FOLDER = "rgb"
#: the splits a folder dataset may hold; ``val`` is optional
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
#: the keys of dataset.yaml, and those of each task (every task also takes ``folder``)
TOP_KEYS = ("tasks", "size")
TASK_KEYS = {"seg": ("classes", "ignore"), "normal": ("encoding",), "depth": ("scale",), "disparity": ("scale",),
             "object": ("classes",), "scene": ("classes",)}
CLASS_TASKS = ("seg", "object", "scene")
NORMAL_ENCODINGS = ("unit", "rgb8")
#: a unit normal read from .npy may deviate this much from norm 1
UNIT_TOLERANCE = 0.01
LAYOUT = "ROOT/dataset.yaml, ROOT/{train,test}[,val]/rgb/<id>.png|jpg|npy, ROOT/<split>/<task folder>/<id>.<ext>"


@dataclass(frozen=True)
class TaskSpec:
    """One task of ``dataset.yaml``: its label folder and how its files decode.

    ``classes``: seg, object, scene; ``ignore``: the seg label value of unlabelled pixels (-> ``IGNORE_INDEX``);
    ``encoding``: normals, ``unit`` (.npy unit vectors) or ``rgb8`` (PNG, ``(n + 1) * 127.5``); ``scale``: depth and
    disparity, the divisor of 16-bit PNG values (.npy files hold the values themselves).
    """

    name: str
    folder: str
    classes: int | None = None
    ignore: int = 255
    encoding: str = "unit"
    scale: float = 1000.0

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The label file extensions this task accepts."""
        if self.name == "normal":
            return (".npy",) if self.encoding == "unit" else (".png",)
        return (".txt", ".npy") if self.name in ("object", "scene") else (".png", ".npy")


@dataclass(frozen=True)
class FolderSpec:
    """``dataset.yaml`` of a folder dataset: its tasks and the optional common size (H, W) of every image."""

    root: Path
    tasks: dict[str, TaskSpec]
    size: tuple[int, int] | None = None

    @property
    def num_classes(self) -> dict[str, int]:
        return {name: t.classes for name, t in self.tasks.items() if t.classes is not None}


def read_spec(root: str | os.PathLike) -> FolderSpec:
    """Read and validate ``ROOT/dataset.yaml``; every error is one line naming the file and the key."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: {root} is not a folder (the folder layout is {LAYOUT})")
    path = root / DATASET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing file; it names the tasks of the folder layout (docs/datasets.md)")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None

    def fail(key: str, message: str) -> ValueError:
        return ValueError(f"{path}: {key}: {message}")

    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with the keys {', '.join(TOP_KEYS)}, got {data!r:.60}")
    for key in data:
        if key not in TOP_KEYS:
            raise fail(str(key), f"unknown key; valid keys: {', '.join(TOP_KEYS)}")
    if not isinstance(data.get("tasks"), dict) or not data["tasks"]:
        raise fail("tasks", "required: a mapping of task names (seg, normal, ...) to their settings")
    specs, folders = {}, {}
    for name, settings in data["tasks"].items():
        where = f"tasks.{name}"
        if name not in TASK_KEYS:
            what = "a task of the synthetic scenes only" if name in TASK_NAMES else "unknown task"
            raise fail(where, f"{what}; valid tasks: {', '.join(TASK_KEYS)}")
        settings = {} if settings is None else settings
        if not isinstance(settings, dict):
            raise fail(where, f"expected a mapping of settings (or nothing), got {settings!r:.60}")
        valid = ("folder", *TASK_KEYS[name])
        for key in settings:
            if key not in valid:
                raise fail(f"{where}.{key}", f"unknown key; valid keys of {name}: {', '.join(valid)}")
        spec = _task_spec(name, settings, lambda key, message, w=where: fail(f"{w}.{key}", message))
        if spec.folder in folders or spec.folder == IMAGE_FOLDER:
            other = "the images" if spec.folder == IMAGE_FOLDER else f"tasks.{folders[spec.folder]}"
            raise fail(f"{where}.folder", f"{spec.folder!r} is already the folder of {other}")
        specs[name], folders[spec.folder] = spec, name
    size = data.get("size")
    if size is not None:
        if (not isinstance(size, list) or len(size) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
            raise fail("size", f"expected [height, width], two positive integers, got {size!r}")
        size = (size[0], size[1])
    return FolderSpec(root, specs, size)


def _task_spec(name: str, settings: dict[str, Any], fail) -> TaskSpec:
    """The ``TaskSpec`` of one task's validated settings; ``fail(key, message)`` builds the error."""
    folder = settings.get("folder", name)
    if not isinstance(folder, str) or not folder or folder.startswith(".") or "/" in folder or "\\" in folder:
        raise fail("folder", f"expected the name of a folder inside each split, got {folder!r}")
    kwargs: dict[str, Any] = {"name": name, "folder": folder}
    if name in CLASS_TASKS:
        classes = settings.get("classes")
        if classes is None:
            raise fail("classes", f"required for {name}: the number of classes")
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 2:
            raise fail("classes", f"expected an integer >= 2, got {classes!r}")
        if name == "seg" and classes > IGNORE_INDEX:
            raise fail("classes", f"at most {IGNORE_INDEX} ({IGNORE_INDEX} is the ignore index), got {classes}")
        kwargs["classes"] = classes
    if name == "seg":
        ignore = settings.get("ignore", 255)
        if not isinstance(ignore, int) or isinstance(ignore, bool) or 0 <= ignore < kwargs["classes"]:
            raise fail("ignore", f"expected an integer label value outside the classes 0..{kwargs['classes'] - 1}, "
                                 f"got {ignore!r}")
        kwargs["ignore"] = ignore
    if name == "normal":
        encoding = settings.get("encoding")
        if encoding not in NORMAL_ENCODINGS:
            raise fail("encoding", f"required: unit (.npy unit vectors) or rgb8 (PNG, (n + 1) * 127.5), "
                                   f"got {encoding!r}")
        kwargs["encoding"] = encoding
    if name in ("depth", "disparity"):
        scale = settings.get("scale", 1000.0)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale < float("inf"):
            raise fail("scale", f"expected a positive number (16-bit PNG value / scale), got {scale!r}")
        kwargs["scale"] = float(scale)
    return TaskSpec(**kwargs)


def _natural(name: str) -> list:
    """Sort key: digit runs compare as numbers (``2`` before ``10``)."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name))]


@dataclass
class SplitFiles:
    """The files of one split: ``files[key][id]`` for ``key`` "image" and each task; ``problems`` found on the way."""

    split_dir: Path
    ids: list[str]
    files: dict[str, dict[str, Path]]
    problems: list[OSError | ValueError]


def _list_folder(folder: Path, suffixes: tuple[str, ...], what: str, problems: list) -> dict[str, Path]:
    """Id -> file of ``folder`` (hidden files skipped); unknown extensions and duplicate ids go to ``problems``."""
    found: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        names = sorted((e.name, e.is_file()) for e in entries if not e.name.startswith("."))
    for name, is_file in names:
        path = folder / name
        stem, suffix = os.path.splitext(name)
        if not is_file:
            problems.append(ValueError(f"{path}: unexpected folder inside {folder}"))
        elif suffix.lower() not in suffixes:
            problems.append(ValueError(f"{path}: unknown extension {suffix!r} ({what}: {', '.join(suffixes)})"))
        elif stem in found:
            problems.append(ValueError(f"{found[stem]} and {path}: two files for image {stem!r}; keep one"))
        else:
            found[stem] = path
    return found


def scan_split(spec: FolderSpec, split: str) -> SplitFiles:
    """List the image and label files of ``ROOT/split`` without reading them; collect every layout problem."""
    split_dir = spec.root / split
    problems: list[OSError | ValueError] = []
    files: dict[str, dict[str, Path]] = {"image": {}, **{task: {} for task in spec.tasks}}
    if not split_dir.is_dir():
        problems.append(FileNotFoundError(f"{split_dir}: missing folder (the folder layout is {LAYOUT})"))
        return SplitFiles(split_dir, [], files, problems)
    image_dir = split_dir / IMAGE_FOLDER
    if image_dir.is_dir():
        files["image"] = _list_folder(image_dir, IMAGE_SUFFIXES, "images", problems)
        if not files["image"] and not problems:
            problems.append(FileNotFoundError(f"{image_dir}: no images"))
    else:
        problems.append(FileNotFoundError(f"{image_dir}: missing folder of the {split} images"))
    for task, task_spec in spec.tasks.items():
        folder = split_dir / task_spec.folder
        if not folder.is_dir():
            problems.append(FileNotFoundError(
                f"{folder}: missing folder of the {task} labels (dataset.yaml names {task}; an empty folder means "
                f"that no {split} image has the label)"))
            continue
        files[task] = _list_folder(folder, task_spec.suffixes, f"{task} labels", problems)
        for image_id, path in files[task].items():
            if image_id not in files["image"] and image_dir.is_dir():
                problems.append(ValueError(f"{path}: label without an image ({image_id}.* missing in {image_dir})"))
    return SplitFiles(split_dir, sorted(files["image"], key=_natural), files, problems)


def _npy(path: Path, ndim_channels: int) -> np.ndarray:
    """An .npy array of shape (H, W, channels) (or (H, W) for one channel), as (H, W, channels); numeric."""
    array = read_npy(path)
    if ndim_channels == 1 and array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] != ndim_channels:
        expected = "(H, W) or (H, W, 1)" if ndim_channels == 1 else f"(H, W, {ndim_channels})"
        raise ValueError(f"{path}: expected shape {expected}, got {array.shape}"
                         f"{channels_first(array.shape, ndim_channels)}")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    return array


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    if path.suffix.lower() != ".npy":
        return png_size(path)
    shape = read_npy(path, mmap=True).shape
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{path}: expected shape (H, W, 3), got {shape}{channels_first(shape, 3)}")
    return shape[0], shape[1]


def read_image(path: Path, check: bool = True) -> torch.Tensor:
    """An image file as a 3 x H x W float tensor in [0, 1]: 8-bit RGB PNG / JPG, or .npy (H, W, 3) float in [0, 1]
    or uint8 (``files.npy_image``); with ``check``, the values of a .npy file are checked."""
    if path.suffix.lower() == ".npy":
        return npy_image(path, _npy(path, 3), check)
    return image_tensor(rgb_array(path))


def read_label(spec: TaskSpec, path: Path, check: bool = True) -> torch.Tensor:
    """A label file as the sample's target at its native size; with ``check``, its values are checked.

    seg: H x W int64 (``spec.ignore`` -> ``IGNORE_INDEX``); depth, disparity: 1 x H x W float (0 = invalid);
    normal: 3 x H x W unit vectors (0 = invalid); object, scene: a 0-d int64 class.
    """
    suffix = path.suffix.lower()
    if spec.name in CLASS_TASKS and spec.name != "seg":
        return torch.tensor(_read_class(spec, path, suffix))
    if spec.name == "seg":
        return torch.from_numpy(_read_seg(spec, path, suffix, check))
    if spec.name == "normal":
        return _read_normal(spec, path, check)
    if suffix == ".png":
        array = read_png(path)
        if array.ndim != 2 or array.dtype.kind not in "iu" or array.dtype.itemsize < 2:
            raise ValueError(f"{path}: expected a 16-bit single-channel PNG ({spec.name} x scale), got shape "
                             f"{array.shape} dtype {array.dtype}")
        values = array.astype(np.float32) / np.float32(spec.scale)
    else:
        values = _npy(path, 1)[..., 0]
        if check:
            check_values(path, values, spec.name, "finite and >= 0 (0 = invalid)", low=0,
                         hint="mark invalid pixels with 0")
        values = values.astype(np.float32)
    return torch.from_numpy(values)[None]


def _read_class(spec: TaskSpec, path: Path, suffix: str) -> int:
    if suffix == ".txt":
        try:
            text = path.read_text().strip()
            value = int(text)
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"{path}: expected one integer class, got {path.read_bytes()[:40]!r}") from None
    else:
        array = read_npy(path)
        if array.size != 1 or array.ndim > 1 or array.dtype.kind not in "iu":
            raise ValueError(f"{path}: expected one integer class (an int scalar), got shape {array.shape} "
                             f"dtype {array.dtype}")
        value = int(array.reshape(()))
    if not 0 <= value < spec.classes:
        raise ValueError(f"{path}: class {value} out of range 0..{spec.classes - 1}")
    return value


def _read_seg(spec: TaskSpec, path: Path, suffix: str, check: bool) -> np.ndarray:
    if suffix == ".png":
        labels = label_plane(read_png(path), path)
        if labels.dtype.kind not in "iu":
            raise ValueError(f"{path}: expected a PNG of integer class indices, got dtype {labels.dtype}")
    else:
        labels = _npy(path, 1)[..., 0]
        if check:
            check_values(path, labels, "labels", f"integer classes 0..{spec.classes - 1} or the ignore value "
                         f"{spec.ignore}", integers=True)
    labels = labels.astype(np.int64)
    ignored = labels == spec.ignore
    if check:
        bad = (labels < 0) | (labels >= spec.classes)
        bad &= ~ignored
        if bad.any():
            values = np.unique(labels[bad])
            shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
            raise ValueError(f"{path}: labels must be classes 0..{spec.classes - 1} or the ignore value "
                             f"{spec.ignore}, got {shown}")
    if spec.ignore != IGNORE_INDEX:
        labels[ignored] = IGNORE_INDEX
    return labels


def _read_normal(spec: TaskSpec, path: Path, check: bool) -> torch.Tensor:
    if spec.encoding == "rgb8":
        encoded = rgb_array(path)
        return decode_normals(encoded, invalid=(encoded[..., 0] | encoded[..., 1] | encoded[..., 2]) == 0)
    normals = _npy(path, 3).astype(np.float32)
    norms = vector_norms(normals)
    if check:
        check_normals(path, normals, norms, 1 - UNIT_TOLERANCE, 1 + UNIT_TOLERANCE)
    valid = norms > 0
    unit = np.where(valid[..., None], normals / np.where(valid, norms, 1)[..., None], np.float32(0))
    return torch.from_numpy(unit.astype(np.float32, copy=False)).permute(2, 0, 1).contiguous()


def placeholder(spec: TaskSpec, size: tuple[int, int]) -> torch.Tensor:
    """The target of an image without ``spec``'s label: all ignored (seg), zeros (invalid), class 0."""
    if spec.name == "seg":
        return torch.full(size, IGNORE_INDEX, dtype=torch.int64)
    if spec.name in CLASS_TASKS:
        return torch.tensor(0)
    return torch.zeros(3 if spec.name == "normal" else 1, *size)


def check_label_size(path: Path, label: torch.Tensor, image_path: Path, native: tuple[int, int]) -> None:
    """A dense label must have its image's size."""
    if label.dim() >= 2 and tuple(label.shape[-2:]) != native:
        (h, w), (ih, iw) = label.shape[-2:], native
        raise ValueError(f"{path}: {h}x{w}, but its image {image_path} is {ih}x{iw}")


def size_mismatch(path: Path, native: tuple[int, int], size: tuple[int, int]) -> ValueError:
    """The error of an image whose size differs from the dataset's (without ``size`` in dataset.yaml)."""
    return ValueError(f"{path}: {native[0]}x{native[1]}, but the first training image is {size[0]}x{size[1]}; set "
                      f"size: [H, W] in {DATASET_FILE} to resize every image and label")


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

    @property
    def num_classes(self) -> dict[str, int]:
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
            sample[task] = resize(task, label, self.size)
        self.checked[j] = True
        if self.augment:
            sample = augment(sample)
        sample["image"] = normalise(sample["image"])
        sample["labelled"] = labelled
        return sample


def tasks(cfg: DataConfig) -> tuple[str, ...]:
    """The tasks ``ROOT/dataset.yaml`` names."""
    return tuple(read_spec(cfg.root).tasks)


def absent(cfg: DataConfig, task: str) -> str:
    """Why a folder dataset has no ``task`` targets: its dataset.yaml does not name the task."""
    return f"{Path(cfg.root) / DATASET_FILE} names no {task} task"


def open_splits(cfg: DataConfig) -> tuple[FolderImages, FolderImages | None, FolderImages]:
    """``train``, ``val`` (None when ``ROOT/val`` does not exist: ``build_splits`` carves one) and ``test``."""
    spec = read_spec(cfg.root)
    train = FolderImages(spec.root, "train", spec)
    val = FolderImages(spec.root, "val", spec, size=train.size) if (spec.root / "val").is_dir() else None
    return train, val, FolderImages(spec.root, "test", spec, size=train.size)
