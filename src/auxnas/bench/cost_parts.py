"""The cost benchmark's measured things: the models, training states and timed calls it builds (random init,
random batches), grouped into the interleaved loops (``Part``) of one backbone, and peak training memory measured
in fresh processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import ExperimentConfig, config_from_dict
from ..engine.runtime import autocast, seed_everything
from ..engine.state import TrainState, build_train_state
from ..engine.steps import architecture_step, iteration, meta_step, network_step
from ..measure import (
    count_flops,
    count_parameters,
    count_step_flops,
    in_fresh_process,
    memory_mark,
    peak_mib_since,
    start_method,
    warm_up_kernels,
)
from ..methods import MultiTaskModel, build_model
from ..tasks import build_tasks
from ..weighting import build_weighting
from .cost_settings import (
    ARCH_PROGRESS,
    AUX_TASKS,
    EXPORTED_METHODS,
    GRADIENT_METHODS,
    LEARNING_RATE,
    META_METHODS,
    NUM_CLASSES,
    PRIMARY,
    BackboneSpec,
    Preset,
)

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
    """``fit``'s network step (``auxnas.engine.steps.network_step``) on ``batch``, after the meta step of a
    meta-learned weighting (its meta batch: ``batch`` again, which costs the same as another)."""
    prepared = state.parallel.batch(batch, state.model.tasks)
    if not state.weighting.needs_meta_batch:
        return lambda: network_step(state, prepared, ARCH_PROGRESS)

    def call() -> object:
        meta_step(state, prepared, prepared)
        return network_step(state, prepared, ARCH_PROGRESS)

    return call


def architecture_call(state: TrainState, batch: dict[str, Tensor]) -> Callable[[], object]:
    """``fit``'s architecture step (``auxnas.engine.steps.architecture_step``) on ``batch``."""
    prepared = state.parallel.batch(batch, state.model.tasks)
    return lambda: architecture_step(state, prepared, ARCH_PROGRESS)


def _eval_forward(net: nn.Module, x: Tensor, device: torch.device, **kwargs: Any) -> Callable[[], object]:
    """An eval-mode forward of ``net`` on ``x`` without gradients (bf16 autocast on CUDA)."""
    net.eval()

    def call() -> object:
        with torch.no_grad(), autocast(device, True):
            return net(x, **kwargs)

    return call


# ---------------------------------------------------------------------------------------------- memory


def peak_memory(spec: BackboneSpec, method: str, primary: str, aux: tuple[str, ...], device: str,
                iterations: int, weighting: str = "equal") -> float:
    """MiB of peak memory that ``iterations`` training iterations of one model add over the batch alone:
    weights, gradients, optimiser state and activations. Meant for a fresh process (``_in_fresh_process``).

    CPU: growth of the peak resident set size; CUDA: ``torch.cuda.max_memory_allocated`` over the memory
    allocated before the model is built.
    """
    target = torch.device(device)
    seed_everything(0)
    batch = random_batch(spec, target)
    warm_up_kernels(target)
    mark = memory_mark(target)
    state = bench_state(bench_config(spec, method, primary, aux, weighting), target)
    prepared = state.parallel.batch(batch, state.model.tasks)
    for _ in range(iterations):
        iteration(state, prepared, ARCH_PROGRESS)
    return peak_mib_since(target, mark)


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


def aux_task_counts(spec: BackboneSpec) -> tuple[int, ...]:
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
                   for k in aux_task_counts(spec)})
    calls = {"single_normal": network_call(states["single_normal"], batch),
             "single_seg": network_call(states["single_seg"], batch),
             "aux_nas_k1_architecture": architecture_call(states["aux_nas_k1"], batch)}
    calls.update({f"aux_nas_k{k}_network": network_call(states[f"aux_nas_k{k}"], batch) for k in aux_task_counts(spec)})
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
    """Item 5: the network step of Aux-Head and Aux-NAS under ``equal``, every gradient method and every
    meta-learned weighting (with its meta step)."""
    aux = weighting_aux_tasks()
    calls, params = {}, {}
    for method in ("aux_head", "aux_nas"):
        model = bench_model(spec, method, device, aux)  # shared by the weightings: weight values do not change costs
        params[method] = count_parameters(model)
        for weighting in ("equal", *GRADIENT_METHODS, *META_METHODS):
            state = bench_state(bench_config(spec, method, aux=aux, weighting=weighting), device, model)
            calls[f"{method}/{weighting}"] = network_call(state, batch)
    return Part(calls, {name: count_step_flops(call) for name, call in calls.items()}, params, spec.weighting_rounds)


def measure_memory(spec: BackboneSpec, preset: Preset, device: torch.device, progress: bool) -> dict[str, float]:
    """Items 3 and 4: peak training memory (MiB) of the single-task models and Aux-NAS with K auxiliary tasks, and
    of Aux-Head under ``equal`` and each meta-learned weighting, each in a fresh process."""
    runs = {"single_normal": ("single", PRIMARY, (), "equal"), "single_seg": ("single", AUX_TASKS[0], (), "equal")}
    runs.update({f"aux_nas_k{k}": ("aux_nas", PRIMARY, AUX_TASKS[:k], "equal") for k in aux_task_counts(spec)})
    if spec.weighting_rounds:
        aux = weighting_aux_tasks()
        runs.update({f"aux_head/{w}": ("aux_head", PRIMARY, aux, w) for w in ("equal", *META_METHODS)})
    bar = tqdm(runs.items(), desc=f"{spec.name} memory", leave=False, disable=not progress)
    return {name: in_fresh_process(peak_memory, spec, method, primary, aux, str(device), preset.memory_iterations,
                                   weighting)
            for name, (method, primary, aux, weighting) in bar}
