"""Atomic writes of checkpoints and results, and safe checkpoint loading."""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError as CheckpointError  # raised here, importable from here

#: what every checkpoint written by ``auxnas.train.fit`` holds (``load_trained`` needs them all)
TRAINED_KEYS = ("model", "config", "num_classes", "epoch")


def file_mode(mode: int = 0o666) -> int:
    """``mode`` less the user's umask: what ``open`` (0666) or ``mkdir`` (0777) would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then move it into place.

    The file gets the mode a plain ``open(path, "w")`` would (0666 less the umask), not ``mkstemp``'s 0600;
    the temporary file is removed if writing fails or is interrupted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def unwritable(folder: Path, err: OSError | None = None) -> str:
    """Why ``folder`` cannot be written: a file in its place or on its path, else ``err``'s reason."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                return f"{path} is a file, not a folder"
            break
    if err is None:
        return "no permission"
    where = f": {err.filename}" if err.filename and str(err.filename) != str(folder) else ""
    return f"{err.strerror or err}{where}"


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors, numbers, strings, nested dicts/lists) atomically."""
    return atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", keys: Sequence[str] = ("model", "config")
) -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``); it must hold ``keys``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files, with long messages
        text = str(err)
        found = re.search(r"WeightsUnpickler error:\s*(.*?)(?: was not an allowed global|\.? Please|\n|$)", text)
        detail = found.group(1).strip() if found else next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in text:  # e.g. a whole nn.Module
            raise CheckpointError(f"{path}: not an auxnas checkpoint: it holds Python objects ({detail}), not only "
                                  "tensors and plain data (checkpoints are loaded with weights_only=True)") from None
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({type(err).__name__}: {detail})") from None
    missing = [k for k in keys if k not in payload] if isinstance(payload, dict) else list(keys)
    if missing:
        if not isinstance(payload, dict):
            held = f"a {type(payload).__name__}"
        elif payload:
            held = "keys " + ", ".join([repr(k) for k in payload][:5]) + (", ..." if len(payload) > 5 else "")
        else:
            held = "nothing"
        raise CheckpointError(f"{path}: not an auxnas checkpoint: it lacks {', '.join(map(repr, missing))} (it holds "
                              f"{held}; expected keys {', '.join(map(repr, keys))})")
    return payload


def weights_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any]) -> str | None:
    """How the state dict ``given`` does not fit a model whose state dict is ``expected``, or None when it does."""

    def shape(value: Any) -> str:
        return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [f"{k} {shape(given[k])} instead of {shape(v)}" for k, v in expected.items()
                if k in given and shape(given[k]) != shape(v)]
    problems = [f"{len(names)} {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                for what, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped))
                if names]
    return "; ".join(problems) or None


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically."""
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run directory (its selected checkpoint ``best.pt``) or a checkpoint file."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def check_output_folder(
    folder: Path, claim: Callable[[Path], str | None], remedy: str, error: type[Exception] = FileExistsError,
) -> None:
    """The rule of every command that writes into a folder (train, compare, bench, recipe, export, predict): the folder
    is absent or empty, or ``claim(folder)`` finds in it only what the command made itself for the same run (its
    record says so) and returns None. Otherwise ``error``, one line naming the folder, what it holds (``claim``'s
    answer) and ``remedy``; a file or a symbolic link in its place is never written through."""
    if folder.is_symlink():
        raise error(f"{folder}: is a symbolic link (to {os.readlink(folder)}); {remedy}")
    if folder.exists() and not folder.is_dir():
        raise error(f"{folder}: is a file, not a folder; {remedy}")
    if not folder.exists() or not any(folder.iterdir()):
        return
    holds = claim(folder)
    if holds is not None:
        raise error(f"{folder}: holds {holds}; {remedy}")


def one_line(items: Sequence[str], most: int, separator: str = ", ") -> str:
    """At most ``most`` of ``items`` in one line, and how many more there are."""
    rest = len(items) - most
    return separator.join(items[:most]) + (f"{separator}and {rest} more" if rest > 0 else "")


def listed(folder: Path, names: Sequence[str] | None = None, most: int = 5) -> str:
    """``names`` (default: what ``folder`` holds, folders with a slash) in one line, at most ``most`` of them."""
    if names is None:
        names = [p.name + ("/" if p.is_dir() else "") for p in sorted(folder.iterdir())]
    return one_line(names, most)


def check_own_report(report: Path, record: Path, made_by: str) -> None:
    """Refuse (``FileExistsError`` naming the file) to write ``report`` over a file the command did not write: it
    exists, and ``record`` (the JSON the same command writes beside it) is missing or names another maker than
    ``made_by`` (its ``made_by`` key; a record of an older auxnas, without one, names the report itself)."""
    if not report.exists():
        return
    try:
        data = json.loads(record.read_text())
        named = [Path(data[key]).name for key in ("markdown_file", "report") if isinstance(data.get(key), str)]
        ours = data.get("made_by", made_by if report.name in named else None) == made_by
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise FileExistsError(f"{report}: exists and was not written by {made_by} (no {record.name} of it beside it); "
                              "choose another --out, or move the file away")
