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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..compare.execute import Progress, Trainer, Unit, mark_trained, print_now, train_rows, train_units
from ..compare.plan import check_run_folders, plan_runs
from ..compare.records import identity_overrides
from ..compare.rows import needed_rows
from ..compare.table import aggregate, delta_metric_names
from ..config import ExperimentConfig, expand_overrides, load_config
from ..data import DataSplits, build_splits
from ..engine.loaders import steps_per_epoch
from ..stats import mean_std
from ..storage import write_json, write_text
from ..tasks import build_task
from .accuracy_markdown import format_markdown
from .presets import (
    AUX_SINGLE,
    BASELINES,
    CEILING,
    CONTROL_ROW,
    CONTROLS,
    PRESETS,
    ROWS,
    SETTINGS,
    setting_config,
)


def _select(kind: str, wanted: Sequence[Any], known: Sequence[Any]) -> list[Any]:
    """``wanted`` in the order of ``known``; an unknown entry fails with the valid ones."""
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; valid: {', '.join(map(str, known))}")
    return [k for k in known if k in wanted]


def control_verdicts(infos: dict[str, dict[str, Any]], tables: dict[str, Any]) -> dict[str, Any]:
    """Per positive control that ran: floor, ceiling, gap, every row's share (selected checkpoint, main metric) and
    whether it passed (``CONTROL_ROW``'s share interval bounded and above 0, the ceiling better than the floor);
    ``passed`` overall: every control passed (None when none ran)."""
    settings = {}
    for name in CONTROLS:
        if name not in tables:
            continue
        table, main = tables[name], infos[name]["main_metric"]
        shares = {row: entry["share"]["best"] for row, entry in table.items() if "share" in entry}
        head = shares.get(CONTROL_ROW)
        if head is None:
            passed, reason = None, f"not judged: the {CONTROL_ROW} row did not run"
        elif not head["bounded"] or head["gap"] <= 0:
            passed, reason = False, "the ceiling is not better than the floor beyond the seed spread"
        elif head["low"] <= 0:
            passed, reason = False, f"{CONTROL_ROW}'s share interval includes 0"
        else:
            passed, reason = True, f"{CONTROL_ROW}'s share interval lies above 0"
        floor, top = table["single"]["best"][main], table[CEILING]["best"][main]
        settings[name] = {
            "main_metric": main, "floor": {"mean": floor["mean"], "std": floor["std"]},
            "ceiling": {"mean": top["mean"], "std": top["std"]}, "gap": top["vs_single"], "shares": shares,
            "passed": passed, "reason": reason,
        }
    return {"row": CONTROL_ROW, "settings": settings,
            "passed": all(s["passed"] for s in settings.values()) if settings else None}


#: the overrides of a variant, in its runs folder: another variant under the same tag is refused
VARIANT_FILE = "variant.json"


def _check_variant(tag: str | None, overrides: list[str], made: Sequence[Path]) -> None:
    """Refuse ``overrides`` under ``tag`` when a runs folder's variant file or a result file in ``made`` was
    made with other overrides: their runs would be replaced, or reused and mixed with these. Overrides of keys
    outside a run's identity (``OUTSIDE_IDENTITY``: speed, logging) may change."""
    for path in made:
        try:
            old = json.loads(path.read_text())["overrides"]
            same = identity_overrides(old) == identity_overrides(overrides)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if not same:
            raise ValueError(f"tag {tag!r}: {path} was made with overrides {old}, not {overrides}; give these "
                             "another tag (or runs folder)")


def _setting_inputs(
    name: str, base_overrides: list[str], progress: bool,
) -> tuple[str, ExperimentConfig, DataSplits, dict[str, str]]:
    """What every run of one setting starts from: its config file (``setting_config``), that config with
    ``base_overrides``, its data splits and the main metric of its primary and auxiliary tasks (task -> metric)."""
    config = setting_config(name)
    base = load_config(config, base_overrides)
    splits = build_splits(base.data, progress=progress)
    main_metric = {t: build_task(t, splits.num_classes, **base.tasks.task_options(t)).main_metric
                   for t in (base.tasks.primary, base.tasks.aux[0])}
    return config, base, splits, main_metric


