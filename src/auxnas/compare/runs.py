"""Train rows over seeds on one config, with equal network updates; read finished runs back instead of retraining.

A *row* is a label and the overrides that make it (``method.name=aux_nas``, ``weighting.name=gcs``, a noise
control, ...). Every row of a comparison trains on the same config and overrides, once per seed, and makes as
many network updates as single-task does in ``train.epochs`` epochs (bilevel rows, which spend half of every
epoch's images on architecture steps, get the epochs that give that count). Each finished run writes its record
(``RECORD_FILE``) into its run directory; with ``reuse`` a later call reads it instead of training again when the
run's overrides are the same, and a run stopped after a finished epoch continues from its ``last.pt``, so an
interrupted comparison continues where it stopped.

A row's overrides may hold two placeholders: ``{aux}`` (the config's first auxiliary task) and ``{run:<row>}``
(the run directory of row ``<row>`` of the same seed, for rows that start from another row's run).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shlex
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, ExperimentConfig, load_config
from ..data import DataSplits, build_splits
from ..engine.loaders import steps_per_epoch
from ..engine.run_dir import RunDirectoryError, data_changes, resumable_checkpoint
from ..engine.runtime import precision, resolve_device
from ..errors import CheckpointError
from ..io import check_output_folder, listed, resolve_checkpoint, write_json
from ..methods import build_model, trains_bilevel
from ..tasks import build_tasks
from ..train import fit
from .records import (
    OUTSIDE_IDENTITY,
    RECORD_FILE,
    RECORD_PRECISION,
    config_changes,
    folder_config,
    folder_data,
    read_record,
    run_identity,
    shown,
)
from .rows import needed_rows, row_dependencies, row_overrides


def last_overrides(overrides: Sequence[str]) -> list[str]:
    """``overrides`` without those a later one of the same key replaces: the same config, readable commands."""
    seen: set[str] = set()
    kept = []
    for text in reversed(overrides):
        key = text.split("=", 1)[0]
        if key not in seen:
            seen.add(key)
            kept.append(text)
    return kept[::-1]


def uses_bilevel(cfg: ExperimentConfig, num_classes: dict[str, int]) -> bool:
    """Whether ``fit`` trains ``cfg`` bilevel: the model has architecture weights and the search is bilevel
    (aux_nas, adashare, adashare_aux); such a run spends half of every epoch's images on architecture steps.
    The model is built without its initial weights (``cfg.init``): they change no architecture, and a reused run
    needs no checkpoint of the runs it started from."""
    if cfg.method.optimization != "bilevel":
        return False
    bare = dataclasses.replace(cfg, init=type(cfg.init)())
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


def _legacy_fields(config: str, overrides: Sequence[str]) -> dict[str, Any] | None:
    """The resolved config of ``config`` with ``overrides`` but ``OUTSIDE_IDENTITY``, by which a record without an
    identity (written before records had one) is matched (None when it no longer loads)."""
    try:
        fields = dataclasses.asdict(load_config(config, list(overrides)))
    except (ConfigError, ValueError, TypeError):
        return None
    for key in OUTSIDE_IDENTITY:
        *sections, name = key.split(".")
        section = fields
        for part in sections:
            section = section[part]
        section.pop(name)
    return fields


def _last_value(overrides: Sequence[str], key: str) -> str | None:
    """The value the last ``key=value`` of ``overrides`` gives ``key``; None when none sets it."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].strip() == key]
    return values[-1] if values else None


def mixed_runs_text(overrides: Sequence[str], runs: Sequence[Mapping[str, Any]]) -> str:
    """A report's sentence on what ``runs`` were trained with where it differs from ``overrides`` (those of the
    whole comparison) without changing their identity: other values of keys outside it (a comparison may switch
    them midway; each record keeps its own), or more than one float format; '' when nothing differs."""
    differ = []
    for key in OUTSIDE_IDENTITY[1:]:  # not the name
        wanted = _last_value(overrides, key)
        found = Counter(_last_value(r["overrides"], key) for r in runs)
        differ += [f"`{key}` {'unset' if value is None else value} in {n}"
                   for value, n in found.items() if value != wanted]
    formats = Counter(r.get(RECORD_PRECISION, "float32") for r in runs)
    text = (f" Runs trained with other values of keys outside a run's identity (speed, logging) than these "
            f"overrides give, each record keeping its own: {', '.join(differ)}." if differ else "")
    if len(formats) > 1:
        text += " Float formats: " + ", ".join(f"{f} in {n} runs" for f, n in sorted(formats.items())) + "."
    return text


