"""Built-in tasks and ``build_task``: the name of a task in a config -> its ``Task`` object."""

from __future__ import annotations

from collections.abc import Mapping

from .base import Metric, Task, labelled
from .classification import Classification
from .depth import Depth
from .normals import SurfaceNormals
from .segmentation import Segmentation

__all__ = ["TASK_NAMES", "Classification", "Depth", "Metric", "Segmentation", "SurfaceNormals", "Task", "build_task",
           "labelled"]

#: every task name the built-in dataset provides a target for
TASK_NAMES = ("seg", "normal", "depth", "disparity", "object", "scene")


def build_task(name: str, num_classes: Mapping[str, int]) -> Task:
    """The task ``name``; ``num_classes`` gives the class counts of ``seg``, ``object`` and ``scene``."""
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)}")
    if name == "normal":
        return SurfaceNormals(name)
    if name in ("depth", "disparity"):
        return Depth(name)
    if name not in num_classes:
        raise ValueError(f"task {name!r} needs a class count: num_classes[{name!r}] is missing")
    count = int(num_classes[name])
    return Segmentation(count, name) if name == "seg" else Classification(count, name)
