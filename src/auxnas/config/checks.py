"""Cross-field checks of an experiment configuration that types alone cannot express and that need no component
(``auxnas.config.validate`` checks the sections against the tasks, dataset readers, backbones and weighting methods)."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from .schema import ConfigError, ExperimentConfig, valid_device


def check_config(cfg: ExperimentConfig) -> None:
    """Cross-field checks that types alone cannot express and that need no component (``auxnas.config.validate`` checks
    the sections against the tasks, dataset readers, backbones and weighting methods)."""
    _check_numbers(cfg)
    positive = {
        "data.image_size": cfg.data.image_size,
        "data.num_train": cfg.data.num_train,
        "data.num_test": cfg.data.num_test,
        "data.batch_size": cfg.data.batch_size,
        "train.epochs": cfg.train.epochs,
        "train.lr": cfg.train.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if cfg.data.batch_size_per_device is not None and cfg.data.batch_size_per_device <= 0:
        raise ConfigError(f"data.batch_size_per_device: must be positive or null, got {cfg.data.batch_size_per_device}")
    if cfg.train.diagnose_every < 0:
        raise ConfigError(f"train.diagnose_every: must be non-negative (0: off), got {cfg.train.diagnose_every}")
    if cfg.train.max_steps_per_epoch is not None and cfg.train.max_steps_per_epoch <= 0:
        raise ConfigError(f"train.max_steps_per_epoch: must be positive or null, got {cfg.train.max_steps_per_epoch}")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: must be between 0 and 1 (exclusive), got {cfg.data.val_fraction}")
    for name, fraction in cfg.data.labelled_fraction.items():
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"data.labelled_fraction.{name}: a fraction in [0, 1], got {fraction}")
    if cfg.data.labelled_fraction.get(cfg.tasks.primary, 1.0) == 0.0:
        raise ConfigError(f"data.labelled_fraction.{cfg.tasks.primary}: the primary task needs some labelled images")
    if cfg.tasks.primary in cfg.data.random_targets:
        raise ConfigError(f"data.random_targets: the primary task {cfg.tasks.primary!r} must keep its real targets")
    share = cfg.data.oversample_primary
    if share is not None and not 0.0 < share < 1.0:
        raise ConfigError(f"data.oversample_primary: a share strictly between 0 and 1, or null; got {share}")
    if cfg.tasks.primary in cfg.tasks.aux:
        raise ConfigError(f"tasks.aux: the primary task {cfg.tasks.primary!r} cannot also be auxiliary")
    if len(set(cfg.tasks.aux)) != len(cfg.tasks.aux):
        raise ConfigError(f"tasks.aux: repeated task in {cfg.tasks.aux}")
    if cfg.tasks.nddr_grey_normals == "score" and cfg.data.name != "nyuv2_nddr":
        raise ConfigError(f"tasks.nddr_grey_normals: score counts the grey normal pixels of data.name=nyuv2_nddr; "
                          f"{cfg.data.name} has none (leave it at invalid)")
    for name, weight in cfg.tasks.loss_weights.items():
        if weight < 0:
            raise ConfigError(f"tasks.loss_weights.{name}: must be non-negative, got {weight}")
    for name in cfg.init.aux:
        if name not in cfg.tasks.aux:
            raise ConfigError(f"init.aux.{name}: not an auxiliary task of this run {cfg.tasks.aux}")
    m = cfg.method
    if m.name in ("aux_head", "aux_module", "adashare_aux", "aux_g", "aux_nas") and not cfg.tasks.aux:
        raise ConfigError(f"tasks.aux: method {m.name} needs at least one auxiliary task")
    if m.name == "single" and cfg.tasks.aux:
        raise ConfigError(f"tasks.aux: {cfg.tasks.aux} given, but single-task training uses no auxiliary task; remove "
                          "tasks.aux or choose a method (method.name: aux_head, aux_nas, ...)")
    if m.module_weight < 0 or m.sparsity_weight < 0 or m.sharing_weight < 0:
        raise ConfigError("method.module_weight, method.sparsity_weight and method.sharing_weight must be non-negative")
    if m.temperature_start <= 0 or m.temperature_end <= 0:
        raise ConfigError("method.temperature_start and method.temperature_end must be positive")
    if not 0.0 < m.curriculum_end <= 1.0:
        raise ConfigError(f"method.curriculum_end: must be in (0, 1], got {m.curriculum_end}")
    if not 0.0 < m.policy_init < 1.0:
        raise ConfigError(f"method.policy_init: a probability strictly between 0 and 1, got {m.policy_init}")
    if m.window < 1:
        raise ConfigError(f"method.window: must be >= 1, got {m.window}")
    if not 0.0 <= m.fusion_init <= 1.0:
        raise ConfigError(f"method.fusion_init: a weight in [0, 1], got {m.fusion_init}")
    for key in ("p2a_init", "a2p_init"):
        if not 0.0 < getattr(m, key) < 1.0:
            raise ConfigError(f"method.{key}: a strength strictly between 0 and 1, got {getattr(m, key)}")
    if m.arch_every < 1:
        raise ConfigError(f"method.arch_every: must be >= 1, got {m.arch_every}")
    if len(m.arch_betas) != 2 or not all(0.0 <= b < 1.0 for b in m.arch_betas):
        raise ConfigError(f"method.arch_betas: two numbers in [0, 1), got {m.arch_betas}")
    if not 0.0 <= m.penalty_start <= m.penalty_end <= 1.0:
        raise ConfigError(f"method.penalty_start/penalty_end: need 0 <= start <= end <= 1, got "
                          f"{m.penalty_start}, {m.penalty_end}")
    if m.a2p_weight_decay and m.name == "aux_nas" and m.search == "p2a_only":
        raise ConfigError("method.a2p_weight_decay: acts on Aux-NAS's a2p fusion ops, and method.search=p2a_only has "
                          "none; set it to 0 or use method.search=both")
    if not valid_device(cfg.train.device):
        raise ConfigError(f"train.device: expected auto, cpu or cuda[:N], got {cfg.train.device!r}")
    if cfg.data.name != "synthetic" and cfg.data.root is None:
        raise ConfigError(f"data.root: data.name={cfg.data.name} needs the dataset folder (see docs/datasets.md)")
    if cfg.data.name == "synthetic" and cfg.data.image_size < 16:
        raise ConfigError(f"data.image_size: the synthetic scenes need at least 16 px, got {cfg.data.image_size}")


def _numbers(value: Any, key: str) -> typing.Iterator[tuple[str, float]]:
    """Every float of a config (dataclass, list, mapping) with its key, e.g. ``("tasks.loss_weights.seg", 2.0)``."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _numbers(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{key}[{i}]")
    elif isinstance(value, float):
        yield key, value


def _check_numbers(cfg: ExperimentConfig) -> None:
    """Every number finite; seeds, learning rates, weight decays and the poly power in range."""
    for key, value in _numbers(cfg, ""):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
    for key, value in (("seed", cfg.seed), ("data.seed", cfg.data.seed), ("train.weight_decay", cfg.train.weight_decay),
                       ("method.arch_weight_decay", cfg.method.arch_weight_decay),
                       ("method.penalty_max", cfg.method.penalty_max),
                       ("method.a2p_weight_decay", cfg.method.a2p_weight_decay)):
        if value < 0:
            raise ConfigError(f"{key}: must be non-negative, got {value}")
    for key, value in (("train.poly_power", cfg.train.poly_power), ("method.arch_lr", cfg.method.arch_lr),
                       ("method.fusion_lr_factor", cfg.method.fusion_lr_factor)):
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