def identity_overrides(overrides: Sequence[str]) -> list[str]:
    """``overrides`` without those of ``OUTSIDE_IDENTITY``'s keys: what they change in a run's identity."""
    return [o for o in overrides if o.split("=", 1)[0].strip() not in OUTSIDE_IDENTITY]


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

    def identity(self, float_format: str) -> str:
        """The run's identity (``records.run_identity``) when it computes in ``float_format``."""
        return run_identity(self.cfg, self.data, float_format, self.started_from, self.declared)


def reused_record(
    run_dir: str | Path, config: str, overrides: list[str], float_format: str | None = None,
    identity: Callable[[str], str] | None = None,
) -> dict[str, Any] | None:
    """The record of a finished run in ``run_dir`` that is the run of ``config`` with ``overrides``, or None;
    with ``float_format``, None also when the run computed in another float format (``RECORD_PRECISION``).

    ``identity`` gives the new run's identity in a float format (``records.run_identity``): a record that carries
    one is the same run exactly when the two are equal. A record without one (written before records had it) is
    the same run when it was made from the same config and overrides or, made from another config and overrides
    (e.g. the accuracy benchmark's settings before they became configs), resolves to the same config but for its
    name. Records may move with their runs folder (e.g. committed beside a benchmark's results): the record
    returned names ``run_dir``, where it was found, as the run's folder."""
    record = read_record(run_dir)
    if record is None:
        return None
    found = record.get(RECORD_PRECISION, "float32")
    if float_format is not None and found != float_format:
        return None
    if identity is not None and "identity" in record:
        same = record["identity"] == identity(found)
    else:
        try:
            made_from = shlex.split(record["command"])[2]
            old_runs, new_runs = str(Path(record["run_dir"]).parent.parent), str(Path(run_dir).parent.parent)
            recorded = [o.replace(old_runs, new_runs) for o in record.get("overrides") or []]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None
        same = recorded == overrides and made_from == config
        if not same:
            fields = _legacy_fields(made_from, recorded)
            same = fields is not None and fields == _legacy_fields(config, overrides)
    return {**record, "run_dir": str(run_dir)} if same else None


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
        return f"another run ({shown(changes) or 'another float format'})"

    check_output_folder(Path(run.cfg.out_dir), claim, "a comparison trains only into empty folders or its own runs: "
                        "choose another --out (or --runs), or move that folder away", ForeignRunError)


def print_now(line: str) -> None:
    """Print ``line`` at once, also into a file or pipe (a long job's log shows each run as it ends)."""
    print(line, flush=True)


@dataclass
class Progress:
    """Progress over a whole comparison (several calls of ``train_rows`` may share one): runs (or ``counted``,
    e.g. " units") done out of ``total`` and the time left, estimated from those trained so far, ``parallel`` of
    them at a time. ``show`` receives each line."""

    total: int
    show: Callable[[str], None] | None = print_now
    counted: str = ""
    parallel: int = 1
    done: int = 0
    trained_s: list[float] = field(default_factory=list)

    def finished(self, text: str, wall_time_s: float | None) -> None:
        """Count one run (``wall_time_s``: its training time; None when it was reused) and show ``text``."""
        self.done += 1
        if wall_time_s is not None:
            self.trained_s.append(wall_time_s)
        if self.show is None:
            return
        left = self.total - self.done
        estimate = ""
        if left and self.trained_s and sum(self.trained_s) > 0:
            seconds = left * sum(self.trained_s) / len(self.trained_s) / min(self.parallel, left)
            estimate = f"; about {seconds / 60:.0f} min left" if seconds >= 90 else f"; about {seconds:.0f} s left"
        self.show(f"[{self.done}/{self.total}{self.counted}] {text}{estimate}")


def _interrupted(cfg: ExperimentConfig) -> int | None:
    """The last finished epoch of this run stopped in ``cfg.out_dir`` (a ``last.pt`` of the same config), or
    None when there is none to continue."""
    try:
        return int(resumable_checkpoint(Path(cfg.out_dir), cfg)["epoch"])
    except (RunDirectoryError, CheckpointError, KeyError, TypeError, ValueError):
        return None


