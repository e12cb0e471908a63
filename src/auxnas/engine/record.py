"""``EpochRecord``: one epoch of a run's history, as the loop writes it and TensorBoard, ``metrics.json``, compare and
the research scripts read it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: the prefix of an evaluation variant's validation metrics in the dict form (``val_<variant>``)
VARIANT_PREFIX = "val_"
#: the keys of the dict form that are fields of their own
_FIELDS = ("epoch", "train_loss", "train_task_losses", "weighting", "val", "diagnostics")


@dataclass
class EpochRecord:
    """What one epoch of training left: its mean training loss (the weighted sum, per image), every task's mean loss
    (per labelled image), the weighting's statistics (statistic -> task -> epoch mean), the validation metrics (task
    -> metric -> value), those of each of the model's evaluation variants (variant -> task -> metric -> value),
    ``train.diagnose_every``'s diagnostics (statistic -> name -> value; None when off) and what the model records
    (its ``record_key`` -> series -> values, e.g. the link strengths).

    ``to_dict`` is the ``metrics.json`` history entry (and what ``last.pt`` holds): every field at the top level, a
    variant's metrics as ``val_<variant>``, the model's values under its ``record_key``; ``from_dict`` reads it back.
    """

    epoch: int
    train_loss: float
    train_task_losses: dict[str, float]
    weighting: dict[str, dict[str, float]]
    val: dict[str, dict[str, float]] = field(default_factory=dict)
    val_variants: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, float]] | None = None
    recorded: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"epoch": self.epoch, "train_loss": self.train_loss, "train_task_losses": self.train_task_losses,
               "weighting": self.weighting, "val": self.val, **self.recorded}
        if self.diagnostics is not None:
            out["diagnostics"] = self.diagnostics
        out.update({VARIANT_PREFIX + name: metrics for name, metrics in self.val_variants.items()})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochRecord:
        """The record of a ``to_dict`` entry (a ``metrics.json`` history entry, of any auxnas version)."""
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(
            data["epoch"], data["train_loss"], data["train_task_losses"], data.get("weighting", {}),
            data.get("val", {}),
            {k[len(VARIANT_PREFIX):]: v for k, v in extra.items() if k.startswith(VARIANT_PREFIX)},
            data.get("diagnostics"),
            {k: v for k, v in extra.items() if not k.startswith(VARIANT_PREFIX)},
        )


#: a task *stalled* when its mean training loss over the last third of training is at least this fraction of its mean
#: over the second tenth (the epochs after the first fall). Under the protocol's SGD at lr 0.1, 3 of 30 runs on
#: vgg16_narrow stopped learning depth (gradient exactly 0: a dead branch predicting a constant); this flags exactly
#: those and none of the 966 other committed runs of 10 epochs or more (docs/protocols.md)
STALLED_RATIO = 0.9


def stalled(history: Sequence[EpochRecord], task: str) -> bool:
    """Whether ``task``'s training loss stopped falling early in ``history`` (``STALLED_RATIO``); False for a run of
    fewer than 10 epochs or one without the task's loss in every epoch."""
    losses = [r.train_task_losses.get(task) for r in history]
    if len(losses) < 10 or None in losses:
        return False
    tenth = len(losses) // 10
    return statistics.fmean(losses[2 * len(losses) // 3:]) >= STALLED_RATIO * statistics.fmean(losses[tenth:2 * tenth])
