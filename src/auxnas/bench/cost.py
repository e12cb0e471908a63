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
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import ExperimentConfig, config_from_dict
from ..cost import count_flops, count_parameters
from ..data.synthetic import OBJECT_CLASSES, SCENE_CLASSES, SEG_CLASSES
from ..engine.runtime import autocast, resolve_device, seed_everything
from ..engine.state import TrainState, build_train_state
from ..engine.steps import architecture_step, network_step
from ..io import write_json, write_text
from ..methods import MultiTaskModel, build_model
from ..tasks import build_tasks
from ..weighting import build_weighting
from .cost_markdown import format_markdown
from .processes import in_fresh_process, peak_rss_bytes, start_method, warm_up_kernels
from .timing import count_step_flops, flops_ratio, summarize, time_interleaved, time_ratio

PRIMARY = "normal"
#: auxiliary tasks in the order they are added (K = 1, 2, 3)
AUX_TASKS = ("seg", "depth", "scene")
NUM_CLASSES = {"seg": len(SEG_CLASSES), "object": len(OBJECT_CLASSES), "scene": len(SCENE_CLASSES)}
#: methods whose exported primary network must cost exactly the single-task network
EXPORTED_METHODS = ("aux_nas", "aux_g", "aux_module", "adashare_aux", "aux_head")
GRADIENT_METHODS = ("pcgrad", "pcgrad_aux", "cagrad", "gcs", "gradnorm")
#: one architecture step every k network steps (``method.arch_every``)
ARCH_EVERY = (1, 2, 4)
#: fraction of training at which the architecture steps are taken: the a2p penalty is on
ARCH_PROGRESS = 0.6
#: the weights' values do not change costs; a small rate keeps training on random targets finite
LEARNING_RATE = 1e-4
MIB = 2**20

#: (rule, bound) of every target; "|.|<=" bounds the absolute value
TARGETS = {
    "params_ratio": ("==", 1.0),
    "flops_ratio": ("==", 1.0),
    "latency_ratio": ("<=", 1.02),
    "network_step_ratio": ("<=", 1.15),
    "architecture_to_network_ratio": ("<=", 0.75),
    "search_iteration_ratio": ("<=", 1.75),
    # the issue states no memory target; the network step's bound is ours
    "peak_memory_ratio": ("<=", 1.15),
    "k_scaling_relative_error": ("|.|<=", 0.10),
}


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone's setting: input resolution, batch, timed rounds, and which optional parts run."""

    name: str
    image_size: int
    batch: int
    #: timed rounds of the inference loop
    latency_rounds: int
    #: timed rounds of the training-step loop
    rounds: int
    #: timed rounds of the gradient methods' loop (0: not measured)
    weighting_rounds: int
    #: measure Aux-NAS with K = 1, 2, 3 auxiliary tasks (else K = 1 only)
    k_scaling: bool = True


@dataclass(frozen=True)
class Preset:
    """The backbones of a run, the untimed warm-up rounds of every loop (on top of the FLOP count, which runs
    every call once) and the training iterations in which peak memory is measured (the second one has the
    optimiser state of the first)."""

    backbones: tuple[BackboneSpec, ...]
    warmup: int
    memory_iterations: int = 2


_TINY = Preset((BackboneSpec("tiny_resnet", 32, 2, latency_rounds=2, rounds=2, weighting_rounds=2),), warmup=0)
PRESETS: dict[str, dict[str, Preset]] = {
    "full": {
        "cpu": Preset((
            BackboneSpec("tiny_resnet", 64, 8, latency_rounds=20, rounds=10, weighting_rounds=10),
            BackboneSpec("resnet18", 128, 8, latency_rounds=10, rounds=5, weighting_rounds=3),
            BackboneSpec("vit_tiny", 224, 8, latency_rounds=10, rounds=5, weighting_rounds=0, k_scaling=False),
        ), warmup=1),
        "cuda": Preset(tuple(
            BackboneSpec(name, size, 32, latency_rounds=50, rounds=20, weighting_rounds=20)
            for name, size in (("tiny_resnet", 64), ("resnet18", 224), ("vit_tiny", 224), ("vit_small", 224))
        ), warmup=5),
    },
    "tiny": {"cpu": _TINY, "cuda": _TINY},
}


