"""Loss weighting and gradient methods, usable with every method (docs/weighting.md)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import ConfigError, ExperimentConfig
from .auto_lambda import AutoLambda
from .base import GradientWeighting, LossWeighting, MetaProblem, Stats, Weighting
from .gradnorm import GradNorm
from .loss_weights import DWA, TASK_KINDS, Equal, Uncertainty, task_kind
from .surgery import GCS, CAGrad, PCGrad, PCGradAux

__all__ = [
    "TASK_KINDS", "WEIGHTINGS", "WEIGHTING_NAMES", "GradientWeighting", "LossWeighting", "MetaProblem", "Stats",
    "Weighting",
    "build_weighting", "check_config", "task_kind",
]

WEIGHTINGS: dict[str, type[Weighting]] = {
    "equal": Equal, "uncertainty": Uncertainty, "dwa": DWA, "gradnorm": GradNorm,
    "pcgrad": PCGrad, "pcgrad_aux": PCGradAux, "cagrad": CAGrad, "gcs": GCS, "auto_lambda": AutoLambda,
}
WEIGHTING_NAMES = tuple(WEIGHTINGS)

#: constructor arguments the caller provides, not options a user sets
_NOT_OPTIONS = ("self", "tasks", "primary", "task_kinds")


def build_weighting(
    name: str, tasks: Sequence[str], primary: str, task_kinds: Mapping[str, str] | None = None, **hyper: Any
) -> Weighting:
    """The weighting method ``name`` over ``tasks``; ``hyper`` are its hyper-parameters.

    ``task_kinds`` (task -> "regression" / "classification") goes to the methods that need it (None: the
    built-in tasks' kinds). ValueError for an unknown name or option, and for a configuration that cannot
    differ from ``equal`` (``Weighting.degenerate_reason``).
    """
    if name not in WEIGHTINGS:
        raise ValueError(f"weighting.name: unknown method {name!r}; valid: {', '.join(WEIGHTING_NAMES)}")
    cls = WEIGHTINGS[name]
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in _NOT_OPTIONS]
    for key in hyper:
        if key not in valid:
            raise ValueError(f"weighting.options.{key}: not an option of {name}; valid: {', '.join(valid) or 'none'}")
    if "task_kinds" in params:
        hyper["task_kinds"] = task_kinds
    method = cls(tasks, primary, **hyper)
    reason = method.degenerate_reason()
    if reason is not None:
        raise ValueError(f"weighting: {name} {reason}")
    return method


def check_config(cfg: ExperimentConfig, task_kinds: Mapping[str, str] | None = None) -> None:
    """The ``weighting`` section: a known method whose options it takes and which can differ from ``equal`` with
    the config's tasks (``task_kinds`` as ``build_weighting``'s). ``ConfigError`` naming the key."""
    try:
        build_weighting(cfg.weighting.name, cfg.tasks.all, cfg.tasks.primary, task_kinds,
                        **cfg.weighting.options)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None
