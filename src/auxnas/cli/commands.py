"""What each ``auxnas`` command does: one call into the library, and what it prints. ``auxnas.cli`` parses the
arguments and hands them here; each command imports what it runs when it runs, so the parser loads no torch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    lines = []
    for task, values in metrics.items():
        lines.append(f"  {task}: " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    return "\n".join(lines)


def _format_conventions(conventions: dict[str, dict[str, object]]) -> str:
    """One line per task: its loss and metric conventions (docs/tasks.md)."""
    return "\n".join(f"  {task}: " + "  ".join(f"{k} {v}" for k, v in values.items())
                     for task, values in conventions.items())


def _resume_command(run_dir: str | Path) -> str:
    """The command that continues the run in ``run_dir``: under torchrun (``WORLD_SIZE`` > 1) with its processes."""
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return f"auxnas train --resume {run_dir}"
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or world)
    nodes = "" if local == world else f"--nnodes {world // local} --node_rank R --master_addr HOST --master_port PORT "
    where = "" if local == world else " (on each node)"
    return f"torchrun {nodes}--nproc_per_node {local} -m auxnas train --resume {run_dir}{where}"


def train(args: argparse.Namespace) -> int:
    import signal

    from ..config import load_config, resolve_config_path

    if args.resume is not None and args.config is not None and "=" in args.config:  # an override, not a CONFIG
        args.config, args.overrides = None, [args.config, *args.overrides]
    if (args.resume is None) == (args.config is None):
        raise ValueError("auxnas train: give either CONFIG [key=value ...] or --resume RUN_DIR")
    if args.resume is not None and (args.overrides or args.overwrite):
        raise ValueError("auxnas train --resume: a resumed run keeps its own config; no overrides or --overwrite")
    cfg = None if args.config is None else load_config(args.config, args.overrides)  # a typo answers before torch

    from ..config.validate import validate
    from ..distributed import is_main
    from ..engine.record import STALLED_RATIO, stalled
    from ..train import fit, resume_run

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill ends like Ctrl-C: resumable
    try:
        if cfg is None:
            result = resume_run(args.resume, progress=not args.quiet)
        else:
            result = fit(validate(cfg, source=str(resolve_config_path(args.config))), progress=not args.quiet,
                         overwrite=args.overwrite)
    except KeyboardInterrupt:
        run_dir = args.resume if cfg is None else cfg.out_dir
        if is_main() and (Path(run_dir) / "last.pt").is_file():
            print(f"auxnas: interrupted; continue with: {_resume_command(run_dir)}", file=sys.stderr)
        elif is_main():
            print(f"auxnas: interrupted before the first epoch ended: nothing to resume from; start the run again with "
                  f"the same command (it reuses {run_dir})", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not is_main():  # torchrun: rank 0 reports the run
        return 0
    print(f"run directory: {result.out_dir}  (best epoch {result.best_epoch}, selected on the validation split, "
          f"{result.wall_time_s:.0f} s)")
    if args.quiet:  # otherwise the run said it at its start
        print("training images with a label: " + ", ".join(f"{t} {n}" for t, n in result.train_labels.items()))
    print("test metrics of the selected checkpoint:")
    print(_format_metrics(result.test_best))
    print("test metrics of the last checkpoint:")
    print(_format_metrics(result.test_last))
    print("conventions (docs/tasks.md):")
    print(_format_conventions(result.conventions))
    primary = (cfg or load_config(str(result.out_dir / "config.yaml"))).tasks.primary
    if stalled(result.history, primary):
        print(f"warning: {primary}'s training loss stopped falling early (its mean over the last third of training "
              f"is at least {STALLED_RATIO} x its mean over the second tenth): a branch that no longer learns, often "
              "from too high a learning rate; lower train.lr (docs/compare.md)")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from ..train import evaluate

    metrics = evaluate(args.path, split=args.split, device=args.device, progress=not args.quiet)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        conventions = metrics.pop("conventions")
        print(f"{args.split} metrics of {args.path}:")
        print(_format_metrics(metrics))
        print("conventions (docs/tasks.md):")
        print(_format_conventions(conventions))
    return 0


def predict(args: argparse.Namespace) -> int:
    from ..predict import predict as run

    written = run(args.export, args.images, args.out, progress=not args.quiet)
    print(f"wrote {len(written)} prediction file(s) into {args.out}")
    return 0


def export(args: argparse.Namespace) -> int:
    from ..export import export_primary

    report = export_primary(args.path, args.out, threshold=args.threshold, force=args.force, formats=args.format,
                            overwrite=args.overwrite)
    checks = ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in report["checks"].items())
    print(f"exported the primary network ({report['primary']}, {report['method']}) to {args.out}")
    print(f"  checks: {checks}")
    print(f"  max |exported - trained| on {report['num_inputs']} test images: {report['max_abs_diff']:.2e}")
    cut = report["a2p_cut"]
    if cut:
        uncut = cut["val_metrics_uncut"]
        changes = "  ".join(
            f"{k} {uncut[k]:.4g} -> {v:.4g}" for k, v in cut["val_metrics_cut"].items() if k != "num_images"
        )
        print(f"  cutting the a2p links: max |uncut - cut| {cut['max_abs_diff_val']:.2e} on {cut['num_val_images']} "
              f"validation images; {report['primary']} uncut -> cut: {changes}")
    print(f"  parameters {report['params']['exported']:,} (single-task {report['params']['single_task']:,}), "
          f"FLOPs/image {report['flops_per_image']['exported']:,} (single-task "
          f"{report['flops_per_image']['single_task']:,})")
    for fmt, written in report["formats"].items():
        beside = "".join(f" + {name} (keep it beside)" for name in written["files"] if name != written["file"])
        print(f"  {fmt}: {Path(args.out) / written['file']}{beside}, max |{fmt} - PyTorch| "
              f"{written['max_abs_diff']:.2e} at batch sizes {written['batch_sizes_checked']}")
    if report["forced"]:
        print("  WARNING: exported with --force although a2p links are above the threshold; see export_report.json")
    return 0


def demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    summary = run_demo(args.out, quick=args.quick, overrides=args.overrides, progress=not args.quiet)
    print(summary["table"])
    print(summary["verdict"])
    print(f"report: {summary['report']}  ({summary['wall_time_s']:.0f} s)")
    return 0


def bench_cost(args: argparse.Namespace) -> int:
    from ..bench.cost import run_cost_benchmark

    run_cost_benchmark(args.preset, args.out, device=args.device, progress=not args.quiet)
    print(f"wrote {args.out}/cost-*.json and .md")
    return 0


def recipe(args: argparse.Namespace) -> int:
    from ..recipe import run_recipe

    results = run_recipe(args.config, args.overrides, out_dir=args.out, progress=not args.quiet)
    for stage, result in results.items():
        metrics = "  ".join(f"{k} {v:.4g}" for k, v in result["test_best"].items() if k != "num_images")
        print(f"{stage}: {result['run_dir']}  test: {metrics}")
    return 0


def compare(args: argparse.Namespace) -> int:
    from ..compare.comparison import run_comparison

    summary = run_comparison(args.config, args.overrides, methods=args.methods, seeds=args.seeds,
                             controls=args.controls, holdout=args.holdout, budget=args.budget, out_dir=args.out,
                             reuse=args.reuse, progress=not args.quiet, jobs=args.jobs, run_lines=True)
    if args.quiet:
        print(summary["recommendation"])
    print(f"wrote {summary['json_file']} and {summary['markdown_file']}  ({summary['wall_time_s']:.0f} s)")
    return 0


def bench_accuracy(args: argparse.Namespace) -> int:
    from ..bench.accuracy import run_accuracy_benchmark

    run_accuracy_benchmark(args.preset, args.out, runs_dir=args.runs, progress=not args.quiet,
                           settings=args.settings, rows=args.rows, seeds=args.seeds, reuse=args.reuse,
                           overrides=args.set, tag=args.tag, train=not args.reuse_only, jobs=args.jobs)
    name = f"{args.preset}-{args.tag}" if args.tag else args.preset
    print(f"wrote {args.out}/accuracy-{name}.json and .md")
    return 0


def data_preview(args: argparse.Namespace) -> int:
    from ..data.preview import save_preview
    from ..data.synthetic import SyntheticScenes

    dataset = SyntheticScenes(args.split, args.num, args.image_size, args.seed, args.cache_dir)
    path = save_preview(dataset, args.out, num_images=args.num)
    print(f"wrote {path}")
    return 0


def data_check(args: argparse.Namespace) -> int:
    from ..data.check import check_folder, format_report

    report = check_folder(args.root, progress=not args.quiet)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if report["problems"] else 0
