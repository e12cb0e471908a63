"""First look at partially labelled data: primary labels on a fraction of the training images, auxiliary on all.

Segmentation primary, surface-normal auxiliary, tiny_resnet on the synthetic scenes. Single-task trains on
the labelled primary subset; aux_head and aux_nas add the normals of every image. Every row gets the same
number of network updates (bilevel aux_nas spends half its steps on architecture batches, so it runs twice
the epochs, as `auxnas demo` does). Writes JSON and a markdown table with mean ± std over seeds and the
paired 95 % interval of each row's difference to single-task.

    python benchmarks/partial_labels.py --seeds 0 1 2 --out benchmarks/results/partial_labels
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from auxnas.config import load_config
from auxnas.stats import mean_std, paired_interval
from auxnas.storage import write_json, write_text
from auxnas.train import fit

ROWS = (("single", "single"), ("aux_head", "aux_head"), ("aux_nas", "aux_nas"))
METRICS = ("miou", "pixel_acc")


def row_overrides(method: str, fraction: float, epochs: int, seed: int, out: Path, num_train: int) -> list[str]:
    aux = "[]" if method == "single" else "[normal]"
    bilevel_epochs = epochs * 2 if method == "aux_nas" else epochs
    return [
        f"seed={seed}", f"out_dir={out / f'{method}-seed{seed}'}", "tasks.primary=seg", f"tasks.aux={aux}",
        "tasks.loss_weights={seg: 1.0, normal: 1.0}", f"method.name={method}", f"train.epochs={bilevel_epochs}",
        f"data.num_train={num_train}", f"data.labelled_fraction={{seg: {fraction}}}",
    ]


def fmt(cell: dict[str, Any]) -> str:
    return f"{cell['mean']:.2f} ± {cell['std']:.2f}"


def diff(cell: dict[str, Any]) -> str:
    d = cell["vs_single"]
    return "—" if d is None else f"{d['mean_diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] {d['verdict']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.1, help="fraction of training images with a seg label")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--out", default="benchmarks/results/partial_labels")
    parser.add_argument("--runs", default="runs/bench-partial-labels")
    args = parser.parse_args()

    start = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in ROWS}
    for seed in args.seeds:
        for name, method in ROWS:
            cfg = load_config("demo", row_overrides(method, args.fraction, args.epochs, seed, Path(args.runs),
                                                    args.num_train))
            result = fit(cfg, progress=False, overwrite=True)
            results[name].append({"seed": seed, "best": result.test_best["seg"], "last": result.test_last["seg"],
                                  "best_epoch": result.best_epoch, "train_s": result.wall_time_s,
                                  "train_labels": result.train_labels})
            print(f"seed {seed} {name}: mIoU {result.test_best['seg']['miou']:.2f} ({result.wall_time_s:.0f} s)",
                  flush=True)

    table: dict[str, Any] = {}
    for name, runs in results.items():
        table[name] = {}
        for which in ("best", "last"):
            for metric in METRICS:
                values = [r[which][metric] for r in runs]
                base = [r[which][metric] for r in results["single"]]
                mean, std = mean_std(values)
                table[name][f"{which}/{metric}"] = {
                    "mean": mean, "std": std, "vs_single": paired_interval(values, base) if name != "single" else None,
                }
    summary = {
        "setting": {"primary": "seg", "aux": "normal", "backbone": "tiny_resnet", "image_size": 64,
                    "num_train": args.num_train, "val_fraction": 0.1, "seg_labelled_fraction": args.fraction,
                    "epochs": args.epochs, "seeds": args.seeds, "loss_weights": {"seg": 1.0, "normal": 1.0}},
        "table": table, "runs": results, "wall_time_s": time.perf_counter() - start,
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), summary)
    lines = [f"Seg primary ({args.fraction:.0%} of training images labelled), normal auxiliary (all labelled); "
             f"test mIoU / pixel acc., mean ± std over seeds {args.seeds}; Δ vs single-task with paired 95 % interval",
             "", "| method | mIoU (selected) | Δ mIoU [95 % CI] | pixel acc. (selected) | mIoU (last) | Δ mIoU last |",
             "|---|---|---|---|---|---|"]
    for name, cells in table.items():
        lines.append(f"| {name} | {fmt(cells['best/miou'])} | {diff(cells['best/miou'])} | "
                     f"{fmt(cells['best/pixel_acc'])} | {fmt(cells['last/miou'])} | {diff(cells['last/miou'])} |")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
