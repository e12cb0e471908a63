"""The real-dataset readers, by ``data.name``: what each provides and how its splits are opened.

A reader is a module function ``open_splits(cfg) -> (train, val, test)`` returning ``IndexedImages`` (the
dataset's training images; its validation images, or None, and then ``build_splits`` carves the validation split
from ``train``; its test images; each with ``size`` (H, W) and ``num_classes``, samples as ``SyntheticScenes``'),
``tasks(cfg)``, the task names it has targets for (checked when a config is validated, before any work), and
``absent(cfg, task)``, why it has no targets of a task it lacks (the folder it looked for, a near-miss), or "", and,
for a dataset that declares its own tasks (``folder``), ``kinds(cfg)``: task -> kind of each.
A split whose images may lack some labels also has ``label_masks()``: task -> bool array over its images (samples
then carry ``"labelled"``, see ``data.labels``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..config import ConfigError, DataConfig, ExperimentConfig
from . import folder, mtan, nddr, taskonomy
from .base import IndexedImages


@dataclass(frozen=True)
class Reader:
    """How to open one dataset and which tasks it provides."""

    open_splits: Callable[[DataConfig], tuple[IndexedImages, IndexedImages | None, IndexedImages]]
    tasks: Callable[[DataConfig], tuple[str, ...]]
    absent: Callable[[DataConfig, str], str]
    #: task -> kind of every task the dataset declares; None: it provides built-in tasks only
    kinds: Callable[[DataConfig], dict[str, str]] | None = None


#: data.name -> its reader (every name but "synthetic")
READERS: dict[str, Reader] = {
    "nyuv2_mtan": Reader(mtan.open_splits, mtan.tasks, mtan.absent),
    "cityscapes": Reader(mtan.open_splits, mtan.tasks, mtan.absent),
    "folder": Reader(folder.open_splits, folder.tasks, folder.absent, folder.kinds),
    "nyuv2_nddr": Reader(nddr.open_splits, nddr.tasks, nddr.absent),
    "taskonomy": Reader(taskonomy.open_splits, taskonomy.tasks, taskonomy.absent),
}


def reader(name: str) -> Reader:
    """The reader of ``data.name``; an unknown name fails with the known ones."""
    if name not in READERS:
        raise ValueError(f"data.name: unknown dataset {name!r}; known: synthetic, {', '.join(READERS)}")
    return READERS[name]


def declared_kinds(cfg: ExperimentConfig) -> dict[str, str] | None:
    """Task -> kind of every task ``cfg``'s dataset declares (reading its description, not its images); None for a
    dataset of built-in tasks only. ``ConfigError`` when the description is missing or invalid."""
    if cfg.data.name == "synthetic" or reader(cfg.data.name).kinds is None:
        return None
    try:
        return reader(cfg.data.name).kinds(cfg.data)
    except (OSError, ValueError) as err:
        raise ConfigError(str(err)) from None


def check_config(cfg: ExperimentConfig) -> None:
    """A real dataset's section: the building split is a CSV (taskonomy), and the dataset provides every task the
    config trains or randomises. Reads the dataset's description (not its images); ``ConfigError`` naming the key."""
    name = cfg.data.name
    if name == "synthetic":
        return
    if name == "taskonomy" and not cfg.data.taskonomy_split.strip().lower().endswith(".csv"):
        raise ConfigError(f"data.taskonomy_split: expected the path of a .csv building split, got "
                          f"{cfg.data.taskonomy_split!r}")
    try:
        provided = reader(name).tasks(cfg.data)
    except (OSError, ValueError) as err:
        raise ConfigError(str(err)) from None
    named = [("tasks.primary", cfg.tasks.primary), *((f"tasks.aux[{i}]", a) for i, a in enumerate(cfg.tasks.aux)),
             *((f"data.random_targets[{i}]", t) for i, t in enumerate(cfg.data.random_targets))]
    for key, task in named:
        if task not in provided:
            why = "layout: the synthetic scenes' seg in 4 coarse classes only" if task == "layout" else (
                reader(name).absent(cfg.data, task))
            raise ConfigError(f"{key}: dataset {name} has no {task!r} targets{f' ({why})' if why else ''}; it provides "
                              f"{', '.join(provided)}")
