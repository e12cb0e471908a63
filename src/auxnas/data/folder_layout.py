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

from ..tasks import TASK_NAMES
from .synthetic import IGNORE_INDEX

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
