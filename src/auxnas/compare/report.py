"""What a comparison says: a verdict per row, a recommendation that follows from the table and only from it, what
the exported networks cost, and ``compare.md``. Directions are the metric's own: *better* is higher for mIoU, lower
for an error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .records import mixed_runs_text
from .rows import CEILING, RANDOM_AUX
from .table import stalled_text


def row_kind(row: str) -> str:
    """``single``, ``ceiling``, ``control`` (a noise control) or ``method``."""
    if row == "single":
        return "single"
    if row == CEILING:
        return "ceiling"
    return "control" if row.endswith(RANDOM_AUX) else "method"


def decimals(summary: dict[str, Any]) -> int:
    """Decimals that show single-task's mean of the main metric with three significant digits (mIoU 13.8: 1;
    an error of 0.84 m: 3): every number of the metric is shown with them."""
    single = summary["table"].get("single", {}).get("best", {}).get(summary["info"]["main_metric"], {})
    mean = single.get("mean")
    if not mean:
        return 3
    return min(6, max(0, 2 - math.floor(math.log10(abs(mean)))))


def _interval(d: dict[str, Any], places: int) -> str:
    """A difference and its interval: ``+1.3 [+0.7, +1.9]``."""
    return f"{d['mean_diff']:+.{places}f} [{d['low']:+.{places}f}, {d['high']:+.{places}f}]"


def _better(d: dict[str, Any], higher_is_better: bool) -> bool:
    """Whether a paired interval ``values - baseline`` lies on the metric's better side of 0."""
    return d["low"] > 0 if higher_is_better else d["high"] < 0


