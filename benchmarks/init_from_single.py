"""Does initialising both branches from single-task runs (the authors' recipe, `auxnas recipe`) change the
accuracy benchmark's answer?

On the accuracy benchmark's setting ``b-small`` (normals primary, segmentation auxiliary, 128 training images,
96 network updates per run), for each seed: the recipe (single-task normals, single-task segmentation, then
Aux-NAS and Aux-G initialised from both), and the fair control, single-task normals initialised from its own
single-task run (the same 2 x 96 updates of the primary branch). Writes JSON and a markdown table with mean ±
std and each row's paired 95 % interval against that control and against plain single-task.

    python benchmarks/init_from_single.py --seeds 0 1 2 3 4 --out benchmarks/results/init_from_single
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from auxnas.bench.presets import setting_config
from auxnas.compare.plan import equal_update_epochs
from auxnas.config import load_config
from auxnas.recipe import run_recipe
from auxnas.stats import mean_std, paired_interval
from auxnas.storage import write_json, write_text
from auxnas.train import fit

SETTING = "b-small"
METRIC = "mean_angle"  # lower is better
def seed_runs(seed: int, out: Path) -> dict[str, float]:
    """Test mean angle of every row for one seed."""
    config, base = setting_config(SETTING), [f"seed={seed}"]
    runs = out / f"seed{seed}"
    # the recipe with Aux-G: single-task normals, single-task segmentation (12 epochs each), Aux-G from both
    results = run_recipe(config, [*base, "method.name=aux_g"], runs, progress=False)
    primary, aux = results["single-normal"]["run_dir"], results["single-seg"]["run_dir"]
    init = [f"init.primary={primary}", f"init.aux={{seg: {aux}}}"]
    # Aux-NAS from the same two runs, with the benchmark's epochs for its bilevel search (the same updates)
    nas = load_config(config, [*base, "method.name=aux_nas", *init, f"out_dir={runs / 'aux_nas'}"])
    nas = load_config(config, [*base, "method.name=aux_nas", *init, f"out_dir={runs / 'aux_nas'}",
                               f"train.epochs={equal_update_epochs(nas, 128, True)}"])
    control = load_config(config, [*base, "method.name=single", "tasks.aux=[]", f"init.primary={primary}",
                                   f"out_dir={runs / 'single-from-single'}"])
    return {
        "single": results["single-normal"]["test_best"][METRIC],
        "single from single (control)": fit(control, progress=False, overwrite=True).test_best["normal"][METRIC],
        "aux_g-layer (recipe)": results["aux_g"]["test_best"][METRIC],
        "aux_nas (recipe)": fit(nas, progress=False, overwrite=True).test_best["normal"][METRIC],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="benchmarks/results/init_from_single")
    parser.add_argument("--runs", default="runs/bench-init-from-single")
    args = parser.parse_args()
    start = time.perf_counter()
    per_seed = [seed_runs(seed, Path(args.runs)) for seed in args.seeds]
    rows = list(per_seed[0])
    table: dict[str, Any] = {}
    for row in rows:
        values = [s[row] for s in per_seed]
        mean, std = mean_std(values)
        table[row] = {"values": values, "mean": mean, "std": std,
                      "vs_control": paired_interval(values, [s["single from single (control)"] for s in per_seed]),
                      "vs_single": paired_interval(values, [s["single"] for s in per_seed])}
    lines = [
        f"# Initialising from single-task runs ({SETTING}, test {METRIC} in degrees, lower is better)", "",
        f"Seeds {args.seeds}; 95 % t intervals of the difference paired by seed. Wall time "
        f"{time.perf_counter() - start:.0f} s.", "",
        "| row | mean ± std | Δ vs single from single [95 % CI] | Δ vs single (96 updates) [95 % CI] |",
        "|---|---|---|---|",
    ]
    for row, cell in table.items():
        c, s = cell["vs_control"], cell["vs_single"]
        lines.append(f"| {row} | {cell['mean']:.2f} ± {cell['std']:.2f} | {c['mean_diff']:+.2f} [{c['low']:+.2f}, "
                     f"{c['high']:+.2f}] | {s['mean_diff']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}] |")
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {"setting": SETTING, "metric": METRIC, "seeds": args.seeds,
                                          "table": table, "wall_time_s": time.perf_counter() - start})
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
