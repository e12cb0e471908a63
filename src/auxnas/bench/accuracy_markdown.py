"""The accuracy benchmark's summary as markdown: the positive controls first, then a table per setting."""

from __future__ import annotations

from typing import Any

from ..compare.records import mixed_runs_text
from ..compare.table import stalled_text
from .presets import CEILING, CONTROL_ROW, CONTROLS


def _share_text(share: dict[str, Any]) -> str:
    """``+35 % [+12 %, +58 %]``; an unbounded interval says so."""
    if share["share"] != share["share"]:  # NaN: no gap at all
        return "undefined (no gap)"
    interval = (f"[{100 * share['low']:+.0f} %, {100 * share['high']:+.0f} %]" if share["bounded"]
                else "[unbounded: no significant gap]")
    return f"{100 * share['share']:+.0f} % {interval}"


def _interval_text(cell: dict[str, Any]) -> str:
    d = cell["vs_single"]
    if d is None:
        return "—"
    mark = {"better": " **better**", "worse": " **worse**", "no difference": ""}[d["outcome"]]
    return f"{d['mean_diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]{mark}"


def _strength(value: float) -> str:
    """A link strength: two decimals, or the exponent when it is pruned towards 0."""
    return f"{value:.2f}" if value >= 0.01 else f"{value:.0e}"


