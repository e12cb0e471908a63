"""Loss weighting and gradient methods, usable with every method (docs/weighting.md)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from .base import GradientWeighting, LossWeighting, Weighting
from .gradnorm import GradNorm
from .loss_weights import DWA, Equal, Uncertainty
from .surgery import GCS, CAGrad, PCGrad, PCGradAux

__all__ = ["WEIGHTINGS", "WEIGHTING_NAMES", "GradientWeighting", "LossWeighting", "Weighting", "build_weighting"]

WEIGHTINGS: dict[str, type[Weighting]] = {
    "equal": Equal, "uncertainty": Uncertainty, "dwa": DWA, "gradnorm": GradNorm,
    "pcgrad": PCGrad, "pcgrad_aux": PCGradAux, "cagrad": CAGrad, "gcs": GCS,
}
WEIGHTING_NAMES = tuple(WEIGHTINGS)


def build_weighting(name: str, tasks: Sequence[str], primary: str, **hyper: Any) -> Weighting:
    """The weighting method ``name`` over ``tasks``; ``hyper`` are its hyper-parameters (ValueError if unknown)."""
    if name not in WEIGHTINGS:
        raise ValueError(f"weighting.name: unknown method {name!r}; valid: {', '.join(WEIGHTING_NAMES)}")
    cls = WEIGHTINGS[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "tasks", "primary")]
    for key in hyper:
        if key not in valid:
            raise ValueError(f"weighting.options.{key}: not an option of {name}; valid: {', '.join(valid) or 'none'}")
    return cls(tasks, primary, **hyper)
