"""The default job: Single, Aux-Head, Aux-G and Aux-NAS on the synthetic scenes, same budget, exported, compared."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .backbones import build_branch
from .config import ExperimentConfig, load_config
from .cost import count_flops, count_parameters, measure_latency
from .data import num_val_images
from .delta import delta_m, task_delta_metrics
from .export import export_primary, load_exported, read_export_spec
from .io import write_json, write_text
from .plots import plot_link_heatmap, plot_link_history
from .tasks import build_task
from .train import fit, steps_per_epoch

#: (row label, method overrides) of the comparison
DEMO_METHODS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Single", {"name": "single"}),
    ("Aux-Head", {"name": "aux_head"}),
    ("Aux-G-Layer", {"name": "aux_g", "granularity": "layer"}),
    ("Aux-NAS", {"name": "aux_nas"}),
)

QUICK_OVERRIDES = (
    "data.image_size=32", "data.num_train=48", "data.num_test=16", "data.batch_size=8", "train.epochs=1",
    "train.max_steps_per_epoch=2",
)


def _row_config(base: ExperimentConfig, out_dir: Path, label: str, method: dict[str, Any]) -> ExperimentConfig:
    """The config of one row. The budget is the number of network-weight updates: a bilevel search spends
    half of every epoch's images on architecture steps, so it gets the whole number of epochs nearest to
    the same number of network updates (about twice the epochs; exactly as many updates with --quick)."""
    slug = label.lower().replace("-", "_")
    cfg = dataclasses.replace(
        base, name=f"{base.name}-{slug}", out_dir=str(out_dir / slug),
        method=dataclasses.replace(base.method, **method),
    )
    if cfg.method.name == "aux_nas" and cfg.method.optimization == "bilevel":
        num_train = cfg.data.num_train - num_val_images(cfg.data.num_train, cfg.data.val_fraction)
        updates = steps_per_epoch(num_train, cfg, bilevel=False) * cfg.train.epochs
        epochs = max(1, round(updates / steps_per_epoch(num_train, cfg, bilevel=True)))
        cfg.train = dataclasses.replace(cfg.train, epochs=epochs)
    return cfg


def _format_table(rows: list[dict[str, Any]], metrics: Sequence[str]) -> str:
    header = ["method", *metrics, "Δm (%)", "params", "params ×", "GFLOPs", "FLOPs ×", "latency ms", "latency ×",
              "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["label"], *(f"{r['test'][m]:.2f}" for m in metrics), f"{r['delta_m']:+.2f}",
                 f"{r['params']:,}", f"{r['params_ratio']:.3f}", f"{r['flops'] / 1e9:.4f}", f"{r['flops_ratio']:.3f}",
                 f"{r['latency_ms']:.2f}", f"{r['latency_ratio']:.2f}", f"{r['train_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(
    out_dir: str | os.PathLike = "runs/demo", quick: bool = False, overrides: Sequence[str] = (), progress: bool = True,
) -> dict[str, Any]:
    """Train, export and compare every method of ``DEMO_METHODS``; write ``report.md``, plots and ``demo.json``."""
    start = time.perf_counter()
    out = Path(out_dir)
    base = load_config("demo", [*(QUICK_OVERRIDES if quick else ()), *overrides])
    rows: list[dict[str, Any]] = []
    for label, method in DEMO_METHODS:
        cfg = _row_config(base, out, label, method)
        if progress:
            print(f"== {label}: training ({cfg.method.name}) ==", flush=True)
        result = fit(cfg, progress=progress, overwrite=True)  # the demo's own row directories, rerun each time
        export_dir = Path(cfg.out_dir) / "export"
        report = export_primary(cfg.out_dir, export_dir)
        rows.append({"label": label, "method": cfg.method.name, "run_dir": cfg.out_dir, "test": {},
                     "test_all": result.test_best, "train_s": result.wall_time_s, "export": report,
                     "best_epoch": result.best_epoch})

    primary = base.tasks.primary
    spec = read_export_spec(Path(rows[0]["run_dir"]) / "export")
    task = build_task(spec["task"], spec["num_classes"])
    example = torch.randn(1, 3, base.data.image_size, base.data.image_size)
    single_net = build_branch(base.model.backbone, task, image_size=base.data.image_size)
    networks = {row["label"]: load_exported(Path(row["run_dir"]) / "export") for row in rows}
    latency = measure_latency({"single-task network": single_net, **networks}, example)
    single_cost = count_parameters(single_net), count_flops(single_net, example), latency["single-task network"]
    metrics = [m for _, m in task_delta_metrics(task)]
    baseline = {primary: rows[0]["test_all"][primary]}
    scored = [m for m in metrics if baseline[primary][m] != 0]  # a relative change from 0 is undefined
    for row in rows:
        network = networks[row["label"]]
        params, flops = count_parameters(network), count_flops(network, example)
        row["test"] = row["test_all"][primary]
        row["delta_m"] = delta_m({primary: row["test"]}, baseline, [(primary, m) for m in scored],
                                 {(primary, m): task.higher_is_better[m] for m in scored})
        row.update(params=params, flops=flops, latency_ms=latency[row["label"]], params_ratio=params / single_cost[0],
                   flops_ratio=flops / single_cost[1], latency_ratio=latency[row["label"]] / single_cost[2])

    table = _format_table(rows, metrics)
    nas = next(r for r in rows if r["method"] == "aux_nas")
    figures = []
    record = json.loads((Path(nas["run_dir"]) / "metrics.json").read_text())["link_strengths"]
    num_cells = 1 + max(max(t, s) for names in record["names"].values() for t, s in names)
    figures.append(plot_link_history(record, out / "link_strengths.png", "Aux-NAS link strengths over training"))
    figures.append(plot_link_heatmap(record, out / "link_heatmap.png", num_cells, "Aux-NAS final link strengths"))
    wall = time.perf_counter() - start
    a2p_max = nas["export"]["a2p_max"]
    lines = [
        f"# auxnas demo: primary `{primary}`, auxiliary {base.tasks.aux}, backbone `{base.model.backbone}`",
        "",
        f"Same budget for every method: the same number of network-weight updates ({base.train.epochs} epochs of "
        f"{base.data.num_train} training images at {base.data.image_size}px; Aux-NAS's bilevel search uses half of "
        "each epoch's images for architecture steps, so it runs twice the epochs; its extra compute shows in the "
        "train-seconds column). Checkpoints selected on the validation split; test metrics of the selected "
        "checkpoint. Costs are of the **exported** primary networks (batch 1, this machine's CPU for latency); "
        "ratios are against the single-task network measured in the same run. Δm: mean signed relative change "
        "of the primary metrics against Single, positive = better.",
        "",
        table,
        "",
        f"Aux-NAS a2p links after training: max strength {a2p_max:.2e} (export threshold "
        f"{nas['export']['threshold']}); every export verified: outputs equal to the trained model with a2p cut "
        "(max |diff| "
        + ", ".join(f"{r['label']} {r['export']['max_abs_diff']:.1e}" for r in rows)
        + "), parameters and FLOPs equal to the single-task network.",
        "",
        "![link strengths over training](link_strengths.png)",
        "",
        "![final link strengths](link_heatmap.png)",
        "",
        f"Wall time: {wall:.0f} s.",
    ]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "report.md", "\n".join(lines) + "\n")
    summary = {"rows": [{k: v for k, v in r.items() if k != "export"} for r in rows], "wall_time_s": wall,
               "table": table, "figures": [str(f) for f in figures]}
    write_json(out / "demo.json", summary)
    if progress:
        print(table)
        print(f"report: {out / 'report.md'}  ({wall:.0f} s)")
    return summary