def _run_setting(
    name: str, description: str, base_overrides: list[str], rows: list[str], seeds: list[int], runs_dir: Path,
    progress: Progress | None, reuse: bool, train: bool, trainer: Trainer | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Every (seed, row) run of one setting (its config, ``setting_config``, with ``base_overrides``; through
    ``auxnas.compare.execute.train_rows``, with ``trainer``): its description, its run records and its aggregated table
    (``auxnas.compare.table.aggregate``). ``rows`` holds the ceiling only where the primary is partially labelled
    (elsewhere it would be ``single``)."""
    config, base, splits, main_metric = _setting_inputs(name, base_overrides, progress is not None)
    primary, aux = base.tasks.primary, base.tasks.aux[0]
    task = build_task(primary, splits.num_classes, **base.tasks.task_options(primary))
    train_images = len(splits.train)
    info = {
        "name": name, "description": description, "primary": primary, "aux": aux, "main_metric": task.main_metric,
        "loss_weights": base.tasks.loss_weights, "train_images": train_images,
        "primary_labels": splits.train_label_counts([primary])[primary], "val_images": len(splits.val),
        "test_images": len(splits.test), "image_size": base.data.image_size, "batch_size": base.data.batch_size,
        "epochs": base.train.epochs, "network_updates": steps_per_epoch(train_images, base, False) * base.train.epochs,
        "delta_metrics": delta_metric_names(task), "ceiling": CEILING in rows, "rows": rows, "config": config,
    }
    runs = train_rows(config, base_overrides, dict(ROWS), rows, seeds, runs_dir, splits, main_metric,
                      reuse, progress, extra={"setting": name}, train=train, trainer=trainer)
    info["bilevel_epochs"] = next((r["epochs"] for r in runs if r["bilevel"]), None)
    info["final_train_losses"] = {}
    for t in (primary, aux):  # the loss scales behind the loss weights; random targets have other losses
        values = [r["final_train_losses"][t] for r in runs
                  if t in r["final_train_losses"] and t not in r["random_targets"]]
        if values:
            info["final_train_losses"][t] = mean_std(values)[0]
    return info, runs, aggregate(runs, info, rows, task, BASELINES)


def _has_ceiling(setting: str, overrides: Sequence[str]) -> bool:
    """Whether a setting's primary is partially labelled, so that its ceiling differs from ``single``."""
    cfg = load_config(setting_config(setting), list(overrides))
    return cfg.data.labelled_fraction.get(cfg.tasks.primary, 1.0) < 1.0


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
    train: bool = True,
    jobs: int = 1,
    trainer: Trainer | None = None,
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
    ``runs_dir/<preset>[-<tag>]/<setting>/<row>/seed<k>``. With ``train`` False every run is read from its
    record and none trained (a missing one is an error): the table regenerated from committed records. With
    ``jobs`` above 1 the (setting, seed) units train in that many processes at once (a many-core machine, or
    several runs sharing one GPU), then every record is read as with ``train`` False. ``trainer`` trains each run
    (None: ``auxnas.train.fit``; with ``jobs``, a picklable one).
    Returns the JSON's content.
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
    if jobs < 1:
        raise ValueError(f"jobs: need at least 1 process, got {jobs}")
    overrides = expand_overrides(overrides)  # records name every key a protocol (``@name``) sets
    if overrides and not tag:
        raise ValueError("overrides: a variant of the benchmark needs a tag naming its result files")
    if tag is not None and not tag.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"tag: letters, digits, '-' and '_' only, got {tag!r}")
    name = f"{preset}-{tag}" if tag else preset
    variant = Path(runs_dir) / name / VARIANT_FILE
    _check_variant(tag, list(overrides), [variant, Path(out_dir) / f"accuracy-{name}.json"])
    write_json(variant, {"preset": preset, "tag": tag, "overrides": list(overrides)})
    start = time.perf_counter()
    base_overrides = expand_overrides([*chosen.overrides, *overrides])
    chosen_settings = [(setting, description) for setting, description in SETTINGS if setting in setting_names]
    setting_rows = {setting: [r for r in row_names if r != CEILING or _has_ceiling(setting, base_overrides)]
                    for setting, _ in chosen_settings}
    trained_in_units: set[str] = set()
    in_units = train and jobs > 1
    if in_units:  # seeds outer: whole seeds finish first; no unit starts while a run folder holds another run
        for setting, _ in chosen_settings:
            config, _, splits, _ = _setting_inputs(setting, base_overrides, progress)
            check_run_folders(plan_runs(config, base_overrides, dict(ROWS), setting_rows[setting], seed_list,
                                        Path(runs_dir) / name / setting, splits))
        units = [Unit(setting_config(setting), tuple(base_overrides), dict(ROWS), tuple(setting_rows[setting]), seed,
                      Path(runs_dir) / name / setting, f"{setting} seed {seed}", {"setting": setting}, trainer)
                 for seed in seed_list for setting, _ in chosen_settings]
        trained_in_units = train_units(units, jobs, reuse, print_now if progress else None)
        train = False  # every run now has its record: read them all
    total = sum(len(needed_rows(r, dict(ROWS))) for r in setting_rows.values()) * len(seed_list)
    counter = Progress(total) if progress and not in_units else None  # the units' lines reported their runs
    runs: list[dict[str, Any]] = []
    infos: dict[str, dict[str, Any]] = {}
    tables: dict[str, Any] = {}
    for setting, description in chosen_settings:
        infos[setting], setting_runs, tables[setting] = _run_setting(
            setting, description, base_overrides, setting_rows[setting], seed_list,
            Path(runs_dir) / name / setting, counter, reuse, train, trainer,
        )
        runs += mark_trained(setting_runs, trained_in_units)
    summary: dict[str, Any] = {
        "preset": preset, "tag": tag, "seeds": seed_list,
        "configs": {setting: setting_config(setting) for setting, _ in chosen_settings},
        "preset_overrides": list(chosen.overrides),
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
