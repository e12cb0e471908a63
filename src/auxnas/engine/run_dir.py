"""The run directory: what a run writes there, and the refusals that keep it from mixing two runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..config import ExperimentConfig, config_from_dict
from ..export_options import is_export_folder
from ..storage import check_output_folder, listed, load_checkpoint, unwritable, write_json, write_text

#: the files a run writes into its directory
RUN_FILES = ("config.yaml", "data.json", "best.pt", "last.pt", "metrics.json", "tensorboard")
#: the files of a run that finished an epoch; a folder of run files without them holds a start that failed
FINISHED_EPOCH_FILES = ("best.pt", "last.pt", "metrics.json")


class RunDirectoryError(ValueError):
    """The run directory cannot be used (it already holds files and overwriting was not asked for)."""


def prepare_run_dir(out_dir: Path, overwrite: bool) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``overwrite``, which removes an earlier run's files and
    the export folders in it (made from that run, they would pass for exports of the new one).

    A run must never pick up a checkpoint it did not write (a diverged run would report the older model). A folder
    holding only the files of a run that never finished an epoch (no checkpoint, no metrics: e.g. one that failed
    on a data error) is reused without ``overwrite``, so that the corrected command simply runs again; a
    ``config.yaml`` that is not a resolved config auxnas wrote is the user's own, and only ``overwrite`` replaces it.
    Only the exports made from this folder's run go with it: an export of another run placed inside stays.
    """
    def claim(folder: Path) -> str | None:
        existing = sorted(p.name for p in folder.iterdir())
        failed_start = set(existing) <= set(RUN_FILES) and not set(existing) & set(FINISHED_EPOCH_FILES) \
            and ("config.yaml" not in existing or _written_by_a_run(folder / "config.yaml"))
        return None if overwrite or failed_start else f"files ({listed(folder, existing)})"

    try:
        check_output_folder(out_dir, claim, "choose another out_dir or overwrite its run files (auxnas train "
                            "--overwrite, fit(..., overwrite=True))", RunDirectoryError)
        existing = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
        exports = [p.name for p in out_dir.iterdir()
                   if p.is_dir() and is_export_folder(p) and _exported_from(p, out_dir)] if existing else []
        for name in (*RUN_FILES, *exports) if existing else ():
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
            (out_dir / name).unlink(missing_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file on the way, no permission, a read-only file system
        raise RunDirectoryError(f"out_dir {out_dir}: cannot be written ({unwritable(out_dir, err)}); choose another "
                                "out_dir") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"out_dir {out_dir}: cannot be written (no permission); choose another out_dir")


def _written_by_a_run(path: Path) -> bool:
    """Whether ``path`` is the resolved ``config.yaml`` a run writes at its start (every key, as auxnas writes it),
    not a config file of the user's."""
    try:
        text = path.read_text()
        return yaml.safe_dump(config_from_dict(yaml.safe_load(text)).to_dict(), sort_keys=False) == text
    except (OSError, ValueError, yaml.YAMLError, TypeError, AttributeError):
        return False


def _exported_from(export: Path, run_dir: Path) -> bool:
    """Whether the export in ``export`` was made from the run in ``run_dir`` (its report's ``source``: the run
    folder or a checkpoint in it)."""
    try:
        source = Path(json.loads((export / "export_report.json").read_text())["source"]).resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return run_dir.resolve() in (source, source.parent)


def start_run_dir(out_dir: Path, cfg: ExperimentConfig, overwrite: bool) -> None:
    """``prepare_run_dir`` and write the resolved ``config.yaml``."""
    prepare_run_dir(out_dir, overwrite)
    write_text(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def data_changes(recorded: Any, new: dict[str, dict[str, Any]]) -> list[str]:
    """What differs between two data records (``DataSplits.record()``: split -> image count and fingerprint), split
    by split; ``recorded`` may be anything a file held."""
    changes = []
    for split, now in new.items():
        then = recorded.get(split, {}) if isinstance(recorded, dict) else {}
        if then.get("images") != now["images"]:
            changes.append(f"{split}: {then.get('images')} images then, {now['images']} now")
        elif then.get("fingerprint") != now["fingerprint"]:
            changes.append(f"{split}: {now['images']} images then and now, but not the same ones")
    return changes


def check_same_data(out_dir: Path, record: dict[str, dict[str, Any]]) -> None:
    """Refuse to resume the run in ``out_dir`` on other data than it started on (its ``data.json``, written at its
    start; a run of an older auxnas has none and is not checked)."""
    path = out_dir / "data.json"
    if not path.is_file():
        return
    try:
        then = json.loads(path.read_text())
    except ValueError:
        raise RunDirectoryError(f"{path}: not the JSON auxnas writes; restore it, or start a new run") from None
    changes = data_changes(then, record)
    if changes:
        raise RunDirectoryError(f"{path}: the data differ from those the run started on ({'; '.join(changes)}); a "
                                "resumed run must see the same data: restore them, or start a new run")


def record_data(out_dir: Path, record: dict[str, dict[str, Any]]) -> None:
    """Write ``data.json``: what the run trains on (``DataSplits.record``), which ``check_same_data`` compares."""
    write_json(out_dir / "data.json", record)


def resumable_checkpoint(out_dir: Path, cfg: ExperimentConfig) -> dict[str, Any]:
    """The ``last.pt`` payload to resume ``cfg`` from in ``out_dir``; fails unless the run's config and
    checkpoint belong together and the checkpoint holds the training state."""
    last = out_dir / "last.pt"
    if out_dir.is_dir() and not os.access(out_dir, os.W_OK | os.X_OK):  # before anything starts writing there
        raise RunDirectoryError(f"{out_dir}: cannot be written (no permission, or a read-only file system), and a "
                                "resumed run writes its checkpoints there: make it writable, or copy the run folder "
                                "somewhere writable and resume that copy")
    if not last.is_file() and (out_dir / "metrics.json").is_file():
        raise RunDirectoryError(f"{out_dir}: the run finished (metrics.json) but its last.pt is missing, so it cannot "
                                "be continued; its results and best.pt are still there (auxnas evaluate, auxnas export)"
                                "; to train it again choose another out_dir (--overwrite would replace this run)")
    if not last.is_file():
        raise RunDirectoryError(f"{out_dir}: no last.pt to resume from (the run stopped before its first epoch "
                                "ended): start it again with its config (auxnas train CONFIG); a folder holding a run "
                                "that never finished an epoch is reused without --overwrite")
    payload = load_checkpoint(last)
    if {**payload.get("config", {}), "out_dir": None} != {**cfg.to_dict(), "out_dir": None}:  # may have moved
        raise RunDirectoryError(f"{last}: was written with another config than {out_dir / 'config.yaml'}; the "
                                "folder mixes two runs: start again with --overwrite")
    if "state" not in payload:
        raise RunDirectoryError(f"{last}: holds no training state (a checkpoint of an older auxnas or a finished "
                                "run's export); start again with --overwrite")
    return payload
