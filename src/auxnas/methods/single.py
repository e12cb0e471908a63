"""Single-task baseline: the primary branch alone."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import Tensor

from ..backbones import Branch
from ..config import ExperimentConfig
from ..tasks import Task
from .base import MultiTaskModel

#: method.name -> the ``method.*`` options it takes: none
OPTIONS: dict[str, tuple[str, ...]] = {"single": ()}


class SingleTask(MultiTaskModel):
    """One branch trained on the primary task only; auxiliary labels are unused."""

    def __init__(self, branch: Branch, task: Task) -> None:
        super().__init__({task.name: task}, task.name)
        self.branch = branch

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {self.primary: self.branch(x)}

    def primary_network(self) -> Branch:
        return copy.deepcopy(self.branch)


def build(cfg: ExperimentConfig, tasks: dict[str, Task], branch: Callable[[Task], Branch]) -> SingleTask:
    """The single-task model of ``cfg``'s primary task.

    ``branch(task)`` builds a task's branch (initialised as ``init.*`` asks).
    """
    primary = tasks[cfg.tasks.primary]
    return SingleTask(branch(primary), primary)
