"""Checkpoints: what ``best.pt`` and ``last.pt`` hold, and the train-time model rebuilt from one
(``load_trained``, what evaluation and export start from)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import ExperimentConfig, InitConfig, config_from_dict, replace
from ..methods import MultiTaskModel, build_model
from ..storage import TRAINED_KEYS, CheckpointError, load_checkpoint, resolve_checkpoint, weights_mismatch
from ..tasks import build_tasks


def checkpoint_payload(
    cfg: ExperimentConfig, model: MultiTaskModel, weighting: torch.nn.Module, epoch: int,
    val: dict[str, dict[str, float]], num_classes: dict[str, Any],
) -> dict[str, Any]:
    """What ``best.pt`` holds (``last.pt`` adds the training state under ``"state"``): the config, the weights of
    the model and the weighting method, the epoch, its validation metrics and the dataset's task table (class
    counts and declarations, ``auxnas.tasks.kinds``), from which ``load_trained`` rebuilds the tasks."""
    return {"config": cfg.to_dict(), "model": model.state_dict(), "epoch": epoch, "val": val,
            "num_classes": num_classes, "weighting": weighting.state_dict()}


def load_trained(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[ExperimentConfig, MultiTaskModel, dict[str, Any]]:
    """Rebuild the train-time model of a checkpoint (or run directory) with its weights.

    A file that is not a checkpoint of its own config (keys missing, weights of another model) is a one-line
    ``CheckpointError`` naming it.
    """
    ckpt_path = resolve_checkpoint(path)
    payload = load_checkpoint(ckpt_path, keys=TRAINED_KEYS)
    cfg = config_from_dict(_without_unused_aux(payload["config"]), source=str(ckpt_path))
    num_classes, weights = payload["num_classes"], payload["model"]
    if not isinstance(num_classes, dict) or not all(
        isinstance(k, str) and (isinstance(v, dict) or isinstance(v, int) and not isinstance(v, bool) and v > 0)
        for k, v in num_classes.items()
    ):
        raise CheckpointError(f"{ckpt_path}: num_classes: expected a mapping of task to class count or declaration, "
                              f"got {num_classes!r:.100}")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{ckpt_path}: model: expected the model's weights (a state dict), got "
                              f"a {type(weights).__name__}")
    try:
        tasks = build_tasks(cfg, num_classes)
    except ValueError as err:  # a class count or declaration missing or invalid for one of its tasks
        raise CheckpointError(f"{ckpt_path}: num_classes: {err}") from None
    # the checkpoint holds every weight: no backbone weights or single-task runs to read (they may be gone)
    weightless = replace(cfg, init=InitConfig(), model={"pretrained": None})
    model = build_model(weightless, tasks)
    mismatch = weights_mismatch(model.state_dict(), weights)
    if mismatch:
        raise CheckpointError(f"{ckpt_path}: its weights do not fit its own config ({cfg.method.name} on "
                              f"{cfg.model.backbone}, tasks {', '.join(cfg.tasks.all)}): {mismatch}")
    model.load_state_dict(weights)
    return cfg, model.to(device), payload


def _without_unused_aux(config: Any) -> Any:
    """A checkpoint config of a single-task run that lists auxiliary tasks (allowed before they were refused; the
    run never used them), without them."""
    method = config.get("method", {}) if isinstance(config, dict) else None
    tasks = config.get("tasks", {}) if isinstance(config, dict) else None
    if isinstance(method, dict) and isinstance(tasks, dict) and method.get("name", "single") == "single" and \
            tasks.get("aux"):
        return {**config, "tasks": {**tasks, "aux": []}}
    return config
