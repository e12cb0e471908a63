"""``auxnas compare``: will these auxiliary labels make my primary model better, with which method, at what cost?

Every method trains on the user's config (any dataset reader, labels missing where they were never made) with the
same network updates over several seeds; each is compared with single-task on the primary's test metrics of the
checkpoint selected on the validation split: mean ± std, the 95 % interval of the difference paired by seed, Δm,
a verdict (better / worse / no difference at this budget). Each method's primary network is exported and its cost
verified against single-task's, its inference latency timed side by side with single-task's export; a training
iteration's time and peak memory are measured per method. Controls:
every method again with its auxiliary targets randomised (the same extra updates without the labels' information)
and, where primary labels are held out (``holdout``), the ceiling that labelling every image would reach.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import ExperimentConfig, expand_overrides, load_config, resolve_config_path
from ..config.validate import validate
from ..data import build_splits
from ..engine.loaders import steps_per_epoch
from ..errors import ExportError
from ..export import export_primary
from ..methods import METHOD_NAMES
from ..plots import plot_comparison
from ..stats import paired_interval
from ..storage import check_own_report, write_json, write_text
from ..tasks import build_task
from ..weighting import COMPOSED_NAMES, WEIGHTING_NAMES
from .execute import Progress, Trainer, Unit, mark_trained, print_now, train_rows, train_units
from .plan import check_run_folders, plan_runs
from .profile import inference_latency, profile_row
from .report import deployed_cost, format_markdown, recommendation, verdicts
from .rows import RANDOM_AUX, ceiling_fractions, check_methods, comparison_rows, row_overrides
from .table import aggregate, delta_metric_names

#: the methods compared when none are named
DEFAULT_METHODS = ("aux_head", "aux_g", "aux_nas")
#: the seed whose run of every row is exported and profiled
EXPORT_SEED_INDEX = 0
#: what ``compare.json`` says made it: a ``compare.md`` beside no such record is a file of the user's, never replaced
MADE_BY = "auxnas compare"
#: the fewest validation images on which a comparison selects checkpoints without a warning: on fewer, which epoch
#: is selected is mostly chance
MIN_VAL_IMAGES = 20


def _holdout_override(cfg: ExperimentConfig, holdout: float) -> str:
    """The ``data.labelled_fraction`` override that withholds ``holdout`` of the primary's labels from training."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout: the share of primary labels withheld from training, in (0, 1); got {holdout}")
    fractions = dict(cfg.data.labelled_fraction)
    primary = cfg.tasks.primary
    fractions[primary] = round(fractions.get(primary, 1.0) * (1 - holdout), 6)
    return "data.labelled_fraction={" + ", ".join(f"{task}: {f}" for task, f in fractions.items()) + "}"


def _budget_epochs(budget: int, train_images: int, cfg: ExperimentConfig) -> int:
    """Single-task epochs that make about ``budget`` network updates (at least one epoch)."""
    if budget < 1:
        raise ValueError(f"budget: network updates per run, a positive number; got {budget}")
    return max(1, round(budget / steps_per_epoch(train_images, cfg, False)))


def _export_cost(run_dir: str, out: Path) -> dict[str, Any]:
    """Export a run's primary network into ``out`` (verified: outputs, parameters and FLOPs against single-task)
    and keep its cost; a model that cannot be exported says why."""
    try:
        report = export_primary(run_dir, out, overwrite=True)
    except ExportError as err:
        return {"exported": False, "reason": str(err)}
    params, flops = report["params"], report["flops_per_image"]
    kept = report.get("kept_fusion_post", {})
    return {"exported": True, "folder": str(out), "params": params["exported"], "flops": flops["exported"],
            "params_ratio": params["exported"] / params["single_task"],
            "flops_ratio": flops["exported"] / flops["single_task"], "a2p_max": report["a2p_max"],
            "max_abs_diff": report["max_abs_diff"], "checks": report["checks"],
            "kept_norm_cells": len(report["kept_fusion_post_cells"]),
            "kept_norm_ops": kept.get("extra_elementwise_ops_per_image", 0),
            "skipped_cells": len(report["skipped_cells"])}


def _small_validation(val_images: int, train_images: int, val_fraction: float) -> str | None:
    """One line when the validation split is too small to select a checkpoint on (under ``MIN_VAL_IMAGES``): how
    many images it has and what to set; else None. ``train_images``: the training images after the split."""
    if val_images >= MIN_VAL_IMAGES:
        return None
    total = val_images + train_images
    fraction = math.ceil(100 * MIN_VAL_IMAGES / total) / 100
    carve = (f"data.val_fraction={fraction:g} carves {MIN_VAL_IMAGES} of the {total} training images" if fraction < 1
             else f"the {total} training images are too few to carve {MIN_VAL_IMAGES}")
    return (f"warning: the validation split has {val_images} images, fewer than {MIN_VAL_IMAGES}: the checkpoint "
            f"selected on it is mostly chance; raise data.val_fraction (now {val_fraction:g}; {carve}) or give the "
            f"dataset a val/ folder of {MIN_VAL_IMAGES} or more images")