def train_run(
    label: str, seed: int, cfg: ExperimentConfig, overrides: list[str], config: str, splits: DataSplits | None,
    bilevel: bool, reuse: bool, extra: Mapping[str, Any] | None = None, train: bool = True,
    started_from: Mapping[str, str] = {},  # noqa: B006
) -> dict[str, Any]:
    """Train one run, ``cfg`` (``config`` with ``overrides``), or with ``reuse`` read the record of the same
    finished run (or continue the same run stopped after an epoch); return its record: what a comparison reports
    of it. ``extra`` is added to a new record; ``started_from`` maps the run folders its ``init`` names to their
    runs' identities. With ``train`` False the record is only read: a run without one is an error (regenerating a
    table from committed records must never start training into them). A folder holding another run is refused
    before anything is written (``check_run_folder``)."""
    run = Planned(label, seed, cfg, overrides, config, bilevel, splits.record() if splits is not None else {},
                  dict(started_from), declarations(splits))
    here = precision(resolve_device(cfg.train.device), cfg.train.amp) if train else None  # reading: any machine
    record = reused_record(cfg.out_dir, config, overrides, here, run.identity) if reuse or not train else None
    if record is not None:
        return {**record, "reused": True}
    if not train:
        raise FileNotFoundError(f"{cfg.out_dir}: no record of a finished run of {label} seed {seed} with these "
                                "overrides, and reading only (--reuse-only, train=False) trains nothing; run "
                                "without it to train the missing runs")
    check_run_folder(run, here)
    # an earlier record goes before training starts: a run stopped midway must not leave it for a later reuse
    (Path(cfg.out_dir) / RECORD_FILE).unlink(missing_ok=True)
    resumed = _interrupted(cfg) if reuse else None
    if resumed is not None:  # continues from its last finished epoch, to the weights of an unbroken run
        result = fit(cfg, progress=False, resume=True)
    else:
        result = fit(cfg, progress=False, overwrite=True)  # the comparison's own run directory (checked above)
    links = result.history[-1].get("link_strengths")
    a2p = [s for key, values in (links or {}).items() if key.startswith("a2p/") for s in values]
    primary = cfg.tasks.primary
    record = {
        **(extra or {}), "row": label, "seed": seed, "run_dir": cfg.out_dir, "overrides": overrides,
        "command": shlex.join(["auxnas", "train", config, *overrides]),
        "method": cfg.method.name, "weighting": cfg.weighting.name, "random_targets": cfg.data.random_targets,
        "bilevel": bilevel, "epochs": cfg.train.epochs,
        "network_updates": steps_per_epoch(len(splits.train), cfg, bilevel) * cfg.train.epochs,
        "best_epoch": result.best_epoch, "test_best": result.test_best[primary],
        "test_last": result.test_last[primary], "val_best": result.val_best[primary],
        "train_labels": result.train_labels, "final_train_losses": result.history[-1]["train_task_losses"],
        "link_strengths": links, "a2p_max": max(a2p) if a2p else None, "wall_time_s": result.wall_time_s,
        RECORD_PRECISION: here, "threads": torch.get_num_threads(),  # float rounding, and so results, depend on it
        "identity": run.identity(here), "data": run.data,
        "resumed_after_epoch": resumed,  # wall_time_s counts the sessions before it (not with an older last.pt)
    }
    write_json(Path(cfg.out_dir) / RECORD_FILE, record)
    return record


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
            identities[cfg.out_dir] = run.identity(precision(resolve_device(cfg.train.device), cfg.train.amp))
            planned.append(run)
    return planned


def check_run_folders(planned: Sequence[Planned]) -> None:
    """``check_run_folder`` for every planned run, before any of them trains."""
    for run in planned:
        check_run_folder(run, precision(resolve_device(run.cfg.train.device), run.cfg.train.amp))


