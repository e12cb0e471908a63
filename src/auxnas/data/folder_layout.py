"""The layout of a folder dataset (``data.name: folder``): ``dataset.yaml`` read and validated into a
``FolderSpec``, and the image and label files of each split listed without being read.

Every error is one line naming the file (and the key of ``dataset.yaml``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..tasks import KINDS, TASK_NAMES, declare, kind_of, table_entry
from .synthetic import IGNORE_INDEX

DATASET_FILE = "dataset.yaml"
#: the folder of the images in every split
IMAGE_FOLDER = "rgb"
#: the splits a folder dataset may hold; ``val`` is optional
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
#: the keys of dataset.yaml
TOP_KEYS = ("tasks", "size")
#: the built-in tasks a folder may name without a kind (``layout``, the synthetic scenes', needs one)
FOLDER_TASKS = tuple(name for name in TASK_NAMES if name != "layout")
#: each kind's keys about its files (every task also takes ``folder``, ``kind``, ``loss`` and its kind's keys)
FILE_KEYS = {"segmentation": ("ignore",), "normals": ("encoding",), "depth": ("scale",), "disparity": ("scale",),
             "dense_regression": ("scale",)}
#: the divisor of PNG values by kind
DEFAULT_SCALES = {"depth": 1000.0, "disparity": 1000.0, "dense_regression": 1.0}
#: what a task name is (it appears in config keys such as tasks.loss_weights.NAME)
TASK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: names no task may take: the images' key and folder, and the keys samples and batches hold besides the tasks
RESERVED_NAMES = ("image", IMAGE_FOLDER, "labelled")
#: the kinds whose label is one per image (the others' are one per pixel)
IMAGE_KINDS = ("classification", "multilabel", "image_regression")
NORMAL_ENCODINGS = ("unit", "rgb8")
LAYOUT = "ROOT/dataset.yaml, ROOT/{train,test}[,val]/rgb/<id>.png|jpg|npy, ROOT/<split>/<task folder>/<id>.<ext>"


@dataclass(frozen=True)
class TaskSpec:
    """One task of ``dataset.yaml``: what it is and how its files decode.

    ``declaration``: the task (``auxnas.tasks.declare``: its kind and the kind's keys, e.g. ``classes``); ``ignore``:
    segmentation, the label value of unlabelled pixels (-> ``IGNORE_INDEX``); ``encoding``: normals, ``unit`` (.npy
    unit vectors) or ``rgb8`` (PNG, ``(n + 1) * 127.5``); ``scale``: depth, disparity and dense regression, the
    divisor of PNG values (.npy files hold the values themselves).
    """

    name: str
    folder: str
    declaration: dict[str, Any]
    ignore: int = 255
    encoding: str = "unit"
    scale: float = 1.0

    @property
    def kind(self) -> str:
        return self.declaration["kind"]

    @property
    def classes(self) -> int | None:
        return self.declaration.get("classes")

    @property
    def channels(self) -> int:
        """The channels of a target of any kind but segmentation and classification (whose targets are classes)."""
        if self.kind == "normals":
            return 3
        if self.kind == "multilabel":
            return self.declaration["classes"]
        return self.declaration.get("channels", 1)

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The label file extensions this task accepts."""
        if self.kind == "normals":
            return (".npy",) if self.encoding == "unit" else (".png",)
        return (".txt", ".npy") if self.kind in IMAGE_KINDS else (".png", ".npy")


@dataclass(frozen=True)
class FolderSpec:
    """``dataset.yaml`` of a folder dataset: its tasks and the optional common size (H, W) of every image."""

    root: Path
    tasks: dict[str, TaskSpec]
    size: tuple[int, int] | None = None

    @property
    def num_classes(self) -> dict[str, Any]:
        """The task table (``auxnas.tasks.kinds``): the class counts of the built-in tasks, the declarations of the
        others."""
        entries = {name: table_entry(name, t.declaration) for name, t in self.tasks.items()}
        return {name: entry for name, entry in entries.items() if entry is not None}

    @property
    def kinds(self) -> dict[str, str]:
        """Task -> its kind."""
        return {name: t.kind for name, t in self.tasks.items()}


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
        settings = {} if settings is None else settings
        if not isinstance(settings, dict):
            raise fail(where, f"expected a mapping of settings (or nothing), got {settings!r:.60}")
        if not isinstance(name, str) or not TASK_NAME.fullmatch(name):
            raise fail(where, "a task name is letters, digits and _, starting with a letter")
        if name in RESERVED_NAMES:
            raise fail(where, f"{name!r} cannot name a task (reserved: {', '.join(RESERVED_NAMES)}); choose another "
                              "name")
        if "kind" not in settings and name not in FOLDER_TASKS:
            what = "a task of the synthetic scenes only" if name in TASK_NAMES else "unknown task"
            others = "" if name in TASK_NAMES else f", or any other name with a kind ({', '.join(KINDS)})"
            raise fail(where, f"{what}; valid tasks: {', '.join(FOLDER_TASKS)}{others}")
        spec = _task_spec(name, settings, f"{path}: {where}.")
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


def _task_spec(name: str, settings: dict[str, Any], prefix: str) -> TaskSpec:
    """The ``TaskSpec`` of one task's settings, validated; every error starts with ``prefix``."""

    def fail(key: str, message: str) -> ValueError:
        return ValueError(f"{prefix}{key}: {message}")

    kind = kind_of(name, settings, prefix)
    file_keys = FILE_KEYS.get(kind, ())
    valid = ("folder", *KINDS[kind].keys, *file_keys, "kind", "loss")
    for key in settings:
        if key not in valid:
            raise fail(key, f"unknown key; valid keys of {name}: {', '.join(valid)}")
    declaration = declare(name, {k: v for k, v in settings.items() if k not in ("folder", *file_keys)}, prefix)
    folder = settings.get("folder", name)
    if not isinstance(folder, str) or not folder or folder.startswith(".") or "/" in folder or "\\" in folder:
        raise fail("folder", f"expected the name of a folder inside each split, got {folder!r}")
    files: dict[str, Any] = {}
    if kind == "segmentation":
        classes = declaration["classes"]
        if classes > IGNORE_INDEX:
            raise fail("classes", f"at most {IGNORE_INDEX} ({IGNORE_INDEX} is the ignore index), got {classes}")
        ignore = settings.get("ignore", 255)
        if not isinstance(ignore, int) or isinstance(ignore, bool) or 0 <= ignore < classes:
            raise fail("ignore", f"expected an integer label value outside the classes 0..{classes - 1}, got "
                                 f"{ignore!r}")
        files["ignore"] = ignore
    elif kind == "normals":
        encoding = settings.get("encoding")
        if encoding not in NORMAL_ENCODINGS:
            raise fail("encoding", f"required: unit (.npy unit vectors) or rgb8 (PNG, (n + 1) * 127.5), "
                                   f"got {encoding!r}")
        files["encoding"] = encoding
    elif kind in DEFAULT_SCALES:
        scale = settings.get("scale", DEFAULT_SCALES[kind])
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale < float("inf"):
            raise fail("scale", f"expected a positive number (PNG value / scale), got {scale!r}")
        files["scale"] = float(scale)
    return TaskSpec(name, folder, declaration, **files)


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
