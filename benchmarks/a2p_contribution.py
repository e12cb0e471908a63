"""What do Aux-NAS's a2p links still carry into the primary branch at the end of training?

The L1 penalty acts on the link strengths ``s``; a fusion op adds ``W · concat(s · y)`` to the primary cell's
output ``x``, and ``W`` (a 1x1 convolution) is trained freely. So a strength driven to 1e-3 still carries as
much as the projection makes of it. Per primary fusion op (target cell) of each run's checkpoint, on its
validation images (a2p links kept): the largest incoming a2p strength, the Frobenius norm of ``W`` and the
a2p contribution ``‖W · concat(s · y)‖ / ‖x‖`` (norms over the whole split); and the run's validation
metric with the a2p links kept and cut, which is what that contribution is worth.

Needs the runs' checkpoints (``last.pt``), which the committed records do not keep:

    python benchmarks/a2p_contribution.py RUNS/ctrl-depth/aux_nas/seed3 RUNS/ctrl-depth/aux_nas-recipe/seed3 \
        --out benchmarks/results/a2p_contribution
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from auxnas.data import build_splits
from auxnas.engine.checkpoints import load_trained
from auxnas.methods.aux_nas.model import LinkedBranches
from auxnas.storage import write_json, write_text


@torch.no_grad()
def a2p_contributions(model: LinkedBranches, loader: DataLoader) -> dict[str, dict[str, float]]:
    """Target cell -> largest incoming a2p strength, ``‖W‖`` of its fusion op and the a2p contribution
    ``‖W · concat(s · y)‖ / ‖x‖`` over every image of ``loader`` (eval mode, a2p links kept)."""
    squares: dict[str, dict[str, float]] = {cell: {"x": 0.0, "added": 0.0} for cell in model.primary_fusions}
    hooks = []
    for cell, fusion in model.primary_fusions.items():
        def own(_: nn.Module, args: tuple[Any, ...], cell: str = cell) -> None:
            squares[cell]["x"] += float(args[0].float().pow(2).sum())

        def added(_: nn.Module, __: tuple[Any, ...], out: Tensor, cell: str = cell) -> None:
            squares[cell]["added"] += float(out.float().pow(2).sum())

        hooks += [fusion.register_forward_pre_hook(own), fusion.proj.register_forward_hook(added)]
    model.eval()
    try:
        for batch in loader:
            model(batch["image"], cut_a2p=False)
    finally:
        for hook in hooks:
            hook.remove()
    out = {}
    for cell, fusion in model.primary_fusions.items():
        strengths = [float(links.strengths()[k]) for links in model.a2p.values() for k, _ in links.incoming(int(cell))]
        out[cell] = {"a2p_max": max(strengths), "proj_norm": float(fusion.proj.weight.norm()),
                     "contribution": (squares[cell]["added"] / squares[cell]["x"]) ** 0.5}
    return out


@torch.no_grad()
def kept_and_cut(model: LinkedBranches, loader: DataLoader) -> dict[str, float]:
    """The primary's validation main metric with the a2p links kept and cut (eval mode both)."""
    task = model.tasks[model.primary]
    metrics = {"kept": task.new_metric(), "cut": task.new_metric()}
    model.eval()
    for batch in loader:
        for name, metric in metrics.items():
            task.update_metric(metric, model(batch["image"], cut_a2p=name == "cut")[model.primary], batch)
    return {name: float(metric.compute()[task.main_metric]) for name, metric in metrics.items()}


def measure(run: Path) -> dict[str, Any]:
    """One run's measurements, from its ``last.pt`` (the end of training)."""
    cfg, model, payload = load_trained(run / "last.pt" if run.is_dir() else run)
    if not isinstance(model, LinkedBranches) or not model.a2p:
        raise SystemExit(f"{run}: {cfg.method.name} has no a2p links")
    loader = DataLoader(build_splits(cfg.data, progress=False).val, batch_size=cfg.data.batch_size)
    return {"run": str(run), "method": cfg.method.name, "epoch": payload["epoch"], "primary": model.primary,
            "metric": model.tasks[model.primary].main_metric, "val": kept_and_cut(model, loader),
            "cells": a2p_contributions(model, loader)}


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# What the a2p links still carry at the end of training", "",
             "Per primary fusion op (target cell, input side first): largest a2p strength *s*, Frobenius norm of "
             "its 1x1 projection ‖W‖, and the a2p contribution ‖W · concat(s · y)‖ / ‖x‖ on the validation "
             "images; with the validation main metric with the a2p links kept and cut.", ""]
    for r in results:
        lines += [f"## `{r['run']}`", "",
                  f"{r['method']}, epoch {r['epoch']}; validation {r['primary']} {r['metric']}: "
                  f"kept {r['val']['kept']:.3f}, cut {r['val']['cut']:.3f}.", "",
                  "| cell | s max | ‖W‖ | contribution |", "|---|---|---|---|"]
        lines += [f"| {cell} | {c['a2p_max']:.1e} | {c['proj_norm']:.1f} | {100 * c['contribution']:.2f} % |"
                  for cell, c in r["cells"].items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (their last.pt) or checkpoint files")
    parser.add_argument("--out", default="benchmarks/results/a2p_contribution", help="writes <out>.json and <out>.md")
    args = parser.parse_args()
    results = [measure(run) for run in args.runs]
    write_json(Path(f"{args.out}.json"), {"runs": results})
    write_text(Path(f"{args.out}.md"), markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
