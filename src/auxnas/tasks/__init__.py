"""Tasks and ``build_task``: a task of a config, by name, -> its ``Task`` object, whatever its kind
(``auxnas.tasks.kinds``: the kinds, the built-in names, the declarations of a dataset's own tasks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, ExperimentConfig
from .base import Metric, Task, batch_losses, labelled
from .classification import Classification
from .depth import Depth, Disparity
from .kinds import BUILTIN_KINDS, KINDS, build, declaration_of, declare, kind_of, table_entry
from .multilabel import MultiLabel
from .normals import GREY_NORMALS, NORMAL_ANGLES, SurfaceNormals
from .regression import DenseRegression, ImageRegression
from .segmentation import MIOU_CLASSES, Segmentation

__all__ = ["BUILTIN_KINDS", "GREY_NORMALS", "KINDS", "LOSSES", "MIOU_CLASSES", "NORMAL_ANGLES", "TASK_NAMES",
           "Classification", "DenseRegression", "Depth", "Disparity", "ImageRegression", "Metric", "MultiLabel",
           "Segmentation", "SurfaceNormals", "Task", "batch_losses", "build_task", "build_tasks", "check_config",
           "conventions", "declare", "kind_of", "labelled", "likelihoods", "table_entry"]

#: every built-in task name (``layout``: the synthetic scenes only); a dataset may declare others
TASK_NAMES = tuple(BUILTIN_KINDS)

#: built-in task name -> the losses it offers, its default first (docs/tasks.md)
LOSSES: dict[str, tuple[str, ...]] = {name: KINDS[kind].task.LOSSES for name, kind in BUILTIN_KINDS.items()}


def build_task(
    name: str, num_classes: Mapping[str, Any], *, loss: str | None = None, normal_angle: str = "unit",
    miou_classes: str = "present", align_corners: bool = False, nddr_grey_normals: str = "invalid",
) -> Task:
    """The task ``name`` of the task table ``num_classes``: the class counts of the built-in tasks that have classes
    (``seg``, ``layout``, ``object``, ``scene``) and the declaration of every other task a dataset declares
    (``auxnas.tasks.kinds``).

    ``loss``: one of the task's ``LOSSES`` (None: its declared loss, else its default). The metric conventions apply
    to the tasks they concern and are ignored by the others: ``normal_angle`` (``unit`` or ``nddr_encoded``) and
    ``nddr_grey_normals`` (``invalid`` or ``score``) to normals, ``miou_classes`` (``present`` or ``all``) to
    segmentation, ``align_corners`` (the resize of a prediction to its label's size, and of a dense head's output to
    the image size) to every dense task. See docs/tasks.md.
    """
    return build(name, declaration_of(name, num_classes), loss=loss, normal_angle=normal_angle,
                 miou_classes=miou_classes, align_corners=align_corners, nddr_grey_normals=nddr_grey_normals)


def conventions(tasks: Mapping[str, Task]) -> dict[str, dict[str, Any]]:
    """Task name -> the loss and metric conventions it uses (``Task.conventions``): what a result file records."""
    return {name: task.conventions() for name, task in tasks.items()}


def build_tasks(cfg: ExperimentConfig, num_classes: Mapping[str, Any]) -> dict[str, Task]:
    """The run's tasks of the task table ``num_classes`` (``build_task``), primary first, with their configured
    losses and metric conventions."""
    return {name: build_task(name, num_classes, **cfg.tasks.task_options(name)) for name in cfg.tasks.all}


def likelihoods(names: list[str], kinds: Mapping[str, str] | None = None) -> dict[str, str]:
    """Task name -> ``"regression"`` or ``"classification"`` (``Task.likelihood``) of built-in tasks and of those a
    dataset declares (``kinds``: task -> kind), for the Kendall form of uncertainty weighting."""
    kinds = {**BUILTIN_KINDS, **(kinds or {})}
    return {name: KINDS[kinds[name]].task.likelihood for name in names if name in kinds}


def check_config(cfg: ExperimentConfig, kinds: Mapping[str, str] | None = None) -> None:
    """Every task the config names is a built-in task or one its dataset declares (``kinds``: task -> kind of every
    task a dataset that declares its tasks names, None for the other datasets), and every loss it names one its
    task's kind offers; a weight or a loss for a task this run does not train is unused, not an error. The unknown
    names are listed with the valid ones: the dataset's tasks, or the built-in ones. ``ConfigError`` naming the key.
    Whether the dataset provides a built-in task is the reader's check (``auxnas.data.readers.check_config``)."""
    known = {**BUILTIN_KINDS, **(kinds or {})}
    valid = f"valid tasks: {', '.join(TASK_NAMES if kinds is None else kinds)}"
    for key, name in [("tasks.primary", cfg.tasks.primary), *((f"tasks.aux[{i}]", a) for i, a in
                                                               enumerate(cfg.tasks.aux))]:
        if name not in known:
            raise ConfigError(f"{key}: unknown task {name!r}; {valid}")
    for section, names in (("data.labelled_fraction", cfg.data.labelled_fraction),
                           ("tasks.loss_weights", cfg.tasks.loss_weights), ("tasks.losses", cfg.tasks.losses)):
        for name in names:
            if name not in known:
                raise ConfigError(f"{section}.{name}: unknown task; {valid}")
    for name in cfg.data.random_targets:
        if name not in known:
            raise ConfigError(f"data.random_targets: unknown task {name!r}; {valid}")
    for name, loss in cfg.tasks.losses.items():
        losses = KINDS[known[name]].task.LOSSES
        if loss not in losses:
            raise ConfigError(f"tasks.losses.{name}: unknown loss {loss!r} for task {name}; valid: {', '.join(losses)}")
