"""Accuracy benchmark: do auxiliary labels buy primary accuracy at single-task inference cost?

Every row (a method, possibly with a weighting method or a noise control) trains on every setting (a primary
task, an auxiliary task, a training-set size, possibly a fraction of primary labels) for several seeds, with as
many network updates as single-task. Each row is compared with single-task on the primary's test metrics of the
checkpoint selected on the validation split and of the last one: mean ± std over seeds and the 95 % interval of
the difference paired by seed (``auxnas.stats``). A row is better or worse only when that interval excludes 0.
Evaluation cuts a2p links, so every number is that of the exported, single-task-cost primary network.

Where the primary is partially labelled, single-task on those labels is the floor and single-task with every
label the ceiling (``CEILING``); each row's share of the floor-to-ceiling gap comes with its Fieller interval.
The positive controls (``CONTROLS``) are such settings where the auxiliary label provably carries what the
primary lacks: they show whether the benchmark, at its budget, can see a gain at all.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import ExperimentConfig, load_config
from ..data import build_splits
from ..engine.loaders import steps_per_epoch
from ..io import write_json, write_text
from ..methods import build_model
from ..stats import mean_std
from ..tasks import build_task, build_tasks
from ..train import fit
from .accuracy_markdown import format_markdown
from .accuracy_tables import aggregate, control_verdicts, delta_metric_names
from .presets import (
    AUX,
    AUX_SINGLE,
    BASE_CONFIG,
    CEILING,
    COMMON_OVERRIDES,
    PRESETS,
    ROWS,
    RUN,
    SETTINGS,
)


def _select(kind: str, wanted: Sequence[Any], known: Sequence[Any]) -> list[Any]:
    """``wanted`` in the order of ``known``; an unknown entry fails with the valid ones."""
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; valid: {', '.join(map(str, known))}")
    return [k for k in known if k in wanted]


def row_overrides(row: str, aux: str, runs_dir: Path | None = None, seed: int = 0) -> list[str]:
    """The overrides of ``row`` with the setting's auxiliary task and the run directories it names
    (``runs_dir/<row>/seed<seed>``) filled in."""
    overrides = [o.replace(AUX, aux) for o in dict(ROWS)[row]]
    for dependency in row_dependencies(row):
        overrides = [o.replace(RUN % dependency, str(Path(runs_dir or ".") / dependency / f"seed{seed}"))
                     for o in overrides]
    return overrides


def row_dependencies(row: str) -> list[str]:
    """The rows whose runs (of the same seed) ``row`` starts from."""
    return [other for other, _ in ROWS if any(RUN % other in o for o in dict(ROWS)[row])]


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
    (aux_nas, adashare, adashare_aux); such a run spends half of every epoch's images on architecture steps."""
    model = build_model(cfg, build_tasks(cfg, num_classes))
    return bool(model.architecture_parameters()) and cfg.method.optimization == "bilevel"


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


#: a finished run's record, in its run directory: what ``reuse`` reads instead of training again
RECORD_FILE = "bench_run.json"
#: the overrides of a variant, in its runs folder: another variant under the same tag is refused
VARIANT_FILE = "variant.json"


