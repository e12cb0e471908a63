"""Loss weighting and gradient methods, usable with every method (docs/weighting.md)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import ConfigError, ExperimentConfig
from .auto_lambda import AutoLambda
from .auxilearn import AuxiLearn
from .base import GradientWeighting, LossWeighting, MetaProblem, Stats, Weighting
from .composed import Composed
from .gradnorm import GradNorm
from .loss_weights import DWA, TASK_KINDS, Equal, Uncertainty, task_kind
from .surgery import GCS, CAGrad, PCGrad, PCGradAux

__all__ = [
    "COMPOSED_NAMES", "TASK_KINDS", "WEIGHTINGS", "WEIGHTING_NAMES", "Composed", "GradientWeighting", "LossWeighting",
    "MetaProblem", "Stats", "Weighting",
    "build_weighting", "check_config", "task_kind",
]

WEIGHTINGS: dict[str, type[Weighting]] = {
    "equal": Equal, "uncertainty": Uncertainty, "dwa": DWA, "gradnorm": GradNorm,
    "pcgrad": PCGrad, "pcgrad_aux": PCGradAux, "cagrad": CAGrad, "gcs": GCS, "auto_lambda": AutoLambda,
    "auxilearn": AuxiLearn,
}
WEIGHTING_NAMES = tuple(WEIGHTINGS)
#: "loss+gradient": a loss weighting that acts through its weights alone, composed with a gradient method
#: (``Composed``; ``equal`` adds nothing to a gradient method)
COMPOSED_NAMES = tuple(
    f"{loss}+{gradient}"
    for loss, cls in WEIGHTINGS.items() if issubclass(cls, LossWeighting) and not cls.needs_task_gradients
    and cls.weighs_linearly and loss != "equal"
    for gradient, other in WEIGHTINGS.items() if issubclass(other, GradientWeighting)
)

#: constructor arguments the caller provides, not options a user sets
_NOT_OPTIONS = ("self", "tasks", "primary", "task_kinds")


def build_weighting(
    name: str, tasks: Sequence[str], primary: str, task_kinds: Mapping[str, str] | None = None, **hyper: Any
) -> Weighting:
    """The weighting method ``name`` over ``tasks``; ``hyper`` are its hyper-parameters.

    ``name`` is one of ``WEIGHTING_NAMES``, or ``"loss+gradient"`` (``COMPOSED_NAMES``): each option goes to the
    part that takes it (one both take is refused as ambiguous). ``task_kinds`` (task -> "regression" /
    "classification") goes to the methods that need it (None: the built-in tasks' kinds). ValueError for an unknown
    name or option, and for a configuration that cannot differ from ``equal`` (``Weighting.degenerate_reason``).
    """
    if name in COMPOSED_NAMES:
        names = name.split("+")
        takes = [_options(part) for part in names]
        for key in hyper:
            owners = [part for part, valid in zip(names, takes) if key in valid]
            if len(owners) != 1:
                why = "takes it in both parts" if owners else f"valid: {', '.join(takes[0] + takes[1]) or 'none'}"
                raise ValueError(f"weighting.options.{key}: not an option of exactly one part of {name}; {why}")
        parts = [_build(part, tasks, primary, task_kinds, {k: v for k, v in hyper.items() if k in valid})
                 for part, valid in zip(names, takes)]
        return Composed(*parts)
    if name not in WEIGHTINGS:
        raise ValueError(f"weighting.name: unknown method {name!r}; valid: {', '.join(WEIGHTING_NAMES)}, or "
                         f"loss+gradient: {', '.join(COMPOSED_NAMES)}")
    valid = _options(name)
    for key in hyper:
        if key not in valid:
            raise ValueError(f"weighting.options.{key}: not an option of {name}; valid: {', '.join(valid) or 'none'}")
    return _build(name, tasks, primary, task_kinds, hyper)


def _options(name: str) -> list[str]:
    """The options of the single method ``name``: its constructor's keyword arguments the caller does not set."""
    return [p for p in inspect.signature(WEIGHTINGS[name].__init__).parameters if p not in _NOT_OPTIONS]


def _build(
    name: str, tasks: Sequence[str], primary: str, task_kinds: Mapping[str, str] | None, hyper: dict[str, Any]
) -> Weighting:
    """The single method ``name`` with its (checked) options; refused if degenerate."""
    cls = WEIGHTINGS[name]
    if "task_kinds" in inspect.signature(cls.__init__).parameters:
        hyper = {**hyper, "task_kinds": task_kinds}
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
