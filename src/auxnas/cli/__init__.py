"""The ``auxnas`` command line; every command is one call into the library.

Each command imports what it runs when it runs: the parser, ``--help`` and argument errors load no torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..bench.presets import PRESETS
from ..config import ConfigError
from ..errors import CheckpointError, ExportError, PretrainedWeightsError
from ..export_options import FORMATS, check_threshold
from . import commands


def _threshold(text: str) -> float:
    """argparse type of ``--threshold``: a finite number in [0, 1)."""
    try:
        return check_threshold(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number in [0, 1), got {text!r}") from None


def _seed_count(text: str) -> int:
    """argparse type of ``compare --seeds``: a whole number of seeds, at least 2 (an interval needs two)."""
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"expected a number of seeds >= 2 (an interval over seeds needs two), "
                                          f"got {text!r}")
    return int(text)


def _share(text: str) -> float:
    """argparse type of ``compare --holdout``: a share in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected the share of primary labels to hold out, in (0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auxnas", description="Auxiliary-label learning with single-task inference cost (Aux-NAS and baselines).",
        epilog="An error is one line on stderr (exit status 2); AUXNAS_DEBUG=1 in the environment raises it with its "
               "traceback instead.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one experiment from a YAML config",
                           description="Train one experiment. CONFIG is a YAML file or a packaged config name "
                                       "(e.g. quickstart); key=value pairs override its fields, e.g. train.epochs=2.")
    train.add_argument("config", nargs="?", default=None)
    train.add_argument("overrides", nargs="*", metavar="key=value")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--overwrite", action="store_true",
                       help="reuse a non-empty out_dir, replacing an earlier run's config, checkpoints, metrics "
                            "and the exports inside it")
    train.add_argument("--resume", metavar="RUN_DIR", default=None,
                       help="continue an interrupted run from its last finished epoch, with its own config")
    train.set_defaults(func=commands.train)

    ev = sub.add_parser("evaluate", help="evaluate a run directory or checkpoint",
                        description="Evaluate the selected (best) checkpoint of a run directory, or a checkpoint file.")
    ev.add_argument("path", help="run directory or .pt checkpoint")
    ev.add_argument("--split", choices=["test", "val"], default="test")
    ev.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ev.add_argument("--json", action="store_true", help="print metrics as JSON")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=commands.evaluate)

    ex = sub.add_parser("export", help="write the deployable primary-only network of a run, verified",
                        description="Export the primary network of a run directory (its selected checkpoint) or a "
                                    "checkpoint: no auxiliary branch, link or fusion op. Verifies a2p strengths, "
                                    "output equality and single-task parameters/FLOPs, measures what cutting the "
                                    "a2p links changes on the validation split; writes export_report.json.")
    ex.add_argument("path", help="run directory or .pt checkpoint")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--threshold", type=_threshold, default=0.01,
                    help="largest a2p strength that may be cut, in [0, 1)")
    ex.add_argument("--force", action="store_true", help="export even when a2p strengths exceed the threshold")
    ex.add_argument("--format", nargs="+", default=[], choices=list(FORMATS),
                    help="deployment formats written beside model.safetensors, each checked against PyTorch "
                         "(onnx needs pip install 'auxnas[export]')")
    ex.add_argument("--overwrite", action="store_true",
                    help="replace an earlier export in --out (a folder holding any other file, or a symbolic link, "
                         "is refused)")
    ex.set_defaults(func=commands.export)

    pr = sub.add_parser("predict", help="apply an exported network to image files, under its contract",
                        description="Read each image (PNG, JPG, or .npy H x W x 3), preprocess it as exported.yaml's "
                                    "contract says (RGB / 255, ImageNet mean and std, NCHW float32), run the exported "
                                    "network and write each prediction into --out: <name>.png class maps for "
                                    "segmentation, <name>.npy for other dense outputs, predictions.json for "
                                    "image-level ones (docs/export.md).")
    pr.add_argument("export", help="a folder written by auxnas export (or by auxnas compare, exports/<row>)")
    pr.add_argument("images", nargs="+", help="image files")
    pr.add_argument("--out", required=True, help="an empty or new folder for the predictions")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=commands.predict)

    recipe = sub.add_parser(
        "recipe", help="the authors' recipe: single-task primary, single-task auxiliaries, then the method "
                       "initialised from them",
        description="Train CONFIG's primary task alone, each auxiliary task alone, then CONFIG's method with "
                    "init.primary / init.aux set to those runs, into OUT/single-<task> and OUT/<method>. "
                    "Finished stages of the same config are kept, so a rerun continues; a stage folder holding a "
                    "run of another config is refused, never replaced.")
    recipe.add_argument("config")
    recipe.add_argument("overrides", nargs="*", metavar="key=value")
    recipe.add_argument("--out", default=None, help="folder of the stages' runs (default: the config's out_dir)")
    recipe.add_argument("--quiet", action="store_true", help="no progress bars")
    recipe.set_defaults(func=commands.recipe)

    compare = sub.add_parser(
        "compare", help="will my auxiliary labels help? every method vs single-task on your config, over seeds",
        description="Train single-task and each method on CONFIG with the same network updates over several seeds, "
                    "compare each with single-task (mean ± std, paired 95 % interval, Δm, a verdict), export and "
                    "verify each method's primary network, measure a training iteration's time and memory, and "
                    "write compare.json and compare.md with a recommendation (docs/compare.md).")
    compare.add_argument("config")
    compare.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every run")
    compare.add_argument("--methods", nargs="+", default=["aux_head", "aux_g", "aux_nas"], metavar="METHOD[+WEIGHTING]",
                         help="methods compared with single-task, e.g. aux_nas aux_head+gcs (default: aux_head "
                              "aux_g aux_nas); single-task is always the baseline row, so at least one must use "
                              "auxiliary tasks. Each row sets its own method: the config's method.name is only a "
                              "starting point")
    compare.add_argument("--seeds", type=_seed_count, default=3, metavar="N", help="seeds 0..N-1, N >= 2 (default 3)")
    compare.add_argument("--controls", action="store_true",
                         help="add each method with random auxiliary targets (the noise control)")
    compare.add_argument("--holdout", type=_share, default=None, metavar="SHARE",
                         help="withhold this share of the primary labels from training, and add the ceiling: "
                              "single-task with them (e.g. 0.9 keeps 10 %%)")
    compare.add_argument("--budget", type=int, default=None, metavar="UPDATES",
                         help="network updates per run (default: train.epochs epochs of single-task)")
    compare.add_argument("--out", default=None, help="folder of compare.json, compare.md, runs/ and exports/ "
                                                     "(default runs/compare/<config name>)")
    compare.add_argument("--reuse", action="store_true",
                         help="read finished runs with the same overrides instead of training them again")
    compare.add_argument("--jobs", type=int, default=1, metavar="N",
                         help="train N seeds at once, each in its own process with cores / N threads (a many-core "
                              "machine, or runs sharing one GPU)")
    compare.add_argument("--quiet", action="store_true",
                         help="print a line per run (its main metric at the epoch selected on the validation split "
                              "and at the last), warnings and the recommendation, not every step or compare.md")
    compare.set_defaults(func=commands.compare)

    demo = sub.add_parser("demo", help="Single, Aux-Head, Aux-G, Aux-NAS and a noise control over 5 seeds on the "
                          "synthetic scenes: statistics against Single, exported costs",
                          description="Train every method with the same budget over 5 seeds, export each seed-0 "
                                      "network, and write a table with paired intervals against Single, report.md "
                                      "and link-strength plots into --out.")
    demo.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every run")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--quick", action="store_true", help="a smoke version in seconds (tiny data, 2 seeds)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=commands.demo)

    bench = sub.add_parser("bench", help="benchmarks behind the claims (docs/benchmarks.md)").add_subparsers(
        dest="bench_command", required=True)
    cost = bench.add_parser("cost", help="params, FLOPs, latency, step time and memory against single-task",
                            description="Exported networks vs single-task, search and network steps vs the two "
                                        "single-task steps, K auxiliary tasks, gradient methods; interleaved timings.")
    cost.add_argument("--preset", choices=["full", "tiny"], default="full")
    cost.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto")
    cost.add_argument("--out", default="benchmarks/results", help="folder of cost-<device>.json and .md")
    cost.add_argument("--quiet", action="store_true", help="no progress bars")
    cost.set_defaults(func=commands.bench_cost)
    acc = bench.add_parser("accuracy", help="every method vs single-task over seeds, with paired intervals",
                           description="Train every row of the preset over several seeds and compare each with "
                                       "single-task (mean ± std, paired 95 % interval, Δm); the positive controls "
                                       "(floor, ceiling, each row's share of the gap) come first.")
    acc.add_argument("--preset", choices=list(PRESETS), default="quick")
    acc.add_argument("--out", default="benchmarks/results", help="folder of accuracy-<preset>.json and .md")
    acc.add_argument("--runs", default="runs/bench-accuracy", help="folder of the individual runs")
    acc.add_argument("--settings", nargs="+", default=None, help="only these settings of the preset")
    acc.add_argument("--rows", nargs="+", default=None,
                     help="only these rows (single-task always runs, and its ceiling where the primary is partial)")
    acc.add_argument("--seeds", nargs="+", type=int, default=None, help="these seeds instead of the preset's")
    acc.add_argument("--reuse", action="store_true",
                     help="read finished runs with the same overrides from --runs instead of training them again")
    acc.add_argument("--reuse-only", action="store_true",
                     help="read every run's record from --runs and train none (a missing run is an error): "
                          "regenerates a table from committed records, e.g. --runs benchmarks/records")
    acc.add_argument("--jobs", type=int, default=1,
                     help="train this many (setting, seed) units at once, each in its own process with its share "
                          "of the cores (on CUDA they share the GPU); then read every record")
    acc.add_argument("--set", nargs="+", default=[], metavar="key=value",
                     help="overrides for every run (a variant of the benchmark; needs --tag)")
    acc.add_argument("--tag", default=None, help="name of the variant: accuracy-<preset>-<tag>.json")
    acc.add_argument("--quiet", action="store_true", help="no progress bars")
    acc.set_defaults(func=commands.bench_accuracy)

    data = sub.add_parser("data", help="dataset utilities").add_subparsers(dest="data_command", required=True)
    preview = data.add_parser("preview", help="write a PNG grid of synthetic images and their labels")
    preview.add_argument("--out", required=True, help="output .png file")
    preview.add_argument("--num", type=int, default=8, help="number of images")
    preview.add_argument("--image-size", type=int, default=64)
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--split", choices=["train", "test"], default="train")
    preview.add_argument("--cache-dir", default=None)
    preview.set_defaults(func=commands.data_preview)
    check = data.add_parser("check", help="read every file of a folder dataset; report its labels and problems",
                            description="Read every image and label of a folder dataset (data.name: folder, "
                                        "docs/datasets.md) as training would; print per split and task the images, "
                                        "labels and value ranges, and every problem with its file. Exit status: 0 "
                                        "no problem, 1 problems found, 2 nothing to check (e.g. no dataset.yaml).")
    check.add_argument("root", help="the dataset folder (holding dataset.yaml)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(func=commands.data_check)
    return parser


def _message(err: BaseException) -> str:
    """The error's own message; for one re-raised from a DataLoader worker (whose message carries the worker's
    traceback), the message of the original error, its last line."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if last.startswith(type(err).__name__ + ": ") else last


#: the commands that run under torchrun, one process per device (every other one refuses to start there)
DATA_PARALLEL_COMMANDS = ("train", "recipe")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``): an error ends in one line on stderr (exit status
    2), a Ctrl-C wherever it lands from parsing on in ``auxnas: interrupted`` (130). The ``auxnas`` console script
    and ``python -m auxnas`` call it through ``auxnas.__main__.run``, which covers this module's import too."""
    try:
        return _run_command(argv)
    except KeyboardInterrupt:
        print("auxnas: interrupted", file=sys.stderr)
        return 130


def _run_command(argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its command; a bad input is one line on stderr, exit status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides (and @protocols) may also come after options (`auxnas train cfg --quiet a=1`)
    if extra and hasattr(args, "overrides") and all(("=" in e or e.startswith("@")) and not e.startswith("-")
                                                    for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    debug = os.environ.get("AUXNAS_DEBUG", "") not in ("", "0")
    processes = os.environ.get("WORLD_SIZE", "1")
    if processes not in ("", "1") and args.command not in DATA_PARALLEL_COMMANDS:
        names = (args.command, getattr(args, "bench_command", None), getattr(args, "data_command", None))
        command = " ".join(["auxnas", *filter(None, names)])
        print(f"auxnas: error: `{command}` runs in one process, but torchrun started {processes} (WORLD_SIZE): run "
              f"it without torchrun (only {' and '.join(DATA_PARALLEL_COMMANDS)} train data-parallel)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (
        ConfigError, CheckpointError, ExportError, PretrainedWeightsError, OSError, ValueError, FloatingPointError,
    ) as err:
        if debug:
            raise
        print(f"auxnas: error: {_message(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # last resort: no known bad input, e.g. a failure inside torch
        if isinstance(err.__cause__, KeyboardInterrupt):  # Python < 3.12 wraps a Ctrl-C in a class's __set_name__
            raise err.__cause__ from None
        if debug:
            raise
        names = (args.command, getattr(args, "bench_command", None), getattr(args, "data_command", None))
        command = " ".join(["auxnas", *filter(None, names)])
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        print(f"auxnas: error: unexpected {type(err).__name__} in `{command}`: {first} (set AUXNAS_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return 2
