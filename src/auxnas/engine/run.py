"""``Run``: one run as the training loop and its callbacks see it, around its ``TrainState``."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    the training state (``state``: everything that changes), when it started (``time.perf_counter``, moved back by
    the time earlier sessions of a resumed run took) and the training images held out from the network."""

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
    #: training images held out as a meta-learned weighting's own set (``Weighting.meta_split``), never trained on
    held_out: list[int] = field(default_factory=list)

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