def _add_control_intervals(table: dict[str, Any], runs: list[dict[str, Any]], main: str, higher: bool) -> None:
    """Add to each method's entry that has a noise control the paired interval of the method minus its control on
    ``main`` (better than its own control: the labels helped, not the extra updates)."""
    for row in list(table):
        control = row + RANDOM_AUX
        if control in table:
            values = [r["test_best"][main] for r in runs if r["row"] == row]
            noise = [r["test_best"][main] for r in runs if r["row"] == control]
            table[row]["vs_control"] = {"row": control, **paired_interval(values, noise), "higher_is_better": higher}


def _method_override(methods: Sequence[str]) -> str:
    """The ``method.name`` every row's config starts from: the first of ``methods`` that is not single-task. Each row
    sets its own method, so the config's ``method.name`` is only a starting point: a single-task config that names
    auxiliary tasks is compared (``auxnas train`` refuses it)."""
    names = [row.partition("+")[0] for row in methods]
    return "method.name=" + next(name for name in names if name != "single")


def _row_costs(config: str, rows: Sequence[str], runs: list[dict[str, Any]], seed: int, out: Path,
               image: torch.Tensor, device: str, progress: bool) -> dict[str, Any]:
    """Per row: the export cost of its ``seed`` run, the inference latency of that export on ``image`` (a test
    image) beside single-task's export on ``device`` (None when either was not exported), and the time and memory
    of its training iteration."""
    costs = {}
    for row in rows:
        run = next(r for r in runs if r["row"] == row and r["seed"] == seed)
        if progress:
            print(f"export and profile {row} (seed {seed})", flush=True)
        per_update = statistics.fmean(r["wall_time_s"] / r["network_updates"] for r in runs if r["row"] == row)
        costs[row] = {"export": _export_cost(run["run_dir"], out / "exports" / row),
                      "training": {**profile_row(config, run["overrides"]), "time_per_update_s": per_update}}
    exports = {row: cost["export"]["folder"] for row, cost in costs.items() if cost["export"]["exported"]}
    if progress:
        print("time the exported networks' inference side by side", flush=True)
    latency = inference_latency(exports, image, device) if "single" in exports else {}
    for row, cost in costs.items():
        cost["inference"] = latency.get(row)
    return costs


