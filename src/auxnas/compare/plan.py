"""Rows -> runs, and what depends on what: every (seed, row) run a comparison trains or reads, and which must train
again.

A *row* is a label and the overrides that make it (``method.name=aux_nas``, ``weighting.name=gcs``, a noise
control, ...). Every row of a comparison trains on the same config and overrides, once per seed, and makes as
many network updates as single-task does in ``train.epochs`` epochs (bilevel rows, which spend half of every
epoch's images on architecture steps, get the epochs that give that count: ``equal_update_epochs``).
``plan_runs`` gives each run its config, its run directory and the identities of the runs it starts from; a run
folder holding another run is refused before anything trains (``check_run_folder``); ``_trains_again`` finds the
recorded runs that must train again because a run that trains starts from them (or they from it).

A row's overrides may hold two placeholders: ``{aux}`` (the config's first auxiliary task) and ``{run:<row>}``
(the run directory of row ``<row>`` of the same seed, for rows that start from another row's run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig, InitConfig, load_config, replace
from ..data import DataSplits
from ..engine.loaders import steps_per_epoch
from ..engine.run_dir import data_changes
from ..engine.runtime import precision, resolve_device
from ..methods import build_model, trains_bilevel
from ..storage import check_output_folder, listed, one_line, resolve_checkpoint
from ..tasks import build_tasks
from .records import (
    OUTSIDE_IDENTITY,
    RECORD_FILE,
    config_changes,
    folder_config,
    folder_data,
    last_overrides,
    read_record,
    reused_record,
    run_identity,
)
from .rows import needed_rows, row_dependencies, row_overrides


def uses_bilevel(cfg: ExperimentConfig, num_classes: dict[str, int]) -> bool:
    """Whether ``fit`` trains ``cfg`` bilevel: the model has architecture weights and the search is bilevel
    (aux_nas, adashare, adashare_aux); such a run spends half of every epoch's images on architecture steps.
    The model is built without its initial weights (``cfg.init``): they change no architecture, and a reused run
    needs no checkpoint of the runs it started from."""
    if cfg.method.optimization != "bilevel":
        return False
    bare = replace(cfg, init=InitConfig())
    return trains_bilevel(bare, build_model(bare, build_tasks(bare, num_classes)))


def equal_update_epochs(cfg: ExperimentConfig, train_images: int, bilevel: bool) -> int:
    """Epochs that give a run as many network updates as ``cfg.train.epochs`` epochs of a non-bilevel run.

    Bilevel runs make half the network steps per epoch, so they get twice the epochs (as ``auxnas demo``);
    fails when no whole number of epochs matches.
    """
    target = steps_per_epoch(train_images, cfg, False) * cfg.train.epochs
    per_epoch = steps_per_epoch(train_images, cfg, bilevel)
    if target % per_epoch:
        raise ValueError(f"{target} network updates are not a whole number of epochs of {per_epoch} steps: choose "
                         "a number of training images whose half is a multiple of data.batch_size")
    return target // per_epoch


def declarations(splits: DataSplits | None) -> dict[str, Any]:
    """The declarations of the tasks ``splits``' dataset declares itself (its task table's mappings; the built-in
    tasks' class counts are in the config's identity through the data)."""
    table = splits.num_classes if splits is not None else {}
    return {name: entry for name, entry in table.items() if isinstance(entry, dict)}


@dataclass(frozen=True)
class Planned:
    """One run a comparison will train or read: its row, seed, config (``config`` with ``overrides``), whether it
    is bilevel, its data record (``DataSplits.record()``) and the identities of the runs its ``init`` names
    (folder -> identity)."""

    row: str
    seed: int
    cfg: ExperimentConfig
    overrides: list[str]
    config: str
    bilevel: bool
    data: dict[str, Any]
    started_from: dict[str, str]
    #: the declarations of the dataset's own tasks (``DataSplits.num_classes``' mappings)
    declared: dict[str, Any] = field(default_factory=dict)

    @property
    def float_format(self) -> str:
        """The float format the run computes in on this machine (``engine.runtime.precision``)."""
        return precision(resolve_device(self.cfg.train.device), self.cfg.train.amp)

    def identity(self, float_format: str) -> str:
        """The run's identity (``records.run_identity``) when it computes in ``float_format``."""
        return run_identity(self.cfg, self.data, float_format, self.started_from, self.declared)


