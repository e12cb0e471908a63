"""``Run``: one run as the training loop and its callbacks see it, around its ``TrainState``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import DataLoader

from ..config import ExperimentConfig
from ..data import DataSplits
from ..distributed import Distributed
from ..methods import MultiTaskModel
from ..tasks import Task
from .state import TrainState


@dataclass
class Run:
    """One run: its config and directory, this process's place, the data and loaders, the number of network steps,
    the training state (``state``: everything that changes) and when it started (``time.perf_counter``, moved back
    by the time earlier sessions of a resumed run took)."""

    cfg: ExperimentConfig
    out_dir: Path
    dist: Distributed
    splits: DataSplits
    val_loader: DataLoader
    test_loader: DataLoader
    total_steps: int
    state: TrainState
    progress: bool
    start: float

    @property
    def model(self) -> MultiTaskModel:
        return self.state.model

    @property
    def primary(self) -> Task:
        return self.model.tasks[self.cfg.tasks.primary]

    @property
    def select_metric(self) -> str:
        """The primary task's metric the checkpoint is selected on (its main metric)."""
        return self.primary.main_metric
