"""The cost benchmark's JSON as markdown tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _spread(stats: Mapping[str, float]) -> str:
    return f"{stats['median']:.1f} [{stats['q25']:.1f}, {stats['q75']:.1f}]"


def _ratio(ratio: Mapping[str, float]) -> str:
    return f"{ratio['value']:.3f} [{ratio['rounds_q25']:.3f}, {ratio['rounds_q75']:.3f}]"


def _met(check: Mapping[str, Any]) -> str:
    return f"{check['rule']} {check['target']:g}: {'yes' if check['met'] else '**no**'}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def format_markdown(result: Mapping[str, Any]) -> str:
    """The JSON of ``run_cost_benchmark`` as markdown tables."""
    info = result["device"]
    met = sum(row["met"] for row in result["checks"])
    lines = [
        f"# Cost benchmark: {info['kind']}, preset `{result['preset']}`", "",
        f"{info.get('gpu', info['cpu'])}; torch {info['torch']}, CPU threads {info['cpu_threads']}"
        f"{', bf16 autocast' if info['autocast'] else ''}; wall time {result['wall_time_s']:.0f} s. "
        f"**{met} of {len(result['checks'])} targets met.**", "",
        f"Timing: {result['timing']}. Times in ms as median [quartiles]; ratios as value [per-round quartiles]. "
        f"Memory: {result['memory_method']}.", "",
    ]
    for name, b in result["backbones"].items():
        spec, inference, training = b["spec"], b["inference"]["networks"], b["training"]
        lines += [f"## {name}: {spec['image_size']} px, batch {spec['batch']}", "",
                  "Inference (eval forward of the batch; exported primary networks against the single-task one):", ""]
        rows = []
        for net, e in inference.items():
            ratios = ("—", "—", "—") if net == "single" else (
                f"{e['params_ratio']:.3f}", f"{e['flops_ratio']:.3f}", _ratio(e["latency_ratio"]))
            checked = ("yes" if all(c["met"] for c in e["checks"].values()) else "**no**") if "checks" in e else "—"
            rows.append([net, f"{e['params']:,}", ratios[0], f"{e['flops_per_image'] / 1e9:.3f}", ratios[1],
                         _spread(e["latency_ms"]), ratios[2], checked])
        lines += _table(["network", "params", "params ×", "GFLOPs/image", "FLOPs ×", "latency ms", "latency ×",
                         "targets met"], rows)
        lines += ["", "Training steps (FLOPs per step of the batch):", ""]
        lines += _table(["step", "ms", "GFLOPs", "params"], [
            [step, _spread(e["ms"]), f"{e['flops'] / 1e9:.2f}",
             f"{training['params'][step.removesuffix('_network').removesuffix('_architecture')]:,}"]
            for step, e in training["steps"].items()])
        r = training["ratios"]
        rows = [["network step / (primary + aux single-task steps)", r["network_step"]],
                ["architecture step / network step", r["architecture_to_network"]],
                *[[f"search iteration ({k}) / (primary + aux single-task steps)", v]
                  for k, v in r["search_iteration"].items()]]
        memory = b["memory"]
        lines += [""] + _table(["ratio", "time", "FLOPs", "target"], [
            *[[what, _ratio(e["time"]), f"{e['flops']:.3f}", _met(e["check"])] for what, e in rows],
            ["peak memory: Aux-NAS iteration / (primary + aux single-task)", f"{memory['ratio']['value']:.3f}", "—",
             _met(memory["ratio"]["check"])],
        ])
        lines += ["", "Peak training memory (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory["peak_mib"].items())]
        if "k_scaling" in b:
            lines += ["", f"Aux-NAS with K auxiliary tasks against {b['k_scaling']['model']}:", ""]
            rows = []
            for k, e in b["k_scaling"]["by_k"].items():
                cells = [k, ", ".join(e["aux_tasks"]) or "(single-task)"]
                for q, fmt in (("network_step_ms", "{:.1f}"), ("params", "{:,.0f}"), ("peak_memory_mib", "{:.0f}")):
                    cells.append(fmt.format(e[q]) + (f" (pred. {fmt.format(e['predicted'][q])}, "
                                                     f"{e['relative_error'][q]:+.1%})" if "predicted" in e else ""))
                rows.append(cells)
            lines += _table(["K", "auxiliary tasks", "network step ms", "params", "peak MiB"], rows)
        if "weighting_overhead" in b:
            w = b["weighting_overhead"]
            lines += ["", f"Weightings' network-step overhead over equal ({', '.join(w['aux_tasks'])} auxiliary; a "
                          "meta-learned one's meta step included):", ""]
            lines += _table(["model", "weighting", "ms", "× equal", "FLOPs ×"], [
                [model, weighting, _spread(e["ms"]), _ratio(e["overhead"]), f"{e['flops_ratio']:.3f}"]
                for model in ("aux_head", "aux_nas") for weighting, e in w[model].items()])
            if w.get("peak_memory_ratio"):  # results written before the meta-learned weightings have none
                lines += ["", "Peak training memory over equal (Aux-Head): " + ", ".join(
                    f"{name} ×{ratio:.2f}" for name, ratio in w["peak_memory_ratio"].items())]
            if w.get("amortised_overhead"):
                lines += ["", "At their default cadence (a meta step every `every` network steps): " + "; ".join(
                    f"{model} + {name} ×{e['value']:.2f} (every {e['every']})"
                    for model, by_name in w["amortised_overhead"].items() for name, e in by_name.items())]
        lines.append("")
    missed = [row for row in result["checks"] if not row["met"]]
    if missed:
        lines += ["## Targets missed", ""]
        lines += [f"- {row['where']}: {row['what']} = {row['value']:.4g} (target {row['rule']} {row['target']:g})"
                  for row in missed]
    return "\n".join(lines) + "\n"
