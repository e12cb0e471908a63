"""Train the runs of a comparison, in this process or in a pool of spawned ones, and show progress.

``train_rows`` trains every (seed, row) run that ``plan.plan_runs`` gives, with equal network updates, seeds
outer; ``train_run`` trains one. Each finished run writes its record (``RECORD_FILE``) into its run directory;
with ``reuse`` a later call reads it instead of training again when it is the same run (``records.reused_record``),
and a run stopped after a finished epoch continues from its ``last.pt``, so an interrupted comparison continues
where it stopped. ``train_units`` trains units (one seed's runs of some rows each) in separate processes.

What trains a run is passed in (``trainer``; None: ``auxnas.train.fit``); a unit's trainer crosses into a
spawned process, so it must be picklable (a module-level function).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import ExperimentConfig, load_config
from ..data import DataSplits, build_splits
from ..engine.loaders import steps_per_epoch
from ..engine.record import EpochRecord, stalled
from ..engine.run_dir import RunDirectoryError, resumable_checkpoint
from ..errors import CheckpointError
from ..storage import write_json
from ..train import RunResult, fit
from .plan import Planned, _trains_again, check_run_folder, check_run_folders, declarations, plan_runs
from .records import RECORD_FILE, RECORD_PRECISION, reused_record

#: what trains one run: ``auxnas.train.fit``'s signature (a config; ``progress``, ``overwrite`` or ``resume``)
Trainer = Callable[..., RunResult]


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
    trainer: Trainer | None = None,
) -> dict[str, Any]:
    """Train one run, ``cfg`` (``config`` with ``overrides``), or with ``reuse`` read the record of the same
    finished run (or continue the same run stopped after an epoch); return its record: what a comparison reports
    of it. ``extra`` is added to a new record; ``started_from`` maps the run folders its ``init`` names to their
    runs' identities. With ``train`` False the record is only read: a run without one is an error (regenerating a
    table from committed records must never start training into them). A folder holding another run is refused
    before anything is written (``check_run_folder``). ``trainer`` trains it (None: ``auxnas.train.fit``)."""
    train_one = trainer if trainer is not None else fit
    run = Planned(label, seed, cfg, overrides, config, bilevel, splits.record() if splits is not None else {},
                  dict(started_from), declarations(splits))
    here = run.float_format if train else None  # reading: any machine
    record = reused_record(cfg.out_dir, config, overrides, here, run.identity) if reuse or not train else None
    if record is not None:
        return _with_stall({**record, "reused": True}, cfg.tasks.primary)
    if not train:
        raise FileNotFoundError(f"{cfg.out_dir}: no record of a finished run of {label} seed {seed} with these "
                                "overrides, and reading only (--reuse-only, train=False) trains nothing; run "
                                "without it to train the missing runs")
    check_run_folder(run, here)
    # an earlier record goes before training starts: a run stopped midway must not leave it for a later reuse
    (Path(cfg.out_dir) / RECORD_FILE).unlink(missing_ok=True)
    resumed = _interrupted(cfg) if reuse else None
    if resumed is not None:  # continues from its last finished epoch, to the weights of an unbroken run
        result = train_one(cfg, progress=False, resume=True)
    else:
        result = train_one(cfg, progress=False, overwrite=True)  # the comparison's own run directory (checked above)
    links = result.history[-1].recorded.get("link_strengths")
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
        "train_labels": result.train_labels, "final_train_losses": result.history[-1].train_task_losses,
        "link_strengths": links, "a2p_max": max(a2p) if a2p else None, "wall_time_s": result.wall_time_s,
        RECORD_PRECISION: here, "threads": torch.get_num_threads(),  # float rounding, and so results, depend on it
        "identity": run.identity(here), "data": run.data,
        "resumed_after_epoch": resumed,  # wall_time_s counts the sessions before it (not with an older last.pt)
    }
    write_json(Path(cfg.out_dir) / RECORD_FILE, record)
    return _with_stall(record, primary)


def _with_stall(record: dict[str, Any], primary: str) -> dict[str, Any]:
    """``record`` with ``primary_stalled: True`` when its run's primary stopped learning (``engine.record.stalled``,
    read from the ``metrics.json`` beside it, so that older records are judged alike); unchanged otherwise."""
    try:
        history = json.loads((Path(record["run_dir"]) / "metrics.json").read_text())["history"]
        halted = stalled([EpochRecord.from_dict(r) for r in history], primary)
    except (OSError, ValueError, KeyError, TypeError):
        return record
    return {**record, "primary_stalled": True} if halted else record


def train_rows(
    config: str, base_overrides: Sequence[str], rows: Mapping[str, Sequence[str]], wanted: Sequence[str],
    seeds: Sequence[int], runs_dir: Path, splits: DataSplits, main_metrics: Mapping[str, str], reuse: bool = False,
    progress: Progress | None = None, extra: Mapping[str, Any] | None = None, train: bool = True,
    trainer: Trainer | None = None,
) -> list[dict[str, Any]]:
    """Every (seed, row) run of ``wanted`` (and the rows they start from) on ``config`` with ``base_overrides``
    (``plan_runs``). Seeds outer, rows inner: a change of load on a shared machine hits every row's wall time
    alike. Returns the runs' records, each shown through ``progress`` with the main metric (``main_metrics``: task
    -> metric) of its own primary task (a row may change the primary). With ``train`` False every run is read from
    its record, none trained (``train_run``). Before anything trains, a run folder holding another run is refused
    (``check_run_folders``). With ``reuse``, a recorded run trains again when a run that trains starts from it and
    its checkpoint is gone. ``trainer`` trains each run (``train_run``)."""
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
                               reuse and row not in again, extra, train, run.started_from, trainer)
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


@dataclass(frozen=True)
class Unit:
    """One seed's runs of the rows ``wanted`` (and those they start from) on ``config`` with ``base_overrides``, in
    ``runs_dir``: what ``train_units`` gives one process, where they run in order (a row may start from another
    row's run of the same seed). ``name`` shows it in progress lines; ``extra`` goes into its records.
    ``trainer`` trains its runs (None: ``auxnas.train.fit``); it crosses into a spawned process, so it must be
    picklable (a module-level function)."""

    config: str
    base_overrides: tuple[str, ...]
    rows: Mapping[str, Sequence[str]]
    wanted: tuple[str, ...]
    seed: int
    runs_dir: Path
    name: str
    extra: Mapping[str, Any] | None = None
    trainer: Trainer | None = None


def _train_unit(unit: Unit, reuse: bool, threads: int) -> tuple[list[str], float]:
    """Train ``unit`` in a worker process of ``train_units`` on ``threads`` threads; returns the folders of the runs
    it trained (not those it reused) and its wall time."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    splits = build_splits(load_config(unit.config, list(unit.base_overrides)).data, progress=False)
    runs = train_rows(unit.config, unit.base_overrides, unit.rows, unit.wanted, [unit.seed], unit.runs_dir, splits,
                      {}, reuse, extra=unit.extra, trainer=unit.trainer)
    return [r["run_dir"] for r in runs if not r.get("reused")], time.perf_counter() - start


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate ``pool``'s worker processes and wait for them: a run they leave stopped midway continues from its
    last finished epoch with ``reuse``. (The executor has no public way to stop a running task: its processes.)"""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=30)


def train_units(
    units: Sequence[Unit], jobs: int, reuse: bool, show: Callable[[str], None] | None = print_now,
) -> set[str]:
    """Train every unit, ``jobs`` at a time in separate (spawned) processes, each on its share of this machine's
    cores; on CUDA they share the GPU. Units start in the order given, each when a process is free. A failure is
    shown at once and starts no further unit; the call raises it when the units still running have finished (a
    unit stopped midway continues with ``reuse``). ``show`` receives a line per finished unit, with the time left.
    Returns the folders of the runs trained (read them back with ``train_rows(..., train=False)`` and
    ``mark_trained``). Stopped by Ctrl-C or a kill (SIGTERM), it ends its workers before it raises: none trains on.
    """
    if jobs < 1:
        raise ValueError(f"jobs: need at least 1 process, got {jobs}")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    progress = Progress(len(units), show, counted=" units", parallel=jobs)
    waiting = list(units)
    running: dict[Future, Unit] = {}
    trained: set[str] = set()
    failure: BaseException | None = None
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None  # a kill: as Ctrl-C
    try:
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
    except BaseException:
        _end_workers(pool)  # stopped (Ctrl-C, a kill): no worker may train on, unseen, into the runs folder
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    if failure is not None:
        raise failure
    return trained


def mark_trained(runs: list[dict[str, Any]], trained: set[str]) -> list[dict[str, Any]]:
    """``runs`` as read from their records, those in ``trained`` (by ``train_units``, just now) not counted as
    reused."""
    return [{**r, "reused": False} if r["run_dir"] in trained else r for r in runs]
