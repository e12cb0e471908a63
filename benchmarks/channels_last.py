"""Training-step time in the channels-last (NHWC) layout, ``train.channels_last=true``, against the default one.

For every backbone named, two runs of the same config are built with ``auxnas.engine.fit.build_run``, one per
layout, from the same seed (so the same initial weights and data), and their network steps
(``auxnas.engine.steps.network_step``: forward, task losses, weighting, backward, optimiser step) on the first
training batch are timed interleaved, round by round (``auxnas.measure.time_interleaved``). The setting is the
accuracy benchmark's (a): segmentation primary, surface normals auxiliary, Aux-NAS, 64 px, batch 16. Timings mean
something only on a quiet machine: stop everything else first.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/channels_last.py --threads 1

writes (updates) ``benchmarks/results/channels_last.json`` under ``threads=<N>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from auxnas.config import load_config
from auxnas.distributed import Distributed
from auxnas.engine.fit import build_run
from auxnas.engine.loaders import epoch_batches
from auxnas.engine.steps import network_step
from auxnas.measure import summarize, time_interleaved, time_ratio
from auxnas.storage import write_json

SETTING = ["data.image_size=64", "method.name=aux_nas", "train.tensorboard=false"]
BACKBONES = ["tiny_resnet", "efficientnet_lite0", "resnet18", "vgg16_bn", "vit_tiny"]
OUT = Path(__file__).parent / "results" / "channels_last.json"


def time_backbone(backbone: str, rounds: int, warmup: int) -> dict[str, Any]:
    """Median network-step times (ms) of both layouts and the speed-up default / channels-last."""
    runs = {}
    for layout, channels_last in (("default", False), ("channels_last", True)):
        cfg = load_config("bench/a-large", [*SETTING, f"model.backbone={backbone}",
                                            f"train.channels_last={str(channels_last).lower()}"])
        runs[layout] = build_run(cfg, Distributed(), torch.device("cpu"), progress=False)
    first = runs["default"]
    raw, _ = next(epoch_batches(first.splits.train, first.cfg, 1, first.state.bilevel))
    batch = first.state.parallel.batch(raw, first.model.tasks)
    samples = time_interleaved({layout: (lambda run=run: network_step(run.state, batch, 0.5))
                                for layout, run in runs.items()}, rounds, warmup, desc=backbone, progress=True)
    return {
        "batch_images": len(batch["image"]),
        "step_ms": {layout: summarize(times) for layout, times in samples.items()},
        "speedup": time_ratio(samples, {"default": 1.0}, {"channels_last": 1.0}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backbones", nargs="+", default=BACKBONES)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    results[f"threads={args.threads}"] = {
        "setting": ["bench/a-large", *SETTING], "rounds": args.rounds, "warmup": args.warmup,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "threads": args.threads,
        "backbones": {name: time_backbone(name, args.rounds, args.warmup) for name in args.backbones},
    }
    write_json(OUT, results)
    for name, row in results[f"threads={args.threads}"]["backbones"].items():
        ms = row["step_ms"]
        print(f"{name}: {ms['default']['median']:.0f} ms default, {ms['channels_last']['median']:.0f} ms "
              f"channels-last, speed-up {row['speedup']['value']:.2f}x")


if __name__ == "__main__":
    main()