def _setting_markdown(info: dict[str, Any], table: dict[str, Any]) -> list[str]:
    main = info["main_metric"]
    weights = ", ".join(f"{t} {w:g}" for t, w in sorted(info["loss_weights"].items(),
                                                         key=lambda item: item[0] != info["primary"]))
    losses = ", ".join(f"{t} {v:.3f}" for t, v in info["final_train_losses"].items())
    labels = (f"{info['primary_labels']} of them with a {info['primary']} label"
              if info["primary_labels"] != info["train_images"] else "all labelled")
    if info["ceiling"]:
        labels += f"; `{CEILING}` has every label"
    share = info["ceiling"] and any("share" in entry for entry in table.values())
    lines = [
        f"### {info['name']}: {info['description']} ({info['train_images']} training images)",
        "",
        f"Primary `{info['primary']}` (selection and Δ on `{main}`), auxiliary `{info['aux']}`; loss weights "
        f"{weights}; {info['train_images']} training images ({labels}), {info['val_images']} validation images "
        f"(selection), {info['test_images']} test images; {info['epochs']} epochs of batch {info['batch_size']} = "
        f"{info['network_updates']} network updates for every row"
        + (f" (bilevel rows: {info['bilevel_epochs']} epochs of half the images)" if info["bilevel_epochs"] else "")
        + f". Δm over {', '.join(info['delta_metrics_used'])}. Final-epoch training losses "
        f"(unweighted, mean over runs on real targets): {losses}.",
        "",
        f"| row | {main} selected | Δ selected [95 % CI] | " + ("share of gap selected [95 % CI] | " if share else "")
        + f"{main} last | Δ last [95 % CI] | Δm selected [95 % CI] | Δm last [95 % CI] | sel. epoch | a2p max "
        "| s/run |",
        "|---|---|---|" + ("---|" if share else "") + "---|---|---|---|---|---|---|",
    ]
    for row, entry in table.items():
        best, last = entry["best"][main], entry["last"][main]
        a2p = "—" if entry["a2p_max"] is None else f"{entry['a2p_max']:.1e}"
        cells = [
            row, f"{best['mean']:.2f} ± {best['std']:.2f}", _interval_text(best),
            *([_share_text(entry["share"]["best"]) if "share" in entry else "—"] if share else []),
            f"{last['mean']:.2f} ± {last['std']:.2f}", _interval_text(last),
            _interval_text(entry["delta_m"]["best"]), _interval_text(entry["delta_m"]["last"]),
            f"{entry['best_epoch']:.1f}/{entry['epochs']}", a2p, f"{entry['wall_time_s']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if text := stalled_text(table):
        lines += ["", text]
    linked = {row: entry["link_strengths"] for row, entry in table.items() if entry.get("link_strengths")}
    if linked:
        lines += ["", "Link strengths at the end of training, per position from the input side (mean over seeds; "
                      "a2p links are cut at evaluation):", ""]
        lines += [f"- {row}: " + "; ".join(f"{key} " + " / ".join(_strength(v) for v in values)
                                          for key, values in links.items()) for row, links in linked.items()]
    for row, entry in table.items():
        if "vs_baseline" in entry:
            d = entry["vs_baseline"]
            lines += ["", f"{row} against its fair baseline {d['row']} (as many updates of the primary branch), "
                          f"{d['metric']} selected: {d['mean_diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}], "
                          f"{d['outcome']}."]
    return lines


def controls_markdown(controls: dict[str, Any], settings: dict[str, dict[str, Any]]) -> list[str]:
    """The report's first section: can this benchmark, at this budget, see a gain where one must exist?"""
    lines = [
        "## Can this benchmark see a gain?",
        "",
        f"Positive controls ({', '.join(f'`{c}`' for c in CONTROLS)}): the auxiliary label carries what the primary "
        "lacks (disparity is exactly 1 / depth; layout is seg in 4 coarse classes), on every training image, while "
        f"the primary keeps 10 % of its labels. Floor: `single` on those labels; ceiling: `{CEILING}` (every "
        "label, the same batches). A row's share of the gap is the mean over seeds of (row − floor) over the mean "
        "of (ceiling − floor), on the selected checkpoint's main metric, with its 95 % Fieller interval (paired by "
        f"seed). A control passes when `{CONTROL_ROW}`'s share interval is bounded and above 0.",
        "",
    ]
    results = controls["settings"]
    if not results:
        return lines + [
            "**No positive control ran** (settings: " + ", ".join(settings) + "): nothing here shows that the "
            "benchmark could see a gain at this budget, so a \"no difference\" below is no evidence of no effect. "
            "Run the `controls` preset with the same overrides first.", "",
        ]
    rows = list(dict.fromkeys(row for c in results.values() for row in c["shares"]))
    lines += [
        "| control | main metric | floor | ceiling | gap [95 % CI] | " + " | ".join(f"{r} share" for r in rows)
        + " | result |",
        "|---|---|---|---|---|" + "---|" * len(rows) + "---|",
    ]
    for name, c in results.items():
        shares = [_share_text(c["shares"][r]) if r in c["shares"] else "—" for r in rows]
        result = {True: "**PASSED**", False: "**NOT PASSED**", None: "not judged"}[c["passed"]]
        floor, top = c["floor"], c["ceiling"]
        lines.append(f"| {name} | {c['main_metric']} | {floor['mean']:.2f} ± {floor['std']:.2f} | {top['mean']:.2f} "
                     f"± {top['std']:.2f} | {_interval_text({'vs_single': c['gap']})} | " + " | ".join(shares)
                     + f" | {result}: {c['reason']} |")
    lines.append("")
    if controls["passed"]:
        lines.append("**The positive controls passed**: at this budget the benchmark sees a gain where one must "
                     "exist, so its verdicts on the other settings count, \"no difference\" included.")
    else:
        failed = [name for name, c in results.items() if not c["passed"]]
        lines.append(f"**The positive controls did not pass** ({', '.join(failed)}): at this budget the benchmark "
                     "is not shown to see a gain even where one must exist, so its verdicts on the other settings do "
                     "not count (a \"no difference\" is no evidence of no effect); they count only once the controls "
                     "pass (raise the budget, e.g. `--set train.epochs=N --tag NAME`).")
    return lines + [""]


def format_markdown(summary: dict[str, Any]) -> str:
    """The report: whether the positive controls passed, overview of the main metric's differences, then one
    table per setting."""
    settings, tables = summary["settings"], summary["table"]
    rows = [r["label"] for r in summary["rows"]]
    verdicts = {"better": [], "worse": []}
    for name, table in tables.items():
        main = settings[name]["main_metric"]
        for row, entry in table.items():
            d = entry["best"][main]["vs_single"]
            if row != CEILING and d is not None and d["outcome"] in verdicts:
                verdicts[d["outcome"]].append(f"{row} on {name} ({d['mean_diff']:+.2f})")
    lines = [
        f"# Accuracy benchmark (`{summary['preset']}` preset"
        + (f", variant `{summary['tag']}`: {' '.join(summary['overrides'])})" if summary["tag"] else ")"),
        "",
        *controls_markdown(summary["controls"], settings),
        "## What was measured",
        "",
        "Claim under test: auxiliary labels buy primary accuracy at single-task inference cost. Every number is a "
        "primary-task test metric of the deployed primary network (a2p links cut), mean ± std over seeds "
        f"{summary['seeds']}; Δ is the difference to single-task with its 95 % t interval paired by seed "
        "(**better** / **worse** only when the interval excludes 0). *Selected*: the checkpoint with the best "
        "primary main metric on the validation split (never the test split); *last*: the final one. Δm (%, "
        "positive = better) is the mean signed relative change of the primary's metrics against single-task's "
        "mean. Every row makes as many network updates as single-task; bilevel rows (aux_nas, adashare_aux) "
        "spend half of each epoch's images on architecture steps and so run twice the epochs. "
        f"Training time {summary['run_time_s']:.0f} s (the sum of every run's wall time; this invocation: "
        f"{summary['wall_time_s']:.0f} s, {summary['reused_runs']} of {len(summary['runs'])} runs reused from "
        "earlier ones)." + mixed_runs_text([*summary["preset_overrides"], *summary["overrides"]], summary["runs"]),
        "",
        f"Better than single-task on the selected checkpoint's main metric (the ceiling `{CEILING}` left out): "
        + ("; ".join(verdicts["better"]) or "none") + ".",
        "Worse: " + ("; ".join(verdicts["worse"]) or "none") + ".",
        "",
        "## Overview: Δ main metric of the selected checkpoint vs single-task",
        "",
        "| row | " + " | ".join(f"{n} ({settings[n]['main_metric']})" for n in tables) + " |",
        "|---|" + "---|" * len(tables),
    ]
    for row in rows:
        cells = []
        for name, table in tables.items():
            if row not in table:  # the ceiling, where the primary has every label
                cells.append("—")
                continue
            cell = table[row]["best"][settings[name]["main_metric"]]
            cells.append(f"{cell['mean']:.2f}" if cell["vs_single"] is None else _interval_text(cell))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", "## Settings", ""]
    for name, table in tables.items():
        lines += [*_setting_markdown(settings[name], table), ""]
    example = summary["runs"][0]["command"] if summary["runs"] else ""
    lines += ["Every run is reproducible from its recorded overrides on the same machine configuration (its record "
              "states the float format and thread count; another thread count or memory layout moves results at "
              "the edge of noise), e.g.", "", "```bash", example, "```", ""]
    return "\n".join(lines)
