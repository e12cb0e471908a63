"""What a run of a comparison is (its identity) and what it leaves (its record): reuse is a lookup of the identity.

A run's identity is the sha256 of what decides what it computes: its resolved config (every field not at the
schema's default as it was when identities began, ``identity_defaults.IDENTITY_DEFAULTS``, but those of
``OUTSIDE_IDENTITY`` and its own folder; the folders of the runs it starts from
enter as *their* identities), the fingerprint of its data (each split's image count and names), its float format
and the declarations of a dataset's own tasks. Two runs of one identity are the same run wherever their folders
are; a run whose config file was edited, or whose data changed, is another run even at the same path with the
same overrides.

Here too what reads records back and matches them with a run (``reused_record``, also for records made before
records had an identity) and what reads overrides (``last_overrides``, ``identity_overrides``, and the report's
sentence on runs trained with other keys outside the identity, ``mixed_runs_text``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    read_config_file,
    resolve_config_path,
)
from .identity_defaults import IDENTITY_DEFAULTS

#: a finished run's record, in its run directory: what ``reuse`` reads instead of training again
RECORD_FILE = "bench_run.json"
#: the float format a record's run computed in (``engine.runtime.precision``; CUDA's bfloat16 autocast, or float32)
RECORD_PRECISION = "precision"
#: config keys that change how fast a run computes or what it logs, never what it learns (the NHWC layout computes
#: the same network, float rounding apart): runs that differ only in them are the same run. ``train.amp`` is among
#: them because what it changes is the float format, which depends on the machine as well (bfloat16 on CUDA only)
#: and which the identity holds instead
OUTSIDE_IDENTITY = ("name", "train.channels_last", "train.tensorboard", "train.amp")


def identity_fields(cfg: ExperimentConfig, started_from: Mapping[str, str] = {}) -> dict[str, Any]:  # noqa: B006
    """The fields of ``cfg`` that make its run, as dotted key -> value: every field whose value is not its default
    in ``IDENTITY_DEFAULTS`` (the schema's defaults, frozen: a field added later with its default leaves every
    earlier run's identity as it was, and a default changed later does not make old records match runs at the new
    one), but ``OUTSIDE_IDENTITY`` and ``out_dir``; an ``init`` path that ``started_from`` maps (a run folder -> that
    run's identity) is replaced by the identity."""
    fields, defaults = flat_config(dataclasses.asdict(cfg)), IDENTITY_DEFAULTS
    for key in ("init.primary", *(k for k in fields if k.startswith("init.aux."))):
        fields[key] = started_from.get(fields[key], fields[key])
    return {key: value for key, value in fields.items()
            if key not in (*OUTSIDE_IDENTITY, "out_dir") and (key not in defaults or defaults[key] != value)}


def run_identity(
    cfg: ExperimentConfig, data: Mapping[str, Any], float_format: str, started_from: Mapping[str, str] = {},  # noqa: B006
    declared: Mapping[str, Any] = {},  # noqa: B006
) -> str:
    """The identity of the run of ``cfg`` on data ``data`` (``DataSplits.record()``) in ``float_format``, with the
    declarations of the dataset's own tasks (``declared``: task -> its declaration; a changed one is another run)."""
    content = {"config": identity_fields(cfg, started_from), "data": data, "float_format": float_format}
    if declared:  # absent for built-in tasks, so that the identities of their runs stay what they were
        content["declared"] = dict(declared)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The record in ``run_dir``, or None when there is none (or it is not a record)."""
    try:
        record = json.loads((Path(run_dir) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def folder_config(run_dir: str | Path) -> ExperimentConfig | None:
    """The resolved config a run wrote at its start into ``run_dir`` (``config.yaml``), or None."""
    try:
        return config_from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))
    except (OSError, ValueError, yaml.YAMLError, ConfigError, TypeError):
        return None


def folder_data(run_dir: str | Path) -> dict[str, Any] | None:
    """The data record a run wrote at its start into ``run_dir`` (``data.json``), or None."""
    try:
        return json.loads((Path(run_dir) / "data.json").read_text())
    except (OSError, ValueError):
        return None


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``config`` as dotted key -> value (``train.lr``), the form of overrides."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(recorded: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: recorded A, now B`` for every key whose value differs between two configs, ``out_dir`` left out (a
    run that moved is the same run)."""
    old, now = flat_config(recorded), flat_config(new)
    return [f"{key}: recorded {old.get(key, '(unset)')}, now {now.get(key, '(unset)')}"
            for key in sorted(old.keys() | now.keys()) if key != "out_dir" and old.get(key) != now.get(key)]


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


def identity_overrides(overrides: Sequence[str]) -> list[str]:
    """``overrides`` without those of ``OUTSIDE_IDENTITY``'s keys: what they change in a run's identity."""
    return [o for o in overrides if o.split("=", 1)[0].strip() not in OUTSIDE_IDENTITY]


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


def _legacy_fields(config: str, overrides: Sequence[str], as_made: bool) -> dict[str, Any] | None:
    """The resolved config of ``config`` with ``overrides`` but ``OUTSIDE_IDENTITY``, by which a record without an
    identity (written before records had one) is matched (None when it no longer loads). ``as_made``: the record's
    side, whose fields neither sets take their frozen defaults (``IDENTITY_DEFAULTS``: today's but for the defaults
    changed since), as when the record was made; else today's defaults, as the new run would train."""
    try:
        if as_made:
            path = resolve_config_path(config)
            sections = _frozen_default_sections()
            for key, value in (read_config_file(path) or {}).items():
                sections[key] = {**sections[key], **value} if isinstance(sections.get(key), dict) else value
            resolved = config_from_dict(apply_overrides(sections, list(overrides)), source=str(path))
        else:
            resolved = load_config(config, list(overrides))
        fields = dataclasses.asdict(resolved)
    except (ConfigError, ValueError, TypeError, AttributeError):
        return None
    for key in OUTSIDE_IDENTITY:
        *sections_of, name = key.split(".")
        section = fields
        for part in sections_of:
            section = section[part]
        section.pop(name)
    return fields


def _frozen_default_sections() -> dict[str, Any]:
    """``IDENTITY_DEFAULTS`` as a config file's mapping (section -> key -> value)."""
    sections: dict[str, Any] = {}
    for key, value in IDENTITY_DEFAULTS.items():
        head, _, rest = key.partition(".")
        if rest:
            sections.setdefault(head, {})[rest] = value
        else:
            sections[head] = value
    return sections


def reused_record(
    run_dir: str | Path, config: str, overrides: list[str], float_format: str | None = None,
    identity: Callable[[str], str] | None = None,
) -> dict[str, Any] | None:
    """The record of a finished run in ``run_dir`` that is the run of ``config`` with ``overrides``, or None;
    with ``float_format``, None also when the run computed in another float format (``RECORD_PRECISION``).

    ``identity`` gives the new run's identity in a float format (``records.run_identity``): a record that carries
    one is the same run exactly when the two are equal. A record without one (written before records had it) is
    the same run when the config and overrides it was made from (perhaps others: the accuracy benchmark's settings
    before they became configs), resolved at the defaults of its time, give the new run's config, keys outside the
    identity apart. Records may move with their runs folder (e.g. committed beside a benchmark's results): the record
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
        fields = _legacy_fields(made_from, recorded, as_made=True)
        same = fields is not None and fields == _legacy_fields(config, overrides, as_made=False)
    return {**record, "run_dir": str(run_dir)} if same else None
