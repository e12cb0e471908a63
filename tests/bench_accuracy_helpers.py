"""Shared by the accuracy benchmark's tests: copying a benchmark's records alone, and forbidding training."""

from __future__ import annotations

import shutil
from pathlib import Path


def _copy_records(runs: Path, to: Path) -> Path:
    """Only the records of the runs in ``runs`` (no checkpoint), in the same layout under ``to``."""
    for record in runs.rglob("bench_run.json"):
        target = to / record.parent.relative_to(runs)
        target.mkdir(parents=True)
        shutil.copy(record, target)
    return to


def _no_training(*args, **kwargs):
    raise AssertionError("a recorded run was trained again")
