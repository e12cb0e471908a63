"""Aux-Module: hard parameter sharing plus a train-time auxiliary module.

Our reimplementation of "Auxiliary Learning for Deep Multi-task Learning" (Liu et al.,
arXiv 1909.02214) from its abstract only; the module's design is ours (docs/aux_module.md).

The hard-sharing network (shared stem and cells, one head per task) is the model that is
kept. During training an auxiliary module mimics soft parameter sharing on top of it: one
column of small blocks per task, fed by the shared stage outputs, cross-stitched between
tasks at every stage by residual NDDR-style fusion, with one head per column. Its task
losses (``auxiliary_loss``) back-propagate into the shared layers and regularise them; the
module is skipped in evaluation and absent from ``primary_network``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones import Branch, build_head
from ..config import ExperimentConfig
from ..tasks import Task, batch_losses
from .aux_head import SharedBackbone
from .aux_nas.fusion import Fusion

#: method.name -> the ``method.*`` options it takes
OPTIONS: dict[str, tuple[str, ...]] = {"aux_module": ("module_weight",)}

#: prediction key of the auxiliary module's output for task ``t``: ``f"{t}{MODULE_SUFFIX}"``
MODULE_SUFFIX = "@module"


class ColumnBlock(nn.Module):
    """One stage of one task's column: the shared stage output (and the column's previous stage) -> a feature.

    Maps: 3x3 conv + BatchNorm + ReLU; tokens: LayerNorm + linear + GELU. The output has the shared stage's width,
    so a head built for the backbone reads the column's stage outputs as it reads the backbone's.
    """

    def __init__(self, channels: int, prev_channels: int, feature_format: Literal["map", "tokens"]) -> None:
        super().__init__()
        self.feature_format = feature_format
        width = channels + prev_channels
        if feature_format == "map":
            self.body = nn.Sequential(
                nn.Conv2d(width, channels, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
            )
        else:
            self.body = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, channels), nn.GELU())

    def forward(self, shared: Tensor, prev: Tensor | None) -> Tensor:
        """``prev`` (None at the first stage) is resized to ``shared``'s spatial size and concatenated to it."""
        if prev is not None:
            if self.feature_format == "map":
                if prev.shape[-2:] != shared.shape[-2:]:
                    prev = F.interpolate(prev, size=shared.shape[-2:], mode="bilinear", align_corners=False)
                shared = torch.cat([shared, prev], dim=1)
            else:
                shared = torch.cat([shared, prev], dim=-1)
        return self.body(shared)