def verdicts(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per row but single-task: its outcome on the main metric of the selected checkpoint (better / worse / no
    difference, from the paired interval) and a one-line sentence saying so."""
    info, table = summary["info"], summary["table"]
    main, places = info["main_metric"], decimals(summary)
    out = {}
    for row, entry in table.items():
        if row == "single":
            continue
        diff = entry["best"][main]["vs_single"]
        outcome = diff["outcome"]
        if outcome == "no difference":
            text = f"{row}: not distinguishable from single-task at this budget ({main} {_interval(diff, places)})"
        else:
            text = f"{row}: {outcome} than single-task ({main} {_interval(diff, places)})"
        out[row] = {"kind": row_kind(row), "outcome": outcome, "mean_diff": diff["mean_diff"], "low": diff["low"],
                    "high": diff["high"], "text": text}
    return out


def _resolution(summary: dict[str, Any], methods: list[str]) -> str | None:
    """When no method differs from single-task: the smallest difference the comparison could have told apart (the
    narrowest interval's half-width), and whether even the ceiling was out of its reach; else None."""
    judged = {row: v for row, v in summary["verdicts"].items() if row in methods}
    if not judged or any(v["outcome"] != "no difference" for v in judged.values()):
        return None
    info = summary["info"]
    narrowest = min((v["high"] - v["low"]) / 2 for v in judged.values())
    text = (f"With {len(info['seeds'])} seeds and {info['network_updates']} updates per run, only differences larger "
            f"than about ±{narrowest:.3g} {info['main_metric']} could be told apart (the narrowest interval's "
            "half-width): a smaller effect is not excluded; more seeds (--seeds) or a larger budget (--budget) "
            "narrow the intervals.")
    ceiling = summary["verdicts"].get(CEILING)
    if ceiling is not None and ceiling["outcome"] == "no difference":
        text += (" The ceiling is not distinguishable from the floor either: at this budget the comparison cannot "
                 "see even what labelling every image is worth, too small for any verdict.")
    return text


def recommendation(summary: dict[str, Any]) -> str:
    """Plain sentences that follow from the table: which methods are better, worse or not distinguishable, what the
    noise controls and the ceiling say, whether the budget could tell, and what to use."""
    info, table, costs = summary["info"], summary["table"], summary["costs"]
    main, higher = info["main_metric"], info["higher_is_better"][info["main_metric"]]
    found, places = summary["verdicts"], decimals(summary)
    methods = [row for row in table if row_kind(row) == "method"]
    sentences = []
    for row in methods:
        v = found[row]
        sentence = v["text"] + "."
        control = table[row].get("vs_control")
        if control is not None:
            if _better(control, higher):
                sentence += (f" It is better than its random-auxiliary control ({_interval(control, places)}): the "
                             "gain comes from the auxiliary labels, not from the extra updates.")
            elif v["outcome"] == "better":
                sentence += (" It is not distinguishable from its random-auxiliary control "
                             f"({_interval(control, places)}): the gain cannot be told apart from what random "
                             "auxiliary targets give.")
        sentences.append(sentence)
    for row in table:
        if row_kind(row) == "control" and found[row]["outcome"] != "no difference":
            sentences.append(f"{found[row]['text']}: random auxiliary targets alone change the primary.")
    if CEILING in table:
        gap = table[CEILING]["best"][main]["vs_single"]
        outcome = "not distinguishable from" if gap["outcome"] == "no difference" else f"{gap['outcome']} than"
        sentences.append(
            f"Giving single-task the {100 * info['holdout']:.0f} % of primary labels held out (the ceiling) is "
            f"{outcome} training on the {info['train_labels'][info['primary']]} kept (the floor): {main} "
            f"{_interval(gap, places)}.")
        for row in methods:
            share = table[row].get("share", {}).get("best")
            if share and share["bounded"]:
                sentences.append(f"{row} closes {100 * share['share']:.0f} % [{100 * share['low']:.0f}, "
                                 f"{100 * share['high']:.0f}] of that gap.")
    resolution = _resolution(summary, methods)
    if resolution:
        sentences.append(resolution)
    if stalled_text(table):
        sentences.append("Some runs stopped learning the primary (below the table): before trusting any of this, "
                         "train again at a lower train.lr.")
    better = [row for row in methods if found[row]["outcome"] == "better"]
    best = max(better, key=lambda r: found[r]["mean_diff"] * (1 if higher else -1), default=None)
    if best is None:
        sentences.append("Recommendation: keep single-task; no method is better than it beyond the seed spread at "
                         "this budget.")
    else:
        cost = costs.get(best, {}).get("export", {})
        same = cost.get("exported") and cost["params_ratio"] == 1 and cost["flops_ratio"] == 1
        sentences.append(f"Recommendation: {best}, the largest gain beyond the seed spread"
                         + ("; its exported primary network costs exactly what single-task's does." if same else
                            "; check its export cost in the table."))
    return " ".join(sentences)


def _export_sentence(row: str, export: dict[str, Any]) -> str:
    """What the exported network of ``row`` costs where it is not exactly single-task's, and why."""
    cost = (f"{export['params']:,} parameters (× {export['params_ratio']:.3f} single-task's), {export['flops']:,} "
            f"FLOPs per image (× {export['flops_ratio']:.3f})")
    if export["kept_norm_cells"]:
        return (f"{row}'s exported network keeps a BatchNorm + ReLU after {export['kept_norm_cells']} fused cells "
                f"(method.fusion_norm=bn_relu), {export['kept_norm_ops']:,} elementwise operations per image more: "
                f"{cost}.")
    if export["skipped_cells"]:
        return f"{row}'s exported network skips {export['skipped_cells']} of single-task's cells (AdaShare): {cost}."
    return f"{row}'s exported network costs {cost}."


def deployed_cost(summary: dict[str, Any]) -> str:
    """Sentences on what each row's exported primary network costs at inference, from its verified export: which
    rows cost exactly what single-task costs (parameters and FLOPs per image), which do not and why (norms kept
    after fused cells, cells AdaShare skips), which could not be exported, and the latency measured side by side."""
    costs = summary["costs"]
    single = costs["single"]["export"]
    if not single["exported"]:
        return f"Single-task's network could not be exported ({single['reason']}): no deployed cost to compare with."
    others = {row: cost["export"] for row, cost in costs.items() if row != "single"}
    same = [row for row, e in others.items() if e["exported"] and e["params_ratio"] == e["flops_ratio"] == 1]
    counts = f"{single['params']:,} parameters, {single['flops']:,} FLOPs per image"
    if len(same) == len(others):
        sentences = [f"The exported network of every row costs exactly what single-task costs: {counts}."]
    elif same:
        sentences = [f"The exported networks of {', '.join(same)} cost exactly what single-task costs: {counts}."]
    else:
        sentences = [f"Single-task's exported network costs {counts}."]
    for row, export in others.items():
        if not export["exported"]:
            sentences.append(f"{row} could not be exported ({export['reason']}): its deployed cost is unknown.")
        elif row not in same:
            sentences.append(_export_sentence(row, export))
    timed = {row: cost["inference"] for row, cost in costs.items() if cost["inference"]}
    if timed:  # single-task's export is timed whenever any is
        ms = timed["single"]["ms_per_image"]
        text = f"Measured side by side, single-task's exported network infers in {ms:.3g} ms per image"
        ratios = [f"{row} × {timed[row]['vs_single']['value']:.2f}" for row in timed if row != "single"]
        if ratios:
            text += f"; relative to it: {', '.join(ratios)}"
        sentences.append(text + " (Inference (exported) in the table; the Training columns are per update, not "
                                "inference).")
    return " ".join(sentences)


def _f(value: float | None, fmt: str = ".3g") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def format_markdown(summary: dict[str, Any]) -> str:
    """``compare.md``: what was compared, the table, the recommendation and how each number was made."""
    info, table, costs = summary["info"], summary["table"], summary["costs"]
    main, places = info["main_metric"], decimals(summary)
    labels = ", ".join(f"{t} {n}" for t, n in info["train_labels"].items())
    lines = [
        f"# {info['data']}: will `{', '.join(info['aux'])}` help `{info['primary']}`?",
        "",
        f"Config `{info['config']}`. {info['train_images']} training images (with a label: {labels}), "
        f"{info['val_images']} validation images (checkpoint selection), {info['test_images']} test images; "
        f"{info['network_updates']} network updates for every row; seeds {info['seeds']}. Overrides: "
        f"`{' '.join(info['overrides']) or 'none'}`"
        + (f"; {100 * info['holdout']:.0f} % of the primary labels held out of training." if info["holdout"] else "."),
        *(["", f"**{info['validation_warning']}**"] if info["validation_warning"] else []),
        "",
        "| Row | " + main + " (mean ± std) | Δ vs single [95 %] | Verdict | Δm % [95 %] | Gap closed | vs own control "
        "| Export params, FLOPs (× single) | Inference (exported): ms / image (× single) "
        "| Training (per update): ms | Training: peak MiB | Training: s / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, entry in table.items():
        cell, dm = entry["best"][main], entry["delta_m"]["best"]
        diff = "—" if cell["vs_single"] is None else _interval(cell["vs_single"], places)
        verdict = "baseline" if row == "single" else cell["vs_single"]["outcome"]
        delta = "—" if dm["vs_single"] is None else f"{dm['mean']:+.2f} [{dm['vs_single']['low']:+.2f}, " \
                                                     f"{dm['vs_single']['high']:+.2f}]"
        share = entry.get("share", {}).get("best")
        gap = "—" if not share else (f"{100 * share['share']:.0f} % [{100 * share['low']:.0f}, "
                                     f"{100 * share['high']:.0f}]" if share["bounded"] else
                                     f"{100 * share['share']:.0f} % [unbounded]")
        control = "—" if "vs_control" not in entry else _interval(entry["vs_control"], places)
        export, inference, training = costs[row]["export"], costs[row]["inference"], costs[row]["training"]
        cost = (f"{export['params_ratio']:.3f}, {export['flops_ratio']:.3f}" if export["exported"] else
                "not exported")
        latency = "—" if inference is None else \
            f"{inference['ms_per_image']:.3g} (× {inference['vs_single']['value']:.2f})"
        lines.append(f"| {row} | {cell['mean']:.{places}f} ± {cell['std']:.{places}f} | {diff} | {verdict} | "
                     f"{delta} | {gap} | {control} | {cost} | {latency} | {_f(training['iteration_ms'], '.1f')} | "
                     f"{_f(training['peak_memory_mib'], '.0f')} | {entry['wall_time_s']:.0f} |")
    if text := stalled_text(table):
        lines += ["", text]
    first = next(iter(costs.values()))["training"]["how"]
    inferred = costs["single"]["inference"]
    lines += [
        "",
        f"![Δ {main} of every row against single-task with its 95 % interval"
        + ("; each row's share of the floor-to-ceiling gap" if info["ceiling"] else "")
        + f"]({Path(summary['figure_file']).name})",
        "",
        "## What this says",
        "",
        summary["recommendation"],
        "",
        "## How the numbers were made",
        "",
        f"Metrics are the primary's test metrics of the checkpoint selected on the validation split; Δ is the mean "
        f"difference to single-task with its 95 % t interval paired by seed, *better* / *worse* only when it excludes "
        f"0 ({'higher' if info['higher_is_better'][main] else 'lower'} {main} is better). Δm: the mean relative "
        f"change over {', '.join(info['delta_metrics_used'])} (positive = better). *Gap closed*: the share of the "
        "floor (single-task on the labels kept) to ceiling (every primary label) gap, with its Fieller interval. "
        "*vs own control*: the row minus the same method with random auxiliary targets. Export: seed "
        f"{info['seeds'][0]}'s primary network, verified equal to the trained model with a2p cut. Inference "
        f"(exported): {inferred['how'] if inferred else 'not measured (single-task was not exported)'}. Training "
        f"(per update): {first}. s / run: wall time of a run, evaluation included.",
        "",
        f"{len(summary['runs'])} runs ({summary['reused_runs']} reused), {summary['run_time_s']:.0f} s of training; "
        f"the whole comparison took {summary['wall_time_s']:.0f} s."
        + mixed_runs_text(info["overrides"], summary["runs"]),
    ]
    return "\n".join(lines) + "\n"
