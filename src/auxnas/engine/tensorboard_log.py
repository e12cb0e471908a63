"""TensorBoard scalars of a training run, written beside its JSON files (``train.tensorboard``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..methods import MultiTaskModel
from .record import EpochRecord


class TensorBoardLog:
    """Per-epoch scalars into ``RUN_DIR/tensorboard``: task losses, the weighting method's statistics (effective
    task weights, gradient norms and cosines), validation metrics, the values the model records (its
    ``record_key``: every architecture weight, under ``links/``), the regulariser and the learning rates. The x
    axis is the epoch; a resumed run drops what was logged after its checkpoint."""

    def __init__(self, run_dir: Path, first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when logging is on

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=first_epoch)

    def epoch(
        self, record: EpochRecord, model: MultiTaskModel, progress: float, optimizers: dict[str, torch.optim.Optimizer],
    ) -> None:
        """Log an epoch's ``record`` and the model's state, at the record's epoch."""
        scalars = {"train/loss": record.train_loss}
        scalars.update({f"train/loss_{task}": v for task, v in record.train_task_losses.items()})
        for stat, values in record.weighting.items():
            scalars.update({f"weighting/{stat}/{task}": v for task, v in values.items()})
        for task, metrics in record.val.items():
            scalars.update({f"val/{task}/{m}": v for m, v in metrics.items() if m != "num_images"})
        for series, values in record.recorded.get(model.record_key, {}).items():  # what the model records, if any
            scalars.update({f"links/{series}/{i}": v for i, v in enumerate(values)})
        penalty = model.architecture_penalty(progress)
        if penalty is not None:
            scalars["architecture/regulariser"] = float(penalty.detach())
        weight = model.penalty_weight(progress)
        if weight is not None:
            scalars["architecture/regulariser_weight"] = weight
        for name, optimizer in optimizers.items():
            scalars.update({f"lr/{name}/{i}": group["lr"] for i, group in enumerate(optimizer.param_groups)})
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, record.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
