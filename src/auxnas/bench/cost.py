"""The cost benchmark: what auxiliary learning costs at inference (after export) and in training.

The claim under test is "auxiliary labels at exactly single-task inference cost". For each backbone,
side by side in one run, on random-init models and random batches (costs do not depend on the
values), it measures:

1. the exported primary network of every auxiliary method against the single-task network
   (parameters, FLOPs, eval-forward latency), and the train-time Aux-NAS model evaluated as the
   authors' code does (a2p cut, every branch running), to show what the export saves;
2. Aux-NAS's architecture and network steps against a primary plus an auxiliary single-task step;
3. the peak memory of an Aux-NAS training iteration against the two single-task steps;
4. Aux-NAS with K = 1, 2, 3 auxiliary tasks against a linear model in K;
5. the per-step overhead of the gradient methods over ``equal`` (Aux-Head and Aux-NAS);
6. the search iteration (architecture + network step) for one architecture step every k steps.

Times come from ``time_interleaved`` (every timed thing once per round, rounds repeated); medians
and spreads are reported, ratios are ratios of medians of one loop, and each time ratio has its
FLOP ratio beside it, which the machine's load cannot change. Every target is stored with its
value and whether it is met.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..engine.runtime import resolve_device, seed_everything
from ..measure import start_method, time_interleaved
from ..storage import write_json, write_text
from .cost_markdown import format_markdown
from .cost_parts import inference_part, measure_memory, memory_method, random_batch, training_part, weighting_part
from .cost_reports import inference_report, k_scaling_report, training_report, weighting_report
from .cost_settings import (
    ARCH_EVERY,
    ARCH_PROGRESS,
    AUX_TASKS,
    LEARNING_RATE,
    PRESETS,
    PRIMARY,
    TARGETS,
    BackboneSpec,
    Checks,
    Preset,
)


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def bench_backbone(spec: BackboneSpec, preset: Preset, device: torch.device, checks: Checks, progress: bool
                   ) -> dict[str, Any]:
    """Every measurement of one backbone: build everything and count FLOPs, measure memory in fresh processes,
    then run the interleaved loops one after the other (nothing else running)."""
    seed_everything(0)
    batch = random_batch(spec, device)
    parts = {"inference": inference_part(spec, device, batch), "training": training_part(spec, device, batch)}
    if spec.weighting_rounds:
        parts["weighting"] = weighting_part(spec, device, batch)
    memory = measure_memory(spec, preset, device, progress)
    samples = {name: time_interleaved(part.calls, part.rounds, preset.warmup, _sync(device), f"{spec.name} {name}",
                                      progress) for name, part in parts.items()}
    section = {"spec": asdict(spec), "primary": PRIMARY, "aux": list(AUX_TASKS[:1]),
               "inference": inference_report(spec, parts["inference"], samples["inference"], checks),
               **training_report(spec, parts["training"], samples["training"], memory, checks)}
    if spec.k_scaling:
        section["k_scaling"] = k_scaling_report(spec, parts["training"], samples["training"], memory, checks)
    if spec.weighting_rounds:
        section["weighting_overhead"] = weighting_report(parts["weighting"], samples["weighting"], memory)
    return section


# ---------------------------------------------------------------------------------------------- the run


def _cpu_name() -> str:
    """The CPU model (Linux: from /proc/cpuinfo), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "kind": device.type, "torch": torch.__version__, "platform": platform.platform(), "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(), "cpu_threads": torch.get_num_threads(),
        "autocast": "bfloat16" if device.type == "cuda" else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_cost_benchmark(
    preset: str = "full", out_dir: str | Path = "benchmarks/results", device: str = "cpu", progress: bool = True,
) -> dict[str, Any]:
    """Run the cost benchmark; write ``cost-<device kind>.json`` and ``cost-<device kind>.md`` into ``out_dir``
    and return the JSON's content.

    ``preset``: ``full`` (the reported figures; about 10 minutes on 2 CPU cores) or ``tiny`` (seconds, a smoke
    test). ``device``: ``cpu``, ``cuda[:N]`` (bf16 autocast, batch 32) or ``auto``. Peak memory is measured in
    child processes, which import the caller's main module: from a script, call this under
    ``if __name__ == "__main__":``.
    """
    start = time.perf_counter()
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
    target = resolve_device(device)
    if target.type == "cpu" and sys.platform == "win32":
        raise RuntimeError("the CPU cost benchmark measures peak memory with getrusage, which Windows lacks")
    chosen = PRESETS[preset][target.type]
    if start_method() == "forkserver":  # start the server now: its imports overlap the first models' building
        multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
        forkserver.ensure_running()
    checks = Checks()
    backbones: dict[str, Any] = {}
    for spec in chosen.backbones:
        backbones[spec.name] = section = bench_backbone(spec, chosen, target, checks, progress)
        if progress:
            ratios = section["training"]["ratios"]
            tqdm.write(f"{spec.name}: network step x{ratios['network_step']['time']['value']:.2f}, architecture/"
                       f"network x{ratios['architecture_to_network']['time']['value']:.2f}, search iteration "
                       + ", ".join(f"x{v['time']['value']:.2f} ({k})" for k, v in ratios["search_iteration"].items())
                       + f" ({time.perf_counter() - start:.0f} s)")
    result = {
        "benchmark": "cost", "preset": preset, "device": device_info(target),
        "settings": {
            "primary": PRIMARY, "aux_tasks": list(AUX_TASKS), "arch_every": list(ARCH_EVERY),
            "arch_progress": ARCH_PROGRESS, "learning_rate": LEARNING_RATE, "warmup_rounds": chosen.warmup,
            "memory_iterations": chosen.memory_iterations,
            "models": "random init (no pretrained weights), the project's default method settings",
            "inputs": "random batches: images, unit normals, positive depth, segmentation and scene classes",
        },
        "timing": "interleaved: every timed thing once per round (rotating start), after untimed warm-up rounds; "
                  "medians with quartiles and extremes; a ratio is of medians of one loop, with the quartiles of the "
                  "same ratio per round (rounds_q25, rounds_q75) and the FLOP ratio beside it"
                  + ("; CUDA: synchronised before and after every call" if target.type == "cuda" else ""),
        "memory_method": memory_method(target, chosen.memory_iterations),
        "targets": {key: {"rule": rule, "target": bound} for key, (rule, bound) in TARGETS.items()},
        "backbones": backbones,
        "checks": checks.rows,
        "all_met": all(row["met"] for row in checks.rows),
        "wall_time_s": time.perf_counter() - start,
    }
    out = Path(out_dir)
    write_json(out / f"cost-{target.type}.json", result)
    write_text(out / f"cost-{target.type}.md", format_markdown(result))
    return result