def plan_runs(
    config: str, base_overrides: Sequence[str], rows: Mapping[str, Sequence[str]], wanted: Sequence[str],
    seeds: Sequence[int], runs_dir: Path, splits: DataSplits,
) -> list[Planned]:
    """Every (seed, row) run of ``wanted`` and the rows they start from, seeds outer, rows in the order of
    ``rows``: each row's overrides after ``base_overrides``, the epochs that give single-task's network updates,
    the seed and the run directory ``runs_dir/<row>/seed<k>``, and the identities of the runs it starts from."""
    base = load_config(config, list(base_overrides))
    aux = base.tasks.aux[0] if base.tasks.aux else ""
    train_images, data = len(splits.train), splits.record()
    planned = []
    for seed in seeds:
        identities: dict[str, str] = {}  # run folder -> identity, of the runs of this seed planned so far
        for row in needed_rows(wanted, rows):
            overrides = [*base_overrides, *row_overrides(row, rows, aux, runs_dir, seed)]
            cfg = load_config(config, overrides)
            bilevel = uses_bilevel(cfg, splits.num_classes)
            overrides = last_overrides([
                *overrides, f"train.epochs={equal_update_epochs(cfg, train_images, bilevel)}", f"seed={seed}",
                f"out_dir={runs_dir / row / f'seed{seed}'}",
            ])
            cfg = load_config(config, overrides)
            run = Planned(row, seed, cfg, overrides, config, bilevel, data, dict(identities), declarations(splits))
            identities[cfg.out_dir] = run.identity(run.float_format)
            planned.append(run)
    return planned


class ForeignRunError(ValueError):
    """A run folder a comparison would train into holds another run: training there would replace it."""


def check_run_folder(run: Planned, float_format: str) -> None:
    """Refuse (``ForeignRunError``, naming the folder and what differs) to train ``run`` into a folder that holds
    anything but the same run: finished (its record's identity), stopped midway (its ``config.yaml`` and
    ``data.json``), or a record made before records had an identity that names the same config."""

    def claim(folder: Path) -> str | None:
        if reused_record(folder, run.config, run.overrides, None, run.identity) is not None:
            return None
        saved, data = folder_config(folder), folder_data(folder)
        if read_record(folder) is None and saved is not None and data is not None \
                and run.identity(float_format) == run_identity(saved, data, float_format, run.started_from,
                                                               run.declared):
            return None  # the same run, stopped before it finished
        if saved is None:
            return f"files no run of a comparison writes ({listed(folder)})"
        changes = [c for c in config_changes(saved.to_dict(), run.cfg.to_dict())
                   if c.split(":")[0] not in OUTSIDE_IDENTITY]
        changes += data_changes(data, run.data) if data is not None else []
        return f"another run ({one_line(changes, 4, '; ') or 'another float format'})"

    check_output_folder(Path(run.cfg.out_dir), claim, "a comparison trains only into empty folders or its own runs: "
                        "choose another --out (or --runs), or move that folder away", ForeignRunError)


def check_run_folders(planned: Sequence[Planned]) -> None:
    """``check_run_folder`` for every planned run, before any of them trains."""
    for run in planned:
        check_run_folder(run, run.float_format)


def _trains_again(
    planned: Mapping[str, Planned], rows: Mapping[str, Sequence[str]], runs_dir: Path, seed: int,
) -> set[str]:
    """The rows of one seed (``planned``: row -> its planned run) that have a record to reuse but must train again:
    a run that will train starts from their weights and their checkpoint is gone (records travel without
    checkpoints, e.g. committed beside a benchmark's results), or they start from a run that trains (a record of a
    run started from other weights is not that run any more). Raises ValueError when a recorded run of a row
    outside ``planned`` starts from a run that would be replaced: training here would leave that record naming
    weights it did not start from."""
    recorded = {}
    for row, run in planned.items():
        recorded[row] = reused_record(run.cfg.out_dir, run.config, run.overrides, run.float_format,
                                      run.identity) is not None
    again: set[str] = set()
    changed = True
    while changed:
        changed = False
        trains = {row for row in planned if not recorded[row] or row in again}
        for row in planned:
            if row in again or not recorded[row]:
                continue
            starts_training = any(start in trains for start in row_dependencies(row, rows))
            feeds_training = any(row in row_dependencies(other, rows) for other in trains) \
                and not resolve_checkpoint(planned[row].cfg.out_dir).is_file()
            if starts_training or feeds_training:
                again.add(row)
                changed = True
    orphans = [row for row in rows if row not in planned and (runs_dir / row / f"seed{seed}" / RECORD_FILE).is_file()
               and again & set(row_dependencies(row, rows))]
    if orphans:
        raise ValueError(
            f"seed {seed}: the recorded runs of {', '.join(sorted(again))} in {runs_dir} must train again (a run "
            "that trains starts from them and their checkpoint is gone, or they start from one that trains), but "
            f"the recorded runs of {', '.join(orphans)} started from them and would then name weights they did not "
            "start from; ask for those rows too (they then train again), or train in another runs folder")
    return again