def train_rows(
    config: str, base_overrides: Sequence[str], rows: Mapping[str, Sequence[str]], wanted: Sequence[str],
    seeds: Sequence[int], runs_dir: Path, splits: DataSplits, main_metrics: Mapping[str, str], reuse: bool = False,
    progress: Progress | None = None, extra: Mapping[str, Any] | None = None, train: bool = True,
) -> list[dict[str, Any]]:
    """Every (seed, row) run of ``wanted`` (and the rows they start from) on ``config`` with ``base_overrides``
    (``plan_runs``). Seeds outer, rows inner: a change of load on a shared machine hits every row's wall time
    alike. Returns the runs' records, each shown through ``progress`` with the main metric (``main_metrics``: task
    -> metric) of its own primary task (a row may change the primary). With ``train`` False every run is read from
    its record, none trained (``train_run``). Before anything trains, a run folder holding another run is refused
    (``check_run_folders``). With ``reuse``, a recorded run trains again when a run that trains starts from it and
    its checkpoint is gone."""
    planned = plan_runs(config, base_overrides, rows, wanted, seeds, runs_dir, splits)
    if train:
        check_run_folders(planned)
    records = []
    for seed in seeds:
        of_seed = {run.row: run for run in planned if run.seed == seed}
        again = _trains_again(of_seed, rows, runs_dir, seed) if train and reuse else set()
        for row, run in of_seed.items():
            start = time.perf_counter()
            record = train_run(row, seed, run.cfg, run.overrides, config, splits, run.bilevel,
                               reuse and row not in again, extra, train, run.started_from)
            records.append(record)
            if progress is not None:
                where = f"{extra['setting']} " if extra and "setting" in extra else ""
                if record.get("reused"):
                    text = f"{where}{row} seed {seed}: reused {record['run_dir']}"
                    progress.finished(text, None)
                else:
                    primary = run.cfg.tasks.primary
                    main = main_metrics[primary]
                    text = (f"{where}{row} seed {seed}: {primary}/{main} {record['test_best'][main]:.4g} "
                            f"selected (epoch {record['best_epoch']}/{record['epochs']}), "
                            f"{record['test_last'][main]:.4g} last, {record['wall_time_s']:.0f} s")
                    progress.finished(text, time.perf_counter() - start)
    return records


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
        here = precision(resolve_device(run.cfg.train.device), run.cfg.train.amp)
        recorded[row] = reused_record(run.cfg.out_dir, run.config, run.overrides, here, run.identity) is not None
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


@dataclass(frozen=True)
class Unit:
    """One seed's runs of the rows ``wanted`` (and those they start from) on ``config`` with ``base_overrides``, in
    ``runs_dir``: what ``train_units`` gives one process, where they run in order (a row may start from another
    row's run of the same seed). ``name`` shows it in progress lines; ``extra`` goes into its records."""

    config: str
    base_overrides: tuple[str, ...]
    rows: Mapping[str, Sequence[str]]
    wanted: tuple[str, ...]
    seed: int
    runs_dir: Path
    name: str
    extra: Mapping[str, Any] | None = None


def _train_unit(unit: Unit, reuse: bool, threads: int) -> tuple[list[str], float]:
    """Train ``unit`` in a worker process of ``train_units`` on ``threads`` threads; returns the folders of the runs
    it trained (not those it reused) and its wall time."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    splits = build_splits(load_config(unit.config, list(unit.base_overrides)).data, progress=False)
    runs = train_rows(unit.config, unit.base_overrides, unit.rows, unit.wanted, [unit.seed], unit.runs_dir, splits,
                      {}, reuse, extra=unit.extra)
    return [r["run_dir"] for r in runs if not r.get("reused")], time.perf_counter() - start


def train_units(
    units: Sequence[Unit], jobs: int, reuse: bool, show: Callable[[str], None] | None = print_now,
) -> set[str]:
    """Train every unit, ``jobs`` at a time in separate (spawned) processes, each on its share of this machine's
    cores; on CUDA they share the GPU. Units start in the order given, each when a process is free. A failure is
    shown at once and starts no further unit; the call raises it when the units still running have finished (a
    unit stopped midway continues with ``reuse``). ``show`` receives a line per finished unit, with the time left.
    Returns the folders of the runs trained (read them back with ``train_rows(..., train=False)`` and
    ``mark_trained``)."""
    if jobs < 1:
        raise ValueError(f"jobs: need at least 1 process, got {jobs}")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    progress = Progress(len(units), show, counted=" units", parallel=jobs)
    waiting = list(units)
    running: dict[Future, Unit] = {}
    trained: set[str] = set()
    failure: BaseException | None = None
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while running or (waiting and failure is None):
            while waiting and failure is None and len(running) < jobs:
                unit = waiting.pop(0)
                running[pool.submit(_train_unit, unit, reuse, threads)] = unit
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = running.pop(future)
                try:
                    run_dirs, seconds = future.result()
                except Exception as err:
                    if show is not None:
                        show(f"{unit.name}: failed ({err}); no further unit starts, {len(running)} still running")
                    failure = failure or err
                    continue
                trained.update(run_dirs)
                progress.finished(f"{unit.name}: {len(run_dirs)} runs trained, {seconds:.0f} s",
                                  seconds if run_dirs else None)  # a unit only read back says nothing of time
    if failure is not None:
        raise failure
    return trained


def mark_trained(runs: list[dict[str, Any]], trained: set[str]) -> list[dict[str, Any]]:
    """``runs`` as read from their records, those in ``trained`` (by ``train_units``, just now) not counted as
    reused."""
    return [{**r, "reused": False} if r["run_dir"] in trained else r for r in runs]