class Checks:
    """Every target of a run: each check is returned for the place it belongs and listed for the summary."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __call__(self, where: str, what: str, key: str, value: float) -> dict[str, Any]:
        """Check ``value`` against ``TARGETS[key]``; ``where`` and ``what`` name it in the summary."""
        rule, bound = TARGETS[key]
        met = {"==": value == bound, "<=": value <= bound, "|.|<=": abs(value) <= bound}[rule]
        check = {"value": value, "rule": rule, "target": bound, "met": bool(met)}
        self.rows.append({"where": where, "what": what, **check})
        return check


# ---------------------------------------------------------------------------------------------- building


def random_batch(spec: BackboneSpec, device: torch.device, seed: int = 0) -> dict[str, Tensor]:
    """A batch of random images with a target for the primary and every auxiliary task: unit normals,
    positive depth, segmentation and scene classes."""
    g = torch.Generator().manual_seed(seed)
    b, s = spec.batch, spec.image_size
    batch = {
        "image": torch.randn(b, 3, s, s, generator=g),
        "normal": F.normalize(torch.randn(b, 3, s, s, generator=g), dim=1),
        "depth": 0.5 + 9.5 * torch.rand(b, 1, s, s, generator=g),
        "seg": torch.randint(0, NUM_CLASSES["seg"], (b, s, s), generator=g),
        "scene": torch.randint(0, NUM_CLASSES["scene"], (b,), generator=g),
    }
    return {k: v.to(device) for k, v in batch.items()}


def bench_config(
    spec: BackboneSpec, method: str, primary: str = PRIMARY, aux: Sequence[str] = (), weighting: str = "equal"
) -> ExperimentConfig:
    """The validated experiment config of one benchmarked model (random init, the project's defaults)."""
    return config_from_dict({
        "name": f"bench-{spec.name}-{method}", "data": {"image_size": spec.image_size, "batch_size": spec.batch},
        "tasks": {"primary": primary, "aux": list(aux)}, "model": {"backbone": spec.name},
        "method": {"name": method}, "weighting": {"name": weighting}, "train": {"lr": LEARNING_RATE},
    }, source=f"cost benchmark ({spec.name}, {method})")


def bench_model(spec: BackboneSpec, method: str, device: torch.device, aux: Sequence[str] = AUX_TASKS[:1]
                ) -> MultiTaskModel:
    """The train-time model of ``method`` on the primary task and ``aux`` (none for ``single``)."""
    cfg = bench_config(spec, method, aux=() if method == "single" else aux)
    return build_model(cfg, build_tasks(cfg, NUM_CLASSES)).to(device)


def bench_state(cfg: ExperimentConfig, device: torch.device, model: MultiTaskModel | None = None) -> TrainState:
    """The training state of ``cfg``'s model (or ``model``) on ``device``, as ``fit`` builds it, set to
    ``ARCH_PROGRESS`` of training."""
    model = build_model(cfg, build_tasks(cfg, NUM_CLASSES)).to(device) if model is None else model
    model.train().set_progress(ARCH_PROGRESS)
    return build_train_state(cfg, model, device, total_steps=1)


def network_call(state: TrainState, batch: dict[str, Tensor]) -> Callable[[], object]:
    """``fit``'s network step (``auxnas.engine.steps.network_step``) on ``batch``."""
    return lambda: network_step(state, batch, ARCH_PROGRESS)


def architecture_call(state: TrainState, batch: dict[str, Tensor]) -> Callable[[], object]:
    """``fit``'s architecture step (``auxnas.engine.steps.architecture_step``) on ``batch``."""
    return lambda: architecture_step(state, batch, ARCH_PROGRESS)


def iteration(state: TrainState, batch: dict[str, Tensor]) -> None:
    """A training iteration: the architecture step (bilevel search only), then the network step."""
    if state.bilevel:
        architecture_step(state, batch, ARCH_PROGRESS)
    network_step(state, batch, ARCH_PROGRESS)


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _eval_forward(net: nn.Module, x: Tensor, device: torch.device, **kwargs: Any) -> Callable[[], object]:
    """An eval-mode forward of ``net`` on ``x`` without gradients (bf16 autocast on CUDA)."""
    net.eval()

    def call() -> object:
        with torch.no_grad(), autocast(device, True):
            return net(x, **kwargs)

    return call


# ---------------------------------------------------------------------------------------------- memory


def peak_memory(spec: BackboneSpec, method: str, primary: str, aux: tuple[str, ...], device: str,
                iterations: int) -> float:
    """MiB of peak memory that ``iterations`` training iterations of one model add over the batch alone:
    weights, gradients, optimiser state and activations. Meant for a fresh process (``_in_fresh_process``).

    CPU: growth of the peak resident set size; CUDA: ``torch.cuda.max_memory_allocated`` over the memory
    allocated before the model is built.
    """
    target = torch.device(device)
    seed_everything(0)
    batch = random_batch(spec, target)
    warm_up_kernels(target)
    if target.type == "cuda":
        torch.cuda.synchronize(target)
        base = torch.cuda.memory_allocated(target)
        torch.cuda.reset_peak_memory_stats(target)
    else:
        base = peak_rss_bytes()
    state = bench_state(bench_config(spec, method, primary, aux), target)
    for _ in range(iterations):
        iteration(state, batch)
    if target.type == "cuda":
        torch.cuda.synchronize(target)
        return (torch.cuda.max_memory_allocated(target) - base) / MIB
    return (peak_rss_bytes() - base) / MIB


def memory_method(device: torch.device, iterations: int) -> str:
    """How peak memory is measured on ``device``, for the JSON."""
    what = (f"peak growth over {iterations} training iterations (architecture + network step for Aux-NAS, the "
            "network step otherwise) in a fresh process per model, after the batch is created and the kernels "
            "initialised: weights, gradients, optimiser state, activations")
    if device.type == "cuda":
        return f"torch.cuda.max_memory_allocated minus the allocation before the model is built; {what}"
    return f"peak resident set size (getrusage ru_maxrss), {start_method()} child processes; {what}"


# ---------------------------------------------------------------------------------------------- parts


@dataclass
class Part:
    """One interleaved loop of a backbone: the calls it times, the FLOPs of each call, the parameter counts of
    its models, and its number of timed rounds. Built (models, FLOPs) before anything is timed."""

    calls: dict[str, Callable[[], object]]
    flops: dict[str, int]
    params: dict[str, int]
    rounds: int


def _ks(spec: BackboneSpec) -> tuple[int, ...]:
    """The numbers of auxiliary tasks Aux-NAS is measured with."""
    return tuple(range(1, len(AUX_TASKS) + 1)) if spec.k_scaling else (1,)


def inference_part(spec: BackboneSpec, device: torch.device, batch: dict[str, Tensor]) -> Part:
    """Item 1: the single-task network, every method's exported primary network, and the train-time Aux-NAS
    model as the authors' code evaluates it (eval mode, a2p cut, every branch running)."""
    x = batch["image"]
    nets: dict[str, nn.Module] = {"single": bench_model(spec, "single", device).primary_network()}
    nets.update({m: bench_model(spec, m, device).primary_network() for m in EXPORTED_METHODS})
    calls = {name: _eval_forward(net, x, device) for name, net in nets.items()}
    nets["aux_nas_train_time"] = bench_model(spec, "aux_nas", device)
    calls["aux_nas_train_time"] = _eval_forward(nets["aux_nas_train_time"], x, device, cut_a2p=True)
    # count_flops runs eval mode, where Aux-NAS cuts its a2p links by default: the timed forward
    return Part(calls, {name: count_flops(net, x[:1]) for name, net in nets.items()},
                {name: count_parameters(net) for name, net in nets.items()}, spec.latency_rounds)


def training_part(spec: BackboneSpec, device: torch.device, batch: dict[str, Tensor]) -> Part:
    """Items 2, 4 and 6: the primary and auxiliary single-task steps, Aux-NAS's architecture step and its network
    step with K = 1 (2, 3) auxiliary tasks."""
    states = {"single_normal": bench_state(bench_config(spec, "single"), device),
              "single_seg": bench_state(bench_config(spec, "single", primary=AUX_TASKS[0]), device)}
    states.update({f"aux_nas_k{k}": bench_state(bench_config(spec, "aux_nas", aux=AUX_TASKS[:k]), device)
                   for k in _ks(spec)})
    calls = {"single_normal": network_call(states["single_normal"], batch),
             "single_seg": network_call(states["single_seg"], batch),
             "aux_nas_k1_architecture": architecture_call(states["aux_nas_k1"], batch)}
    calls.update({f"aux_nas_k{k}_network": network_call(states[f"aux_nas_k{k}"], batch) for k in _ks(spec)})
    return Part(calls, {name: count_step_flops(call) for name, call in calls.items()},
                {name: count_parameters(state.model) for name, state in states.items()}, spec.rounds)


def weighting_aux_tasks() -> tuple[str, ...]:
    """The fewest auxiliary tasks with which ``build_weighting`` accepts every gradient method."""

    def accepted(method: str, aux: tuple[str, ...]) -> bool:
        try:
            build_weighting(method, [PRIMARY, *aux], PRIMARY)
        except ValueError:
            return False
        return True

    return next(AUX_TASKS[:k] for k in range(1, len(AUX_TASKS) + 1)
                if all(accepted(m, AUX_TASKS[:k]) for m in GRADIENT_METHODS))


def weighting_part(spec: BackboneSpec, device: torch.device, batch: dict[str, Tensor]) -> Part:
    """Item 5: the network step of Aux-Head and Aux-NAS under ``equal`` and every gradient method."""
    aux = weighting_aux_tasks()
    calls, params = {}, {}
    for method in ("aux_head", "aux_nas"):
        model = bench_model(spec, method, device, aux)  # shared by the weightings: weight values do not change costs
        params[method] = count_parameters(model)
        for weighting in ("equal", *GRADIENT_METHODS):
            state = bench_state(bench_config(spec, method, aux=aux, weighting=weighting), device, model)
            calls[f"{method}/{weighting}"] = network_call(state, batch)
    return Part(calls, {name: count_step_flops(call) for name, call in calls.items()}, params, spec.weighting_rounds)


def measure_memory(spec: BackboneSpec, preset: Preset, device: torch.device, progress: bool) -> dict[str, float]:
    """Items 3 and 4: peak training memory (MiB) of the single-task models and Aux-NAS with K auxiliary tasks,
    each in a fresh process."""
    runs = {"single_normal": ("single", PRIMARY, ()), "single_seg": ("single", AUX_TASKS[0], ())}
    runs.update({f"aux_nas_k{k}": ("aux_nas", PRIMARY, AUX_TASKS[:k]) for k in _ks(spec)})
    bar = tqdm(runs.items(), desc=f"{spec.name} memory", leave=False, disable=not progress)
    return {name: in_fresh_process(peak_memory, spec, method, primary, aux, str(device), preset.memory_iterations)
            for name, (method, primary, aux) in bar}


# ---------------------------------------------------------------------------------------------- reports


def inference_report(spec: BackboneSpec, part: Part, samples: dict[str, list[float]], checks: Checks
                     ) -> dict[str, Any]:
    """Costs of every network, their ratios to the single-task network, the exported networks' targets."""
    networks = {}
    for name in part.calls:
        entry: dict[str, Any] = {"params": part.params[name], "flops_per_image": part.flops[name],
                                 "latency_ms": summarize(samples[name])}
        if name != "single":
            entry["params_ratio"] = part.params[name] / part.params["single"]
            entry["flops_ratio"] = part.flops[name] / part.flops["single"]
            entry["latency_ratio"] = time_ratio(samples, {name: 1.0}, {"single": 1.0})
        if name in EXPORTED_METHODS:
            values = {"params_ratio": entry["params_ratio"], "flops_ratio": entry["flops_ratio"],
                      "latency_ratio": entry["latency_ratio"]["value"]}
            entry["checks"] = {key: checks(spec.name, f"exported {name} / single-task {key.replace('_', ' ')}", key,
                                           value) for key, value in values.items()}
        networks[name] = entry
    return {"networks": networks,
            "note": "FLOPs per image; latency of one eval forward of the batch. aux_nas_train_time: the train-time "
                    "Aux-NAS model in eval mode, a2p cut, every branch running (the authors' evaluation), the cost "
                    "the export removes"}


def training_report(spec: BackboneSpec, part: Part, samples: dict[str, list[float]], memory: dict[str, float],
                    checks: Checks) -> dict[str, Any]:
    """The steps, Aux-NAS's step ratios (items 2 and 6) and its peak memory ratio (item 3)."""
    singles = {"single_normal": 1.0, "single_seg": 1.0}
    arch, net = "aux_nas_k1_architecture", "aux_nas_k1_network"

    def ratio(num: dict[str, float], den: dict[str, float], key: str, what: str) -> dict[str, Any]:
        entry = {"time": time_ratio(samples, num, den), "flops": flops_ratio(part.flops, num, den)}
        return {**entry, "check": checks(spec.name, what, key, entry["time"]["value"])}

    memory_ratio = memory["aux_nas_k1"] / (memory["single_normal"] + memory["single_seg"])
    return {
        "training": {
            "steps": {name: {"ms": summarize(samples[name]), "flops": part.flops[name]} for name in part.calls},
            "params": part.params,
            "ratios": {
                "network_step": ratio({net: 1.0}, singles, "network_step_ratio",
                                      "Aux-NAS network step / (primary + auxiliary single-task steps)"),
                "architecture_to_network": ratio({arch: 1.0}, {net: 1.0}, "architecture_to_network_ratio",
                                                 "Aux-NAS architecture step / network step"),
                "search_iteration": {f"arch_every={k}": ratio(
                    {arch: 1.0 / k, net: 1.0}, singles, "search_iteration_ratio",
                    f"Aux-NAS search iteration (arch_every={k}) / (primary + auxiliary single-task steps)",
                ) for k in ARCH_EVERY},
            },
            "note": "a single-task step: forward, backward and optimiser step of `single` on that task (primary "
                    f"{PRIMARY}, auxiliary {AUX_TASKS[0]}); FLOPs per step (the whole batch); search iteration: "
                    "architecture step / arch_every + network step",
        },
        "memory": {
            "peak_mib": memory,
            "ratio": {"value": memory_ratio, "check": checks(
                spec.name, "Aux-NAS iteration / (primary + auxiliary single-task steps) peak memory",
                "peak_memory_ratio", memory_ratio)},
        },
    }


def _linear_in_k(values: Mapping[int, float], k: int) -> float:
    """``cost(1) + (k - 1) (cost(1) - cost(0))``."""
    return values[1] + (k - 1) * (values[1] - values[0])


def k_scaling_report(spec: BackboneSpec, part: Part, samples: dict[str, list[float]], memory: dict[str, float],
                     checks: Checks) -> dict[str, Any]:
    """Item 4: Aux-NAS's network step time (and FLOPs), parameters and peak memory against the linear model."""
    steps = {0: "single_normal", **{k: f"aux_nas_k{k}_network" for k in _ks(spec)}}
    models = {0: "single_normal", **{k: f"aux_nas_k{k}" for k in _ks(spec)}}
    measured = {k: {"network_step_ms": statistics.median(samples[steps[k]]),
                    "network_step_flops": part.flops[steps[k]], "params": part.params[models[k]],
                    "peak_memory_mib": memory[models[k]]} for k in steps}
    by_k: dict[str, Any] = {}
    for k, values in measured.items():
        entry: dict[str, Any] = {"aux_tasks": list(AUX_TASKS[:k]), **values}
        if k >= 2:
            predicted = {q: _linear_in_k({j: measured[j][q] for j in (0, 1)}, k) for q in values}
            error = {q: values[q] / predicted[q] - 1.0 for q in values}
            entry.update(predicted=predicted, relative_error=error, checks={
                q: checks(spec.name, f"Aux-NAS K={k} {q.replace('_', ' ')} / linear prediction - 1",
                          "k_scaling_relative_error", error[q])
                for q in ("network_step_ms", "params", "peak_memory_mib")})
        by_k[str(k)] = entry
    return {"model": "cost(K) = cost(1) + (K - 1) (cost(1) - cost(0)), K = 0 being the single-task primary network "
                     "(its step, parameters, memory); the network step's median of the training-step loop",
            "by_k": by_k}


def weighting_report(part: Part, samples: dict[str, list[float]]) -> dict[str, Any]:
    """Item 5: every gradient method's network step against ``equal`` on the same model."""
    out: dict[str, Any] = {
        "aux_tasks": list(weighting_aux_tasks()), "params": part.params, "target": None,
        "note": "network step of each model under each weighting; overhead: its time over the same model's under "
                "equal (no target stated: reported)",
    }
    for method in ("aux_head", "aux_nas"):
        base = {f"{method}/equal": 1.0}
        out[method] = {}
        for weighting in ("equal", *GRADIENT_METHODS):
            key = f"{method}/{weighting}"
            out[method][weighting] = {"ms": summarize(samples[key]), "flops": part.flops[key],
                                      "overhead": time_ratio(samples, {key: 1.0}, base),
                                      "flops_ratio": flops_ratio(part.flops, {key: 1.0}, base)}
    return out


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
        section["weighting_overhead"] = weighting_report(parts["weighting"], samples["weighting"])
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
    if target.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected cpu or cuda[:N], got {device!r}")
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
                       f"network x{ratios['architecture_to_network']['time']['value']:.2f}, search iteration x"
                       f"{ratios['search_iteration']['arch_every=1']['time']['value']:.2f} "
                       f"({time.perf_counter() - start:.0f} s)")
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