class AuxiliaryModule(nn.Module):
    """Soft-sharing columns (one per task) over the shared stage outputs, fused across tasks at every stage.

    At stage ``s`` each column computes its raw feature from the shared stage output and its own fused
    stage ``s - 1`` feature; then every column adds a zero-initialised projection of the other columns' raw
    features (``auxnas.methods.aux_nas.fusion.Fusion``, strength 1). Column ``t``'s head decodes its fused stage
    features.

    Args:
        stage_channels: width of the shared output at each stage end.
        feature_format: ``"map"`` or ``"tokens"``, as the backbone's.
        heads: task name -> head taking one feature per stage and the image size.
    """

    def __init__(
        self, stage_channels: Sequence[int], feature_format: Literal["map", "tokens"], heads: Mapping[str, nn.Module]
    ) -> None:
        super().__init__()
        if not heads:
            raise ValueError("the auxiliary module needs at least one task head")
        self.names = list(heads)
        prev = [0, *stage_channels[:-1]]
        self.columns = nn.ModuleDict({
            t: nn.ModuleList(ColumnBlock(c, p, feature_format) for c, p in zip(stage_channels, prev))
            for t in self.names
        })
        others = len(self.names) - 1
        self.fusions = nn.ModuleDict({
            t: nn.ModuleList(Fusion(c, [c] * others, feature_format) for c in stage_channels) for t in self.names
        } if others else {})
        self.register_buffer("strengths", torch.ones(others), persistent=False)
        self.heads = nn.ModuleDict(heads)

    def forward(self, taps: Sequence[Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        """Task name -> the module's prediction, from the shared stage-end outputs ``taps``."""
        prev: dict[str, Tensor | None] = dict.fromkeys(self.names)
        stages: dict[str, list[Tensor]] = {t: [] for t in self.names}
        for s, shared in enumerate(taps):
            raw = {t: self.columns[t][s](shared, prev[t]) for t in self.names}
            for t in self.names:
                out = raw[t]
                if self.fusions:
                    out = self.fusions[t][s](out, [raw[o] for o in self.names if o != t], self.strengths)
                stages[t].append(out)
                prev[t] = out
        return {t: self.heads[t](stages[t], image_size) for t in self.names}


class AuxModuleNet(SharedBackbone):
    """Hard sharing (``SharedBackbone``) trained with an auxiliary module that is discarded at test time.

    ``forward`` adds the module's predictions under ``"<task>@module"`` in training mode (or when
    ``with_module`` is True); ``auxiliary_loss`` turns them into the extra loss the training loop adds.
    The export is the plain primary path (shared stem and cells + primary head): single-task cost.

    Args:
        tasks, primary, branch, aux_heads: as ``SharedBackbone``.
        module_heads: one head per task (primary included) for the module's columns, built for ``branch``.
        module_weight: factor on the module's (task-weighted) loss.
    """

    def __init__(
        self,
        tasks: dict[str, Task],
        primary: str,
        branch: Branch,
        aux_heads: dict[str, nn.Module],
        module_heads: dict[str, nn.Module],
        module_weight: float = 1.0,
    ) -> None:
        super().__init__(tasks, primary, branch, aux_heads)
        if set(module_heads) != set(tasks):
            raise ValueError(f"need one module head per task {sorted(tasks)}, got {sorted(module_heads)}")
        if module_weight < 0:
            raise ValueError(f"module_weight must be non-negative, got {module_weight}")
        stage_channels = [branch.cell_channels[i] for i in branch.stage_ends]
        self.aux_module = AuxiliaryModule(stage_channels, branch.feature_format, {t: module_heads[t] for t in tasks})
        self.module_weight = module_weight

    def forward(self, x: Tensor, with_module: bool | None = None) -> dict[str, Tensor]:
        """Every task's prediction; with the module (default: in training mode) also ``"<task>@module"``."""
        if with_module is None:
            with_module = self.training
        outputs = self.features(x)
        size = (x.shape[-2], x.shape[-1])
        taps = [outputs[i] for i in self.branch.stage_ends]
        preds = {self.primary: self.branch.head(taps, size)}
        preds.update({name: head(taps, size) for name, head in self.aux_heads.items()})
        if with_module:
            preds.update({f"{t}{MODULE_SUFFIX}": p for t, p in self.aux_module(taps, size).items()})
        return preds

    def auxiliary_loss(
        self, preds: Mapping[str, Tensor], batch: Mapping[str, Tensor], weights: Mapping[str, float] | None = None,
        shares: Mapping[str, float] | None = None,
    ) -> Tensor | None:
        """``module_weight`` times the task-weighted losses of the module's predictions (over the images that carry
        each task's label); None without them."""
        keys = {t: f"{t}{MODULE_SUFFIX}" for t in self.tasks}
        if not all(k in preds for k in keys.values()):
            return None
        weights = weights or {}
        losses = batch_losses(self.tasks, {t: preds[k] for t, k in keys.items()}, batch, shares)
        present = [weights.get(t, 1.0) * loss for t, loss in losses.items()]
        return self.module_weight * sum(present) if present else None

    def module_parameters(self) -> list[nn.Parameter]:
        """Parameters of the train-time auxiliary module (absent from the export)."""
        return list(self.aux_module.parameters())


def build(cfg: ExperimentConfig, tasks: dict[str, Task], branch: Callable[[Task], Branch]) -> AuxModuleNet:
    """Aux-Head trained with the auxiliary module (a head per task in its columns).

    ``branch(task)`` builds a task's branch (initialised as ``init.*`` asks).
    """
    main = branch(tasks[cfg.tasks.primary])
    size = cfg.data.image_size
    heads = {name: build_head(main, task, size) for name, task in tasks.items() if name != cfg.tasks.primary}
    module_heads = {name: build_head(main, task, size) for name, task in tasks.items()}
    return AuxModuleNet(tasks, cfg.tasks.primary, main, heads, module_heads, module_weight=cfg.method.module_weight)
