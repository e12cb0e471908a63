"""What every train-time model offers the training loop and the exporter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..config.schema import MethodConfig
from ..tasks import Task

#: the ``method.*`` options that the engine reads for every method with architecture weights (its architecture
#: optimiser and the bilevel cadence): part of the options of each such method
SEARCH_OPTIONS = ("optimization", "arch_every", "arch_optimizer", "arch_lr", "arch_weight_decay", "arch_betas",
                  "arch_schedule")


class MultiTaskModel(nn.Module):
    """A train-time model: image -> {task name: raw prediction} for the primary and every auxiliary task.

    Methods with architecture weights (Aux-NAS) return them from
    ``architecture_parameters`` and may add a penalty to the architecture step;
    the training loop then alternates architecture and network steps.

    The training loop names no method: what a method adds to it (its optimiser groups, the values it records
    along training, its extra evaluations and diagnostics) it declares through the hooks below.
    """

    #: the key, in every epoch's record and in ``metrics.json``, of the values the model records along training
    #: (``recorded_values``, ``TrainState.links``); None: it records none
    record_key: str | None = None

    def __init__(self, tasks: dict[str, Task], primary: str) -> None:
        super().__init__()
        if primary not in tasks:
            raise ValueError(f"primary task {primary!r} is not among {list(tasks)}")
        self.tasks = tasks
        self.primary = primary

    def forward(self, x: Tensor, **variant: Any) -> dict[str, Tensor]:
        """Predictions of every task; ``variant``: the keywords of one of ``evaluation_variants`` (none by default)."""
        raise NotImplementedError

    def optimizer_groups(self, lr: float, weight_decay: float, method: MethodConfig) -> list[dict[str, Any]]:
        """The network optimiser's parameter groups (``params``, ``lr``, ``weight_decay``): every network parameter
        once, at the network's ``lr`` and ``weight_decay`` unless ``method`` sets its own (default: one group)."""
        return [{"params": self.network_parameters(), "lr": lr, "weight_decay": weight_decay}]

    def record_names(self) -> dict[str, list[list[int]]]:
        """Series -> what each of its recorded values stands for, in ``recorded_values``' order (``record_key``)."""
        return {}

    def recorded_values(self) -> dict[str, list[float]]:
        """Series -> its current values (``record_key``): recorded along training and at every epoch's end."""
        return {}

    def evaluation_variants(self) -> dict[str, dict[str, Any]]:
        """Name -> ``forward`` keywords of every other network the diagnostics also evaluate on the validation split
        (``val_<name>`` in the epoch's record); none by default."""
        return {}

    def monitored_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Name -> parameters whose norm, taken over all of them together, the diagnostics record at every epoch's
        end (``projection_norm``); none by default."""
        return {}

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
        self, preds: Mapping[str, Tensor], batch: Mapping[str, Tensor], weights: Mapping[str, float],
        shares: Mapping[str, float] | None = None,
    ) -> Tensor | None:
        """Extra training loss from this forward's outputs, added to the weighted task losses (None: none);
        ``shares`` as in ``auxnas.tasks.batch_losses`` (data-parallel training)."""
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
