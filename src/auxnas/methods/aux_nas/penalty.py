"""Aux-NAS's regulariser: an L1 penalty on the auxiliary-to-primary link strengths, ramped along training, added
to the architecture step's loss only (p2a links get none), so that the a2p links are driven to zero and can be
cut."""

from __future__ import annotations

from typing import Literal

from torch import Tensor


def penalty_weight(progress: float, lambda_max: float, start: float, end: float) -> float:
    """0 before ``start``, linear to ``lambda_max`` at ``end``, then constant (fractions of training)."""
    if progress <= start:
        return 0.0
    if progress >= end or end <= start:
        return lambda_max
    return lambda_max * (progress - start) / (end - start)


def a2p_penalty(
    strengths: Tensor, progress: float, lambda_max: float, start: float, end: float,
    reduction: Literal["mean", "sum"] = "mean",
) -> Tensor:
    """``penalty_weight(progress) * L1(strengths)``: the mean (the authors' code) or the sum of the a2p strengths."""
    l1 = strengths.mean() if reduction == "mean" else strengths.sum()
    return penalty_weight(progress, lambda_max, start, end) * l1