def run_comparison(
    config: str,
    overrides: Sequence[str] = (),
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: int | Sequence[int] = 3,
    controls: bool = False,
    holdout: float | None = None,
    budget: int | None = None,
    out_dir: str | Path | None = None,
    reuse: bool = False,
    progress: bool = True,
    jobs: int = 1,
    run_lines: bool | None = None,
    trainer: Trainer | None = None,
) -> dict[str, Any]:
    """Train ``single`` and every one of ``methods`` (``METHOD`` or ``METHOD+WEIGHTING``, at least one not
    single-task) on ``config`` with ``overrides`` over ``seeds`` (a number: seeds 0..N-1; at least 2), compare each
    with single-task, and write ``compare.json`` and ``compare.md`` into ``out_dir`` (default
    ``runs/compare/<config name>``; runs in its ``runs/``, exports in its ``exports/``) with ``compare.png``, the
    figure of every row's difference to single-task. Returns the JSON's content. Each row sets its own method: the
    config's ``method.name`` is only a starting point.

    ``controls``: every method again with its auxiliary targets random. ``holdout``: withhold that share of the
    primary's labels from training (in every row) and add the ceiling, single-task with them. ``budget``: network
    updates per run (default: ``train.epochs`` epochs of single-task); bilevel methods get the epochs that give the
    same count. ``reuse``: read finished runs with the same overrides instead of training them again. ``jobs``:
    train that many seeds at once, each in its own process (a many-core machine, or runs sharing one GPU).
    ``progress``: print the data, every step and ``compare.md``. ``run_lines`` (default: ``progress``): print a
    line per run as it ends (its main metric at the epoch selected on the validation split and at the last: the
    validation curve in short; with ``jobs`` a line per seed) and a too small validation split's warning.
    ``trainer`` trains each run (None: ``auxnas.train.fit``; with ``jobs``, a picklable one).
    """
    start = time.perf_counter()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if len(seed_list) < 2 or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds: a comparison needs at least 2 distinct seeds (an interval over seeds), got "
                         f"{seed_list}; 5 or more give intervals narrow enough for most verdicts")
    if jobs < 1:
        raise ValueError(f"jobs: need at least 1 process, got {jobs}")
    methods = [m for m in methods if m != "single"]
    check_methods(methods, METHOD_NAMES, (*WEIGHTING_NAMES, *COMPOSED_NAMES))
    run_lines = progress if run_lines is None else run_lines
    out = Path(out_dir) if out_dir is not None else Path("runs/compare") / Path(config).stem
    for report in ("compare.md", "compare.png"):
        check_own_report(out / report, out / "compare.json", MADE_BY)
    overrides = expand_overrides(overrides)  # records name every key a protocol (``@name``) sets
    base_overrides = [*overrides, _method_override(methods)]  # every row sets its own method after it
    cfg = load_config(config, base_overrides)
    primary, aux = cfg.tasks.primary, list(cfg.tasks.aux)
    if not aux:
        raise ValueError(f"{config}: tasks.aux names no auxiliary task; the methods {methods} need one")
    if holdout is not None:
        base_overrides.append(_holdout_override(cfg, holdout))
        cfg = load_config(config, base_overrides)
    splits = build_splits(cfg.data, progress=progress)
    if budget is not None:
        base_overrides.append(f"train.epochs={_budget_epochs(budget, len(splits.train), cfg)}")
        cfg = load_config(config, base_overrides)
    validate(cfg, source=str(resolve_config_path(config)))
    warning = _small_validation(len(splits.val), len(splits.train), cfg.data.val_fraction)
    if warning and run_lines:
        print_now(warning)
    ceiling = (ceiling_fractions(cfg.data.labelled_fraction, primary),) if holdout is not None else None
    rows = comparison_rows(methods, aux, controls, ceiling)
    for row in rows:  # every row's config answers before the first run trains
        validate(load_config(config, [*base_overrides, *row_overrides(row, rows, aux[0] if aux else "")]),
                 source=f"{config} ({row})")

    task = build_task(primary, splits.num_classes, **cfg.tasks.task_options(primary))
    main = task.main_metric
    counts = splits.train_label_counts([primary, *aux])
    info: dict[str, Any] = {
        "config": config, "data": Path(cfg.data.root).resolve().name if cfg.data.root else Path(config).stem,
        "overrides": list(overrides), "primary": primary, "aux": aux, "main_metric": main,
        "higher_is_better": task.higher_is_better, "train_images": len(splits.train), "train_labels": counts,
        "val_images": len(splits.val), "validation_warning": warning, "test_images": len(splits.test),
        "epochs": cfg.train.epochs,
        "network_updates": steps_per_epoch(len(splits.train), cfg, False) * cfg.train.epochs,
        "primary_partial": counts[primary] < len(splits.train), "holdout": holdout, "ceiling": ceiling is not None,
        "delta_metrics": delta_metric_names(task),
        "rows": list(rows), "seeds": seed_list,
    }
    trained: set[str] = set()
    if jobs > 1:  # each seed's rows in one process, then every run read from its record
        check_run_folders(plan_runs(config, base_overrides, rows, list(rows), seed_list, out / "runs", splits))
        units = [Unit(config, tuple(base_overrides), rows, tuple(rows), seed, out / "runs", f"seed {seed}",
                     trainer=trainer)
                 for seed in seed_list]
        trained = train_units(units, jobs, reuse, print_now if run_lines else None)
    counter = Progress(len(rows) * len(seed_list), show=print_now if run_lines and jobs == 1 else None)
    runs = mark_trained(train_rows(config, base_overrides, rows, list(rows), seed_list, out / "runs", splits,
                                   {primary: main}, reuse, counter, train=jobs == 1, trainer=trainer),
                         trained)
    table = aggregate(runs, info, list(rows), task)
    _add_control_intervals(table, runs, main, task.higher_is_better[main])
    costs = _row_costs(config, rows, runs, seed_list[EXPORT_SEED_INDEX], out, splits.test[0]["image"],
                       cfg.train.device, progress)
    summary: dict[str, Any] = {
        "info": info, "table": table, "costs": costs, "runs": runs,
        "reused_runs": sum(bool(r.get("reused")) for r in runs),
        "run_time_s": sum(r["wall_time_s"] for r in runs),
    }
    summary["verdicts"] = verdicts(summary)
    summary["recommendation"] = f"{recommendation(summary)} {deployed_cost(summary)}"
    summary["figure_file"] = str(plot_comparison(summary, out / "compare.png"))
    summary["wall_time_s"] = time.perf_counter() - start
    summary["markdown"] = format_markdown(summary)
    summary["json_file"], summary["markdown_file"] = str(out / "compare.json"), str(out / "compare.md")
    summary["made_by"] = MADE_BY
    write_json(out / "compare.json", summary)
    write_text(out / "compare.md", summary["markdown"])
    if progress:
        print(summary["markdown"])
    return summary

