"""Task kinds: what a task is, whatever its name.

A dataset declares each of its tasks by a kind and the kind's keys (``declare``), e.g. ``edges: {kind:
dense_regression, invalid: none}``; several tasks may share a kind. The seven built-in task names are declarations
of these kinds (``BUILTIN_KINDS``), whose only key, a class count, the dataset gives.

A dataset's *task table* (``num_classes`` of a dataset, a checkpoint and ``exported.yaml``, the name it had when
it held class counts only) maps a built-in name to its class count, as every record did before tasks were declared,
and any other declared task to its declaration (``table_entry``); ``declaration_of`` and ``build`` turn an entry
back into its ``Task``, so that a run, its checkpoints and its export rebuild their tasks without the dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import Task
from .classification import Classification
from .depth import Depth, Disparity
from .multilabel import MultiLabel
from .normals import SurfaceNormals
from .regression import DenseRegression, ImageRegression, invalid_marker
from .segmentation import Segmentation


@dataclass(frozen=True)
class Kind:
    """One kind of task: its class, the declaration keys it requires and those it may omit, with their defaults."""

    task: type[Task]
    required: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every declaration key of the kind but ``kind`` and ``loss``."""
        return (*self.required, *self.defaults)


#: every kind a task may be declared as (docs/tasks.md)
KINDS: dict[str, Kind] = {
    "segmentation": Kind(Segmentation, ("classes",)),
    "dense_regression": Kind(DenseRegression, ("invalid",), {"channels": 1}),
    "normals": Kind(SurfaceNormals),
    "depth": Kind(Depth),
    "disparity": Kind(Disparity),
    "classification": Kind(Classification, ("classes",)),
    "multilabel": Kind(MultiLabel, ("classes",)),
    "image_regression": Kind(ImageRegression, (), {"channels": 1}),
}
#: the built-in task names and their kinds (``layout``: the synthetic scenes' seg in 4 coarse classes)
BUILTIN_KINDS = {"seg": "segmentation", "normal": "normals", "depth": "depth", "disparity": "disparity",
                 "object": "classification", "scene": "classification", "layout": "segmentation"}
#: what each key says, for the error of a missing one
KEY_MEANINGS = {"classes": "the number of classes", "channels": "the number of values per pixel or image",
                "invalid": "the value that marks an invalid pixel, a number, nan or none"}


def _count(key: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _value(key: str, value: Any, kind: str) -> Any:
    """A declaration key's value, checked; a ValueError ``"KEY: message"``."""
    if key == "classes":
        return _count(key, value, 1 if kind == "multilabel" else 2)
    if key == "channels":
        return _count(key, value, 1)
    try:
        return invalid_marker(value)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None


def kind_of(name: str, settings: Mapping[str, Any], prefix: str = "") -> str:
    """The kind of task ``name`` declared with ``settings``: its ``kind``, implied by a built-in name (which keeps
    its kind). A ValueError ``prefix + "kind: message"`` for a missing, unknown or clashing kind."""
    builtin = BUILTIN_KINDS.get(name)
    kind = settings.get("kind", builtin)
    if kind is None:
        raise ValueError(f"{prefix}kind: required for a task that is not built-in ({', '.join(BUILTIN_KINDS)}); "
                         f"one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise ValueError(f"{prefix}kind: unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if builtin is not None and kind != builtin:
        raise ValueError(f"{prefix}kind: {name} is the built-in {builtin} task; give your {kind} task another name")
    return kind


def declare(name: str, settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The declaration of task ``name`` from ``settings``: its kind (``kind_of``), every key of that kind (``KINDS``;
    defaults filled in) and, when given, ``loss``, its default loss (a run's ``tasks.losses`` overrides it). A
    ValueError ``prefix + "KEY: message"`` names the first bad key."""
    kind = kind_of(name, settings, prefix)
    spec = KINDS[kind]
    valid = ("kind", *spec.keys, "loss")
    for key in settings:
        if key not in valid:
            raise ValueError(f"{prefix}{key}: unknown key; valid keys of a {kind} task: {', '.join(valid)}")
    declaration: dict[str, Any] = {"kind": kind}
    for key in spec.keys:
        if key in settings:
            try:
                declaration[key] = _value(key, settings[key], kind)
            except ValueError as err:
                raise ValueError(f"{prefix}{err}") from None
        elif key in spec.defaults:
            declaration[key] = spec.defaults[key]
        else:
            raise ValueError(f"{prefix}{key}: required for {name} (a {kind} task): {KEY_MEANINGS[key]}")
    if "loss" in settings:
        losses = spec.task.LOSSES
        if settings["loss"] not in losses:
            raise ValueError(f"{prefix}loss: unknown loss {settings['loss']!r} for task {name}; valid: "
                             f"{', '.join(losses)}")
        declaration["loss"] = settings["loss"]
    return declaration


def table_entry(name: str, declaration: Mapping[str, Any]) -> int | dict[str, Any] | None:
    """``declaration``'s entry in a task table: a built-in name declared with nothing but its class count is that
    count (None without one), as before tasks were declared; any other declaration is itself."""
    if name in BUILTIN_KINDS and set(declaration) <= {"kind", "classes"}:
        return declaration.get("classes")
    return dict(declaration)


def declaration_of(name: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """The declaration of task ``name`` in ``table`` (see the module); a ValueError for a name neither built in nor
    declared there, a built-in name without its class count, or an invalid declaration."""
    entry = table.get(name)
    if isinstance(entry, Mapping):
        return declare(name, entry, prefix=f"task {name!r}: ")
    if name not in BUILTIN_KINDS:
        declared = [task for task, value in table.items() if isinstance(value, Mapping)]
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join([*BUILTIN_KINDS, *declared])}")
    kind = BUILTIN_KINDS[name]
    if "classes" not in KINDS[kind].required:
        return {"kind": kind}
    if entry is None:
        raise ValueError(f"task {name!r} needs a class count: num_classes[{name!r}] is missing")
    return {"kind": kind, "classes": int(entry)}


def build(
    name: str, declaration: Mapping[str, Any], *, loss: str | None = None, normal_angle: str = "unit",
    miou_classes: str = "present", align_corners: bool = False, nddr_grey_normals: str = "invalid",
) -> Task:
    """The ``Task`` named ``name`` of ``declaration`` (``declare``'s form). ``loss``: the run's choice (None: the
    declaration's ``loss``, else the kind's default); the conventions as ``auxnas.tasks.build_task``'s."""
    kind = declaration["kind"]
    loss = declaration.get("loss") if loss is None else loss
    if kind == "segmentation":
        return Segmentation(declaration["classes"], name, loss=loss, miou_classes=miou_classes,
                            align_corners=align_corners)
    if kind == "normals":
        return SurfaceNormals(name, loss=loss, normal_angle=normal_angle, align_corners=align_corners,
                              nddr_grey_normals=nddr_grey_normals)
    if kind in ("depth", "disparity"):
        return KINDS[kind].task(name, loss=loss, align_corners=align_corners)
    if kind == "dense_regression":
        return DenseRegression(name, declaration["channels"], declaration["invalid"], loss, align_corners)
    if kind == "image_regression":
        return ImageRegression(name, declaration["channels"], loss)
    return KINDS[kind].task(declaration["classes"], name, loss=loss)  # classification, multilabel

