"""Train-time models, one module per method, built from the experiment config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..backbones import Branch, build_branch
from ..config import ExperimentConfig
from ..config.schema import MethodConfig
from ..storage import load_checkpoint, resolve_checkpoint
from ..tasks import Task
from . import adashare, aux_head, aux_module, aux_nas, single
from .adashare import AdaShare
from .aux_head import SharedBackbone
from .aux_module import AuxModuleNet
from .aux_nas import LinkedBranches
from .base import MultiTaskModel
from .single import SingleTask

__all__ = [
    "METHODS", "METHOD_NAMES", "METHOD_OPTIONS", "AdaShare", "AuxModuleNet", "LinkedBranches", "MethodBuilder",
    "MultiTaskModel", "SharedBackbone", "SingleTask", "build_model", "ignored_options", "trains_bilevel",
]


def load_single_task_weights(branch: Branch, path: str, task: Task) -> None:
    """Initialise ``branch`` from a ``single`` run (directory or checkpoint) trained on ``task``."""
    file = resolve_checkpoint(path)
    payload = load_checkpoint(file)
    trained = payload["config"].get("tasks", {}).get("primary")
    if payload["config"].get("method", {}).get("name") != "single" or trained != task.name:
        raise ValueError(f"{file}: expected a single-task run on {task.name!r}, got method "
                         f"{payload['config'].get('method', {}).get('name')!r} on {trained!r}")
    state = {k.removeprefix("branch."): v for k, v in payload["model"].items()}
    try:
        branch.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{file}: does not fit this branch (backbone or image size differ?): {err}") from None


#: a method's builder: (config, tasks, ``branch(task)`` building an initialised branch) -> its train-time model
MethodBuilder = Callable[[ExperimentConfig, dict[str, Task], Callable[[Task], Branch]], MultiTaskModel]

#: method.name -> its builder
METHODS: dict[str, MethodBuilder] = {
    "single": single.build, "aux_head": aux_head.build, "aux_module": aux_module.build, "adashare": adashare.build,
    "adashare_aux": adashare.build, "aux_g": aux_nas.build, "aux_nas": aux_nas.build,
}
METHOD_NAMES = tuple(METHODS)
#: method.name -> the ``method.*`` options it takes, declared by its module. ``MethodConfig`` holds every method's
#: options flat, the form of YAML files, overrides and run identities; a method ignores the others, so that one
#: fragment (``@paper_cnn``, a benchmark setting) can set Aux-NAS's options for every row of a comparison
METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    **single.OPTIONS, **aux_head.OPTIONS, **aux_module.OPTIONS, **adashare.OPTIONS, **aux_nas.OPTIONS,
}


def ignored_options(cfg: ExperimentConfig) -> dict[str, Any]:
    """``method.<option>`` -> value for every option of ``cfg.method`` away from its default that its method does not
    take (and so ignores): what a run says it ignored."""
    taken = METHOD_OPTIONS.get(cfg.method.name, ())
    return {f"method.{f.name}": getattr(cfg.method, f.name) for f in dataclasses.fields(MethodConfig)
            if f.name != "name" and f.name not in taken and getattr(cfg.method, f.name) != _default(f)}


def _default(field: dataclasses.Field) -> Any:
    """The schema's default of ``field``."""
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def build_model(cfg: ExperimentConfig, tasks: dict[str, Task]) -> MultiTaskModel:
    """The train-time model of ``cfg.method`` over ``tasks``, its branches initialised from ``init.*`` runs."""
    if cfg.method.name not in METHODS:
        raise ValueError(f"method.name: unknown method {cfg.method.name!r}; valid: {', '.join(METHOD_NAMES)}")
    init = {cfg.tasks.primary: cfg.init.primary, **cfg.init.aux}

    def branch(task: Task) -> Branch:
        built = build_branch(cfg.model.backbone, task, image_size=cfg.data.image_size,
                             pretrained=cfg.model.pretrained, dilated=cfg.model.dilated)
        if init.get(task.name):
            load_single_task_weights(built, init[task.name], task)
        return built

    return METHODS[cfg.method.name](cfg, tasks, branch)


def trains_bilevel(cfg: ExperimentConfig, model: MultiTaskModel) -> bool:
    """Whether ``model`` (of ``cfg``) trains bilevel: it has architecture weights and ``method.optimization`` is
    bilevel, so architecture steps on their own batches (half of every epoch's images) alternate with the network
    steps. Asked of the built model: whether AdaShare has architecture weights depends on its backbone's cells."""
    return bool(model.architecture_parameters()) and cfg.method.optimization == "bilevel"
