"""Train-time models, one module per method, built from the experiment config."""

from __future__ import annotations

from ..backbones import Branch, build_branch, build_head
from ..config import ExperimentConfig
from ..fusion import connectivity_matrix
from ..io import load_checkpoint, resolve_checkpoint
from ..tasks import Task
from .adashare import AdaShare
from .aux_head import SharedBackbone
from .aux_module import AuxModuleNet
from .base import MultiTaskModel
from .linked import LinkedBranches
from .single import SingleTask

__all__ = [
    "METHOD_NAMES", "AdaShare", "AuxModuleNet", "LinkedBranches", "MultiTaskModel", "SharedBackbone", "SingleTask",
    "build_model",
]

METHOD_NAMES = ("single", "aux_head", "aux_module", "adashare", "adashare_aux", "aux_g", "aux_nas")


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


def build_model(cfg: ExperimentConfig, tasks: dict[str, Task]) -> MultiTaskModel:
    """The train-time model of ``cfg.method`` over ``tasks``."""
    primary = cfg.tasks.primary
    m = cfg.method

    init = {primary: cfg.init.primary, **cfg.init.aux}

    def branch(task: Task) -> Branch:
        built = build_branch(
            cfg.model.backbone, task, image_size=cfg.data.image_size, pretrained=cfg.model.pretrained,
            dilated=cfg.model.dilated,
        )
        if init.get(task.name):
            load_single_task_weights(built, init[task.name], task)
        return built

    if m.name == "single":
        return SingleTask(branch(tasks[primary]), tasks[primary])
    if m.name in ("aux_head", "aux_module", "adashare", "adashare_aux"):
        main = branch(tasks[primary])
        size = cfg.data.image_size
        heads = {name: build_head(main, task, size) for name, task in tasks.items() if name != primary}
        if m.name == "aux_head":
            return SharedBackbone(tasks, primary, main, heads)
        if m.name == "aux_module":
            module_heads = {name: build_head(main, task, size) for name, task in tasks.items()}
            return AuxModuleNet(tasks, primary, main, heads, module_heads, module_weight=m.module_weight)
        return AdaShare(
            tasks, primary, main, heads, image_size=size, fix_primary=m.name == "adashare_aux",
            sampling=m.adashare_sampling, skip_downsample=m.adashare_skip_downsample, sparsity=m.adashare_sparsity,
            sparsity_weight=m.sparsity_weight, sharing_weight=m.sharing_weight,
            temperature_start=m.temperature_start, temperature_end=m.temperature_end,
            curriculum=m.curriculum, curriculum_end=m.curriculum_end, policy_init=m.policy_init,
        )
    if m.name in ("aux_g", "aux_nas"):
        branches = {name: branch(task) for name, task in tasks.items()}
        links = connectivity_matrix(branches[primary].stage_depths, m.granularity, m.window)
        searched = m.name == "aux_nas"
        return LinkedBranches(
            tasks, primary, branches, p2a=links, a2p=links if searched and m.search == "both" else None,
            search_p2a=searched, p2a_init=m.p2a_init, a2p_init=m.a2p_init, norm=m.fusion_norm,
            penalty_max=m.penalty_max, penalty_start=m.penalty_start, penalty_end=m.penalty_end,
            penalty_reduction=m.penalty_reduction, fusion_init=m.fusion_init,
        )
    raise ValueError(f"method.name: unknown method {m.name!r}; valid: {', '.join(METHOD_NAMES)}")
