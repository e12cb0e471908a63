"""Built-in tasks and ``build_task``: the name of a task in a config -> its ``Task`` object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, ExperimentConfig
from .base import Metric, Task, labelled
from .classification import Classification
from .depth import Depth
from .normals import GREY_NORMALS, NORMAL_ANGLES, SurfaceNormals
from .segmentation import MIOU_CLASSES, Segmentation

__all__ = ["GREY_NORMALS", "LOSSES", "MIOU_CLASSES", "NORMAL_ANGLES", "TASK_NAMES", "Classification", "Depth", "Metric",
           "Segmentation", "SurfaceNormals", "Task", "build_task", "build_tasks", "check_config", "conventions",
           "labelled"]

#: every task name the built-in dataset provides a target for (``layout``: the synthetic scenes only)
TASK_NAMES = ("seg", "normal", "depth", "disparity", "object", "scene", "layout")

#: task name -> the losses it offers, its default first (docs/tasks.md)
LOSSES: dict[str, tuple[str, ...]] = {
    "seg": Segmentation.LOSSES, "normal": SurfaceNormals.LOSSES, "depth": Depth.LOSSES,
    "disparity": Depth.LOSSES, "object": Classification.LOSSES, "scene": Classification.LOSSES,
    "layout": Segmentation.LOSSES,
}


def build_task(
    name: str, num_classes: Mapping[str, int], *, loss: str | None = None, normal_angle: str = "unit",
    miou_classes: str = "present", align_corners: bool = False, nddr_grey_normals: str = "invalid",
) -> Task:
    """The task ``name``; ``num_classes`` gives the class counts of ``seg``, ``layout``, ``object`` and ``scene``.

    ``loss``: one of ``LOSSES[name]`` (None: its default). The metric conventions apply to the tasks they concern
    and are ignored by the others: ``normal_angle`` (``unit`` or ``nddr_encoded``) and ``nddr_grey_normals``
    (``invalid`` or ``score``) to normals, ``miou_classes`` (``present`` or ``all``) to segmentation,
    ``align_corners`` (the resize of a prediction to its label's size, and of a dense head's output to the image
    size) to every dense task. See docs/tasks.md.
    """
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")
    if name == "normal":
        return SurfaceNormals(name, loss=loss, normal_angle=normal_angle, align_corners=align_corners,
                              nddr_grey_normals=nddr_grey_normals)
    if name in ("depth", "disparity"):
        return Depth(name, loss=loss, align_corners=align_corners)
    if name not in num_classes:
        raise ValueError(f"task {name!r} needs a class count: num_classes[{name!r}] is missing")
    count = int(num_classes[name])
    if name in ("seg", "layout"):
        return Segmentation(count, name, loss=loss, miou_classes=miou_classes, align_corners=align_corners)
    return Classification(count, name, loss=loss)


def conventions(tasks: Mapping[str, Task]) -> dict[str, dict[str, Any]]:
    """Task name -> the loss and metric conventions it uses (``Task.conventions``): what a result file records."""
    return {name: task.conventions() for name, task in tasks.items()}


def build_tasks(cfg: ExperimentConfig, num_classes: Mapping[str, int]) -> dict[str, Task]:
    """The run's tasks, primary first, with their configured losses and metric conventions."""
    return {name: build_task(name, num_classes, **cfg.tasks.task_options(name)) for name in cfg.tasks.all}


def check_config(cfg: ExperimentConfig) -> None:
    """Every task the config names is a built-in task, and every loss it names one its task offers; a weight or a
    loss for a task this run does not train is unused, not an error. ``ConfigError`` naming the key."""
    valid = f"valid tasks: {', '.join(TASK_NAMES)}"
    for key, name in [("tasks.primary", cfg.tasks.primary), *((f"tasks.aux[{i}]", a) for i, a in
                                                               enumerate(cfg.tasks.aux))]:
        if name not in TASK_NAMES:
            raise ConfigError(f"{key}: unknown task {name!r}; {valid}")
    for section, names in (("data.labelled_fraction", cfg.data.labelled_fraction),
                           ("tasks.loss_weights", cfg.tasks.loss_weights), ("tasks.losses", cfg.tasks.losses)):
        for name in names:
            if name not in TASK_NAMES:
                raise ConfigError(f"{section}.{name}: unknown task; {valid}")
    for name in cfg.data.random_targets:
        if name not in TASK_NAMES:
            raise ConfigError(f"data.random_targets: unknown task {name!r}; {valid}")
    for name, loss in cfg.tasks.losses.items():
        if loss not in LOSSES[name]:
            raise ConfigError(f"tasks.losses.{name}: unknown loss {loss!r} for task {name}; valid: "
                              f"{', '.join(LOSSES[name])}")
