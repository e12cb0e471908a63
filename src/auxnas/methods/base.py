"""What every train-time model offers the training loop and the exporter."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..tasks import Task


class MultiTaskModel(nn.Module):
    """A train-time model: image -> {task name: raw prediction} for the primary and every auxiliary task.

    Methods with architecture weights (Aux-NAS) return them from
    ``architecture_parameters`` and may add a penalty to the architecture step;
    the training loop then alternates architecture and network steps.
    """

    def __init__(self, tasks: dict[str, Task], primary: str) -> None:
        super().__init__()
        if primary not in tasks:
            raise ValueError(f"primary task {primary!r} is not among {list(tasks)}")
        self.tasks = tasks
        self.primary = primary

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def architecture_parameters(self) -> list[nn.Parameter]:
        """Parameters optimised by the architecture step (none for most methods)."""
        return []

    def network_parameters(self) -> list[nn.Parameter]:
        """Parameters optimised by the network step: everything that is not an architecture parameter."""
        arch = {id(p) for p in self.architecture_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters reached by the gradients of more than one task (what gradient-surgery methods act on)."""
        return []

    def a2p_projections(self) -> list[nn.Parameter]:
        """Weights that carry auxiliary features into the primary branch through prunable links
        (``method.a2p_weight_decay`` decays them); none for most methods."""
        return []

    def fusion_projections(self) -> list[nn.Parameter]:
        """The 1x1 projections of the fusion ops that join branches (p2a and a2p; ``method.fusion_lr_factor``
        scales their learning rate); none for most methods."""
        return []

    def last_shared_layer(self) -> nn.Parameter | None:
        """Weight of the last shared layer (where GradNorm measures per-task gradient norms); None if none."""
        return None

    def set_progress(self, progress: float) -> None:
        """Called by the training loop before every step with the fraction of training done, in [0, 1]."""

    def auxiliary_loss(
        self, preds: dict[str, Tensor], batch: dict[str, Tensor], weights: dict[str, float]
    ) -> Tensor | None:
        """Extra training loss from this forward's outputs, added to the weighted task losses (None: none)."""
        return None

    def architecture_penalty(self, progress: float) -> Tensor | None:
        """Regulariser added to the architecture step's loss at ``progress`` in [0, 1] of training."""
        return None

    def penalty_weight(self, progress: float) -> float | None:
        """The factor of a ramped regulariser at ``progress`` (None: no ramp)."""
        return None

    def primary_network(self) -> nn.Module:
        """The deployable primary-only network (a plain module, no auxiliary part)."""
        raise NotImplementedError

    def a2p_links(self) -> list[dict[str, Any]]:
        """Every auxiliary-to-primary link the export cuts (``aux``, ``primary_cell``, ``aux_cell``, ``strength``);
        none for methods whose primary network reads nothing of the auxiliary tasks."""
        return []

    def export_extras(self) -> dict[str, list[int]]:
        """Where ``primary_network`` differs from the single-task network, by cell: ``fusion_post_cells`` (a kept
        BatchNorm + ReLU after the cell), ``skipped_cells`` (cells it skips), ``shortcut_cells`` (skipped cells
        replaced by their shortcut). All empty: exactly the single-task network."""
        return {"fusion_post_cells": [], "skipped_cells": [], "shortcut_cells": []}
