"""Aux-Head: hard parameter sharing, one backbone and one head per task."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import Tensor, nn

from ..backbones import Branch, build_head
from ..config import ExperimentConfig
from ..tasks import Task
from .base import MultiTaskModel

#: method.name -> the ``method.*`` options it takes: none
OPTIONS: dict[str, tuple[str, ...]] = {"aux_head": ()}


class SharedBackbone(MultiTaskModel):
    """The primary branch's stem and cells feed the primary head and one extra head per auxiliary task.

    The export is the primary branch (backbone + primary head): single-task cost.
    """

    def __init__(self, tasks: dict[str, Task], primary: str, branch: Branch, aux_heads: dict[str, nn.Module]) -> None:
        super().__init__(tasks, primary)
        if set(aux_heads) != set(tasks) - {primary}:
            expected = sorted(set(tasks) - {primary})
            raise ValueError(f"need one head per auxiliary task {expected}, got {sorted(aux_heads)}")
        self.branch = branch
        self.aux_heads = nn.ModuleDict(aux_heads)

    def features(self, x: Tensor) -> list[Tensor]:
        """Outputs of every shared cell."""
        h = self.branch.stem(x)
        outputs = []
        for cell in self.branch.cells:
            h = cell(h)
            outputs.append(h)
        return outputs

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outputs = self.features(x)
        size = (x.shape[-2], x.shape[-1])
        preds = {self.primary: self.branch.decode(outputs, size)}
        taps = [outputs[i] for i in self.branch.stage_ends]
        preds.update({name: head(taps, size) for name, head in self.aux_heads.items()})
        return preds

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.branch.stem.parameters(), *self.branch.cells.parameters()]

    def last_shared_layer(self) -> nn.Parameter:
        return self.branch.last_layer_weight()

    def primary_network(self) -> Branch:
        return copy.deepcopy(self.branch)


def build(cfg: ExperimentConfig, tasks: dict[str, Task], branch: Callable[[Task], Branch]) -> SharedBackbone:
    """Aux-Head: the primary branch with a head per auxiliary task.

    ``branch(task)`` builds a task's branch (initialised as ``init.*`` asks).
    """
    main = branch(tasks[cfg.tasks.primary])
    heads = {name: build_head(main, task, cfg.data.image_size) for name, task in tasks.items()
             if name != cfg.tasks.primary}
    return SharedBackbone(tasks, cfg.tasks.primary, main, heads)