def _check_variant(tag: str | None, overrides: list[str], made: Sequence[Path]) -> None:
    """Refuse ``overrides`` under ``tag`` when a runs folder's variant file or a result file in ``made`` was
    made with other overrides: their runs would be replaced, or reused and mixed with these."""
    for path in made:
        try:
            old = json.loads(path.read_text())["overrides"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if old != overrides:
            raise ValueError(f"tag {tag!r}: {path} was made with overrides {old}, not {overrides}; give these "
                             "another tag (or runs folder)")


def _reused_record(run_dir: str, overrides: list[str]) -> dict[str, Any] | None:
    """The record of a finished run in ``run_dir`` made with exactly ``overrides``, or None."""
    path = Path(run_dir) / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("overrides") == overrides else None


def _run_record(
    setting: str, row: str, seed: int, overrides: list[str], cfg: ExperimentConfig, bilevel: bool,
    train_images: int, main: str, progress: bool, reuse: bool,
) -> dict[str, Any]:
    """Train one run (or, with ``reuse``, read the record of the same finished run) and keep what is reported."""
    primary = cfg.tasks.primary
    record = _reused_record(cfg.out_dir, overrides) if reuse else None
    if record is not None:
        if progress:
            print(f"{setting} {row} seed {seed}: reused {cfg.out_dir}", flush=True)
        return {**record, "reused": True}
    result = fit(cfg, progress=False, overwrite=True)  # the benchmark's own run directories
    links = result.history[-1].get("link_strengths")
    a2p = [s for key, values in (links or {}).items() if key.startswith("a2p/") for s in values]
    record = {
        "setting": setting, "row": row, "seed": seed, "run_dir": cfg.out_dir, "overrides": overrides,
        "command": shlex.join(["auxnas", "train", BASE_CONFIG, *overrides]),
        "method": cfg.method.name, "weighting": cfg.weighting.name, "random_targets": cfg.data.random_targets,
        "bilevel": bilevel, "epochs": cfg.train.epochs,
        "network_updates": steps_per_epoch(train_images, cfg, bilevel) * cfg.train.epochs,
        "best_epoch": result.best_epoch, "test_best": result.test_best[primary],
        "test_last": result.test_last[primary], "val_best": result.val_best[primary],
        "train_labels": result.train_labels, "final_train_losses": result.history[-1]["train_task_losses"],
        "link_strengths": links, "a2p_max": max(a2p) if a2p else None, "wall_time_s": result.wall_time_s,
    }
    write_json(Path(cfg.out_dir) / RECORD_FILE, record)
    if progress:
        print(f"{setting} {row} seed {seed}: {primary}/{main} {record['test_best'][main]:.2f} selected (epoch "
              f"{result.best_epoch}/{cfg.train.epochs}), {record['test_last'][main]:.2f} last, "
              f"{result.wall_time_s:.0f} s", flush=True)
    return record


def _run_setting(
    name: str, description: str, base_overrides: list[str], rows: list[str], seeds: list[int], runs_dir: Path,
    progress: bool, reuse: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Every (seed, row) run of one setting: its description, its run records and its aggregated table.

    The ceiling row runs only where the primary is partially labelled (elsewhere it would be ``single``)."""
    base = load_config(BASE_CONFIG, base_overrides)
    splits = build_splits(base.data, progress=progress)
    primary, aux = base.tasks.primary, base.tasks.aux[0]
    task = build_task(primary, splits.num_classes, **base.tasks.task_options(primary))
    main_metric = {t: build_task(t, splits.num_classes, **base.tasks.task_options(t)).main_metric
                   for t in (primary, aux)}
    train_images = len(splits.train)
    ceiling = base.data.labelled_fraction.get(primary, 1.0) < 1.0
    rows = [row for row in rows if row != CEILING or ceiling]
    info = {
        "name": name, "description": description, "primary": primary, "aux": aux, "main_metric": task.main_metric,
        "loss_weights": base.tasks.loss_weights, "train_images": train_images,
        "primary_labels": splits.train_label_counts([primary])[primary], "val_images": len(splits.val),
        "test_images": len(splits.test), "image_size": base.data.image_size, "batch_size": base.data.batch_size,
        "epochs": base.train.epochs, "network_updates": steps_per_epoch(train_images, base, False) * base.train.epochs,
        "delta_metrics": delta_metric_names(task), "ceiling": ceiling, "rows": rows,
    }
    runs = []
    needed = [r for r, _ in ROWS if r in rows or any(r in row_dependencies(x) for x in rows)]  # in ROWS order
    for seed in seeds:  # rows inner: a change of load on a shared machine hits every row's wall time alike
        for row in needed:
            overrides = [*base_overrides, *row_overrides(row, aux, runs_dir, seed)]
            cfg = load_config(BASE_CONFIG, overrides)
            bilevel = uses_bilevel(cfg, splits.num_classes)
            overrides = last_overrides([
                *overrides, f"train.epochs={equal_update_epochs(cfg, train_images, bilevel)}", f"seed={seed}",
                f"out_dir={runs_dir / row / f'seed{seed}'}",
            ])
            cfg = load_config(BASE_CONFIG, overrides)
            runs.append(_run_record(
                name, row, seed, overrides, cfg, bilevel, train_images, main_metric[cfg.tasks.primary], progress,
                reuse,
            ))
    info["bilevel_epochs"] = next((r["epochs"] for r in runs if r["bilevel"]), None)
    info["final_train_losses"] = {}
    for t in (primary, aux):  # the loss scales behind the loss weights; random targets have other losses
        values = [r["final_train_losses"][t] for r in runs
                  if t in r["final_train_losses"] and t not in r["random_targets"]]
        if values:
            info["final_train_losses"][t] = mean_std(values)[0]
    return info, runs, aggregate(runs, info, rows, task)


def run_accuracy_benchmark(
    preset: str = "quick",
    out_dir: str | Path = "benchmarks/results",
    runs_dir: str | Path = "runs/bench-accuracy",
    progress: bool = True,
    settings: Sequence[str] | None = None,
    rows: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    reuse: bool = False,
    overrides: Sequence[str] = (),
    tag: str | None = None,
) -> dict[str, Any]:
    """Train every (setting, row, seed) of ``preset`` and compare each row with single-task.

    ``settings``, ``rows`` and ``seeds`` replace the preset's choice (single-task always runs: it is the
    baseline; so does the ceiling, ``CEILING``, in settings whose primary is partially labelled). With ``reuse``,
    a run whose directory holds the record of a finished run with the same overrides is read instead of trained
    again: settings can run separately (or be interrupted) and be aggregated later. ``overrides`` (``key=value``)
    apply to every run, the ceiling's included, after the setting's and the preset's: a variant of the benchmark
    (another learning rate, schedule, backbone...), which ``tag`` names; a tag whose runs folder or result file
    was made with other overrides is refused (``variant.json`` in the runs folder records them). Writes
    ``accuracy-<preset>[-<tag>].json`` (every run, the overrides that reproduce it, the aggregated table, the
    positive controls' verdicts) and the ``.md`` beside it into ``out_dir``; runs go to
    ``runs_dir/<preset>[-<tag>]/<setting>/<row>/seed<k>``. Returns the JSON's content.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    setting_names = _select("settings", settings if settings is not None else chosen.settings, [s[0] for s in SETTINGS])
    row_names = _select("rows", ["single", CEILING, *(rows if rows is not None else chosen.rows)],
                        [r[0] for r in ROWS if r[0] != AUX_SINGLE])
    seed_list = list(seeds if seeds is not None else chosen.seeds)
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds: need distinct seeds, got {seed_list}")
    if overrides and not tag:
        raise ValueError("overrides: a variant of the benchmark needs a tag naming its result files")
    if tag is not None and not tag.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"tag: letters, digits, '-' and '_' only, got {tag!r}")
    name = f"{preset}-{tag}" if tag else preset
    variant = Path(runs_dir) / name / VARIANT_FILE
    _check_variant(tag, list(overrides), [variant, Path(out_dir) / f"accuracy-{name}.json"])
    write_json(variant, {"preset": preset, "tag": tag, "overrides": list(overrides)})
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    infos: dict[str, dict[str, Any]] = {}
    tables: dict[str, Any] = {}
    for setting, description, setting_overrides in SETTINGS:
        if setting in setting_names:
            infos[setting], setting_runs, tables[setting] = _run_setting(
                setting, description, [*COMMON_OVERRIDES, *setting_overrides, *chosen.overrides, *overrides],
                row_names, seed_list, Path(runs_dir) / name / setting, progress, reuse,
            )
            infos[setting]["overrides"] = list(setting_overrides)
            runs += setting_runs
    summary: dict[str, Any] = {
        "preset": preset, "tag": tag, "seeds": seed_list, "base_config": BASE_CONFIG,
        "common_overrides": list(COMMON_OVERRIDES), "preset_overrides": list(chosen.overrides),
        "overrides": list(overrides),
        "budget": "every row makes the network updates of the setting's epochs of single-task; bilevel rows "
                  "(architecture steps on half of each epoch's images) run the epochs that give the same count",
        "rows": [{"label": label, "overrides": list(o)} for label, o in ROWS  # those that ran in some setting
                 if any(label in info["rows"] for info in infos.values())],
        "settings": infos, "table": tables, "controls": control_verdicts(infos, tables), "runs": runs,
        "wall_time_s": time.perf_counter() - start,
        "reused_runs": sum(bool(r.get("reused")) for r in runs),
        "run_time_s": sum(r["wall_time_s"] for r in runs),
    }
    markdown = format_markdown(summary)
    out = Path(out_dir)
    summary["markdown"] = markdown
    summary["markdown_file"] = str(out / f"accuracy-{name}.md")
    write_json(out / f"accuracy-{name}.json", summary)
    write_text(out / f"accuracy-{name}.md", markdown)
    if progress:
        print(markdown)
    return summary
