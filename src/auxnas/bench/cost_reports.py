"""The cost benchmark's report of one backbone, section by section: the measured costs of each loop, their
ratios, and each target's check (``Checks``)."""

from __future__ import annotations

import inspect
import statistics
from collections.abc import Mapping
from typing import Any

from ..measure import flops_ratio, summarize, time_ratio
from ..weighting import WEIGHTINGS
from .cost_parts import Part, aux_task_counts, weighting_aux_tasks
from .cost_settings import (
    ARCH_EVERY,
    AUX_TASKS,
    EXPORTED_METHODS,
    GRADIENT_METHODS,
    META_METHODS,
    PRIMARY,
    BackboneSpec,
    Checks,
)


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
    steps = {0: "single_normal", **{k: f"aux_nas_k{k}_network" for k in aux_task_counts(spec)}}
    models = {0: "single_normal", **{k: f"aux_nas_k{k}" for k in aux_task_counts(spec)}}
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


def weighting_report(part: Part, samples: dict[str, list[float]], memory: dict[str, float]) -> dict[str, Any]:
    """Item 5: every gradient method's network step, and every meta-learned weighting's meta + network step, against
    ``equal`` on the same model; the meta-learned weightings' peak memory against ``equal``'s (Aux-Head)."""
    out: dict[str, Any] = {
        "aux_tasks": list(weighting_aux_tasks()), "params": part.params, "target": None,
        "note": "network step of each model under each weighting (a meta-learned weighting's: its meta step on a "
                "second batch, then the network step, both every step); overhead: its time over the same model's "
                "under equal (no target stated: reported); amortised_overhead: a meta-learned weighting's at its "
                "default cadence (a meta step every `every` network steps), 1 + (overhead - 1) / every, taking its "
                "network step to cost equal's",
        "peak_memory_ratio": {w: memory[f"aux_head/{w}"] / memory["aux_head/equal"] for w in META_METHODS},
    }
    for method in ("aux_head", "aux_nas"):
        base = {f"{method}/equal": 1.0}
        out[method] = {}
        for weighting in ("equal", *GRADIENT_METHODS, *META_METHODS):
            key = f"{method}/{weighting}"
            out[method][weighting] = {"ms": summarize(samples[key]), "flops": part.flops[key],
                                      "overhead": time_ratio(samples, {key: 1.0}, base),
                                      "flops_ratio": flops_ratio(part.flops, {key: 1.0}, base)}
    out["amortised_overhead"] = {
        method: {w: {"every": default_cadence(w), "value": 1 + (out[method][w]["overhead"]["value"] - 1)
                     / default_cadence(w)} for w in META_METHODS}
        for method in ("aux_head", "aux_nas")}
    return out


def default_cadence(weighting: str) -> int:
    """The network steps per meta step of a meta-learned weighting by default (its ``every`` option)."""
    return inspect.signature(WEIGHTINGS[weighting]).parameters["every"].default
