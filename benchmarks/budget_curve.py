"""How large must a budget be before the accuracy benchmark can see a gain? The positive controls' curve.

For each point (backbone, image size, network updates, learning rate) this runs the accuracy benchmark's
``controls`` preset (``ctrl-depth`` and ``ctrl-layout``: floor, ceiling, Aux-Head, Aux-NAS) as a tagged variant
and collects, per control, the floor, the ceiling and each row's share of the floor-to-ceiling gap with its
Fieller interval, and whether the control passed (Aux-Head's share interval above 0). Points are independent
benchmark variants: run them in separate processes, then once more with every point and ``--reuse-only`` to write
the curve (finished runs are read; a missing one is an error, never trained).

    python benchmarks/budget_curve.py --points tiny_resnet:64:3 tiny_resnet:64:12 --seeds 0 1 2 --reuse
    python benchmarks/budget_curve.py --points ... --runs benchmarks/records --reuse-only --curve budget-curve

A point is ``BACKBONE:PX:EPOCHS[:LR]``; the controls' larger set has 32 batches an epoch (3 epochs = 96 updates).
``efficientnet_lite0`` starts from its packaged ImageNet weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from auxnas.bench.accuracy import run_accuracy_benchmark
from auxnas.bench.presets import CONTROLS
from auxnas.storage import write_json, write_text

#: learning rate of a point that names none: the benchmark's Adam 2e-3 from scratch, 1e-3 when fine-tuning
DEFAULT_LR = {"efficientnet_lite0": 0.001}
#: diagnostics on every run (changes no result): per-task gradients on the shared parameters, a2p kept
DIAGNOSE_EVERY = 8


def point_overrides(point: str) -> tuple[str, list[str]]:
    """The tag and the overrides of a ``BACKBONE:PX:EPOCHS[:LR]`` point."""
    parts = point.split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"point {point!r}: expected BACKBONE:PX:EPOCHS[:LR]")
    backbone, px, epochs = parts[0], int(parts[1]), int(parts[2])
    lr = float(parts[3]) if len(parts) == 4 else DEFAULT_LR.get(backbone, 0.002)
    overrides = [f"model.backbone={backbone}", f"data.image_size={px}", f"train.epochs={epochs}", f"train.lr={lr}",
                 f"train.diagnose_every={DIAGNOSE_EVERY}"]
    if backbone == "efficientnet_lite0":
        overrides.append("model.pretrained=packaged")
    return f"{backbone}-{px}px-e{epochs}-lr{lr:g}".replace(".", "p"), overrides


def _row(point: str, summary: dict[str, Any]) -> dict[str, Any]:
    controls = summary["controls"]["settings"]
    updates = {name: summary["settings"][name]["network_updates"] for name in controls}
    return {"point": point, "tag": summary["tag"], "overrides": summary["overrides"], "seeds": summary["seeds"],
            "network_updates": updates, "run_time_s": summary["run_time_s"], "controls": controls,
            "passed": summary["controls"]["passed"]}


def _pct(share: dict[str, Any]) -> str:
    if share["share"] != share["share"]:
        return "—"
    interval = f"[{100 * share['low']:+.0f}, {100 * share['high']:+.0f}]" if share["bounded"] else "[unbounded]"
    return f"{100 * share['share']:+.0f} % {interval}"


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Budget curve of the positive controls",
        "",
        "Per point (backbone, image size, epochs of 32 batches of 16, learning rate), per control: floor (single-task "
        "on 10 % of the primary labels) and ceiling (every label), mean ± std over seeds, and each row's share of the "
        "floor-to-ceiling gap on the selected checkpoint's main metric with its 95 % Fieller interval. A control "
        "passes when Aux-Head's interval lies above 0.",
        "",
        "| point | updates | control | floor | ceiling | aux_head share | aux_nas share | passed | run time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name, c in row["controls"].items():
            shares = c["shares"]
            cells = [
                row["point"], str(row["network_updates"][name]), name,
                f"{c['floor']['mean']:.3f} ± {c['floor']['std']:.3f}",
                f"{c['ceiling']['mean']:.3f} ± {c['ceiling']['std']:.3f}",
                _pct(shares["aux_head"]) if "aux_head" in shares else "—",
                _pct(shares["aux_nas"]) if "aux_nas" in shares else "—",
                {True: "**yes**", False: "no", None: "—"}[c["passed"]], f"{row['run_time_s'] / 60:.0f} min",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", nargs="+", required=True, help="BACKBONE:PX:EPOCHS[:LR] ...")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=["aux_head", "aux_nas"])
    parser.add_argument("--runs", default="runs/bench-accuracy")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--reuse", action="store_true", help="read finished runs instead of training them again")
    parser.add_argument("--reuse-only", action="store_true", help="read every run, train none (from records)")
    parser.add_argument("--curve", default=None, help="also write <out>/<curve>.{json,md} over every point")
    args = parser.parse_args()
    rows = []
    for point in args.points:
        tag, overrides = point_overrides(point)
        summary = run_accuracy_benchmark("controls", args.out, args.runs, progress=True, settings=list(CONTROLS),
                                         rows=args.rows, seeds=args.seeds, reuse=args.reuse, overrides=overrides,
                                         tag=tag, train=not args.reuse_only)
        rows.append(_row(point, summary))
    if args.curve:
        out = Path(args.out)
        write_json(out / f"{args.curve}.json", {"points": rows})
        write_text(out / f"{args.curve}.md", _markdown(rows))
        print(_markdown(rows))


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError) as err:  # a missing record with --reuse-only, a bad point, a tag's other overrides
        raise SystemExit(f"budget_curve: error: {err}") from None
