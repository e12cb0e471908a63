"""docs/results.md: the results that stand, generated from the committed records by one command.

Reads every run of the two central accuracy benchmarks from ``benchmarks/records`` (nothing trains: a missing record
is an error) and the cost benchmark's ``benchmarks/results/cost-cpu.json``; writes ``docs/results.md`` and its
figure ``docs/figures/share-of-gap.png``. The positive controls come first.

    python benchmarks/results_page.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from auxnas.bench.accuracy import run_accuracy_benchmark  # noqa: E402
from auxnas.compare.table import outcome  # noqa: E402
from auxnas.stats import paired_interval  # noqa: E402
from auxnas.storage import write_text  # noqa: E402
from auxnas.tasks import build_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: (label, tag) of the central benchmarks, each a folder ``central-<tag>`` of ``benchmarks/records``
CENTRAL = (("tiny_resnet from scratch", "tiny_resnet-64px-e30-lr0p002"),
           ("efficientnet_lite0 from ImageNet weights", "efficientnet_lite0-64px-e30-lr0p003"))
#: (row, label) of the methods every table shows, hard sharing first
METHODS = (("aux_head", "Aux-Head (hard sharing)"), ("aux_g-layer", "Aux-G (fixed p2a links)"),
           ("aux_nas", "Aux-NAS"), ("aux_nas-p2a_only", "Aux-NAS, p2a links only"),
           ("single-continued", "single-task trained twice as long"), ("aux_nas-recipe", "authors' recipe"),
           ("aux_nas-random_aux", "Aux-NAS, random aux targets"),
           ("aux_head-random_aux", "Aux-Head, random aux targets"), *(META := (
               ("aux_head+auto_lambda", "Aux-Head + Auto-λ"), ("aux_nas+auto_lambda", "Aux-NAS + Auto-λ"),
               ("aux_head+auxilearn", "Aux-Head + AuxiLearn"))))
#: issue 36's question, by the rule of docs/weighting.md: transfer kept where hard sharing transfers, no harm where
#: the primary is plentiful
TRANSFER, HARMLESS = ("ctrl-depth", "ctrl-layout", "d-10"), ("a-large", "b-large")
#: the settings whose primary is partially labelled: a floor-to-ceiling gap
GAPPED = ("ctrl-depth", "ctrl-layout", "d-10")
SETTINGS = ("ctrl-depth", "ctrl-layout", "a-large", "b-large", "d-10")


def central(tag: str) -> dict[str, Any]:
    """The central benchmark ``tag`` read back from its committed records, with the rows, settings and seeds of its
    committed table (rows added to the preset later, whose runs are not committed yet, are left out)."""
    committed = json.loads((ROOT / "benchmarks" / "results" / f"accuracy-central-{tag}.json").read_text())
    with tempfile.TemporaryDirectory() as out:
        return run_accuracy_benchmark(
            "central", out, ROOT / "benchmarks" / "records", progress=False, settings=list(committed["settings"]),
            rows=[r["label"] for r in committed["rows"]], seeds=committed["seeds"], overrides=committed["overrides"],
            tag=tag, train=False)


def _text(entry: dict[str, Any], digits: int = 2) -> str:
    return f"{entry['mean_diff']:+.{digits}f} [{entry['low']:+.{digits}f}, {entry['high']:+.{digits}f}]"


def _interval(entry: dict[str, Any], digits: int = 2) -> str:
    text = _text(entry, digits)
    return f"**{text}**" + (" worse" if entry["outcome"] == "worse" else "") if entry["verdict"] != "no difference" \
        else text


def _share(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "—"
    if not entry["bounded"]:
        return f"{100 * entry['share']:+.0f} % [unbounded]"
    text = f"{100 * entry['share']:+.0f} % [{100 * entry['low']:+.0f}, {100 * entry['high']:+.0f}]"
    return f"**{text}**" if entry["low"] > 0 or entry["high"] < 0 else text


def controls_table(summaries: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| backbone | control | floor | ceiling | " + " | ".join(label for _, label in METHODS[:4])
             + " | passed |", "|---|---|---|---|" + "---|" * 4 + "---|"]
    for label, summary in summaries.items():
        for name, control in summary["controls"]["settings"].items():
            shares = control["shares"]
            cells = [label, f"`{name}` ({control['main_metric']})",
                     f"{control['floor']['mean']:.3g} ± {control['floor']['std']:.2g}",
                     f"{control['ceiling']['mean']:.3g} ± {control['ceiling']['std']:.2g}",
                     *(_share(shares.get(row)) for row, _ in METHODS[:4]), "yes" if control["passed"] else "no"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def delta_table(summary: dict[str, Any]) -> list[str]:
    info, table = summary["settings"], summary["table"]
    header = " | ".join(f"`{s}` ({info[s]['main_metric']})" for s in SETTINGS)
    lines = [f"| row | {header} |", "|---|" + "---|" * len(SETTINGS)]
    single = [f"{table[s]['single']['best'][info[s]['main_metric']]['mean']:.3g}" for s in SETTINGS]
    lines.append("| single-task (absolute) | " + " | ".join(single) + " |")
    for row, label in [(row, label) for row, label in METHODS if any(row in table[s] for s in SETTINGS)]:
        cells = [_interval(table[s][row]["best"][info[s]["main_metric"]]["vs_single"]) if row in table[s] else "—"
                 for s in SETTINGS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _by_seed(summary: dict[str, Any], setting: str, row: str, metric: str) -> list[float]:
    """``row``'s selected-checkpoint ``metric`` on ``setting``, one value per seed in seed order."""
    runs = sorted((r for r in summary["runs"] if r["setting"] == setting and r["row"] == row), key=lambda r: r["seed"])
    return [r["test_best"][metric] for r in runs]


def versus_head(summary: dict[str, Any], setting: str, row: str) -> dict[str, Any]:
    """``row`` against Aux-Head on ``setting``, paired by seed (the table has each row against single-task only)."""
    info = summary["settings"][setting]
    main = info["main_metric"]
    interval = paired_interval(_by_seed(summary, setting, row, main), _by_seed(summary, setting, "aux_head", main))
    higher = build_task(info["primary"], dict.fromkeys(("seg", "layout", "object", "scene"), 2))
    return {**interval, "outcome": outcome(interval, higher.higher_is_better[main])}


def meta_answer(summary: dict[str, Any]) -> list[str] | None:
    """Issue 36's table and one-sentence answer (docs/weighting.md's rule) for the meta-learned rows of ``summary``,
    or None when it has none: per setting each row's Δ against single-task and, where transfer is asked, against
    Aux-Head, both paired by seed."""
    info, table = summary["settings"], summary["table"]
    rows = [(row, label) for row, label in META if all(row in table[s] for s in SETTINGS)]
    if not rows:
        return None

    lines = ["| row | " + " | ".join(f"`{s}` vs single | vs Aux-Head" if s in TRANSFER else f"`{s}` vs single"
                                    for s in SETTINGS) + " |",
             "|---|" + "".join("---|---|" if s in TRANSFER else "---|" for s in SETTINGS)]
    verdicts = []
    for row, label in rows:
        cells, failed = [], None
        for s in SETTINGS:
            single = table[s][row]["best"][info[s]["main_metric"]]["vs_single"]
            cells.append(_interval(single))
            if s in HARMLESS:
                if single["outcome"] == "worse" and failed is None:
                    failed = f"worse than single-task on `{s}`: {_text(single)}"
                continue
            head = versus_head(summary, s, row)
            cells.append(_interval(head))
            head_transfers = table[s]["aux_head"]["best"][info[s]["main_metric"]]["vs_single"]["outcome"] == "better"
            if failed is None and head["outcome"] == "worse":
                failed = f"worse than Aux-Head on `{s}`: {_text(head)}"
            elif failed is None and head_transfers and single["outcome"] != "better":
                failed = f"not better than single-task on `{s}`, where Aux-Head is: {_text(single)}"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        verdicts.append((label, failed))
    kept = [label for label, failed in verdicts if failed is None]
    answer = (f"**Yes: {', '.join(kept)}** keep{'s' if len(kept) == 1 else ''} hard sharing's transfer on the "
              f"controls and `d-10` and {'is' if len(kept) == 1 else 'are'} never worse than single-task on "
              "`a-large` and `b-large`" if kept else "**No: none of them does**")
    others = "; ".join(f"{label} is {failed}" for label, failed in verdicts if failed is not None)
    return [*lines, "", answer + (f" ({others})." if others else "."), *harm_kept(summary, kept)]


def harm_kept(summary: dict[str, Any], kept: list[str]) -> list[str]:
    """Beside the rule: where Aux-Head is worse than single-task on a plentiful setting and a row the rule keeps is
    not distinguishable from Aux-Head there, a sentence saying so (its own interval includes 0, but the records do not
    show the harm gone: a difference in significance is not a significant difference)."""
    info, table, lines = summary["settings"], summary["table"], []
    for s in HARMLESS:
        head = table[s]["aux_head"]["best"][info[s]["main_metric"]]["vs_single"]
        if head["outcome"] != "worse":
            continue
        same = [(label, _text(versus)) for row, label in META
                if label in kept and (versus := versus_head(summary, s, row))["outcome"] == "no difference"]
        if same:
            lines.append(f"Beside the rule: Aux-Head is worse than single-task on `{s}` ({_text(head)}), and there "
                         f"{' and '.join(label for label, _ in same)} cannot be told from Aux-Head (Δ against it "
                         f"{', '.join(text for _, text in same)}): the records show no harm beyond noise for "
                         f"{'it' if len(same) == 1 else 'them'}, not that the harm is gone.")
    return ["", *lines] if lines else []


def share_figure(summaries: dict[str, dict[str, Any]], path: Path) -> None:
    """Each method's share of the floor-to-ceiling gap with its interval, per gapped setting and backbone."""
    fig, axes = plt.subplots(1, len(summaries), figsize=(5.2 * len(summaries), 3.6), sharey=True)
    for ax, (label, summary) in zip(axes, summaries.items()):
        for k, (row, name) in enumerate(METHODS[:4]):
            xs, ys, lows, highs = [], [], [], []
            for i, setting in enumerate(GAPPED):
                share = summary["table"][setting][row].get("share", {}).get("best")
                if share is None or not share["bounded"]:
                    continue
                xs.append(i + (k - 1.5) * 0.18)
                ys.append(100 * share["share"])
                lows.append(100 * (share["share"] - share["low"]))
                highs.append(100 * (share["high"] - share["share"]))
            ax.errorbar(xs, ys, yerr=[lows, highs], fmt="o", capsize=3, label=name)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(GAPPED)), GAPPED)
        ax.set_title(label, fontsize=10)
    axes[0].set_ylabel("share of the floor-to-ceiling gap (%)")
    axes[-1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cost_lines(cost: dict[str, Any]) -> list[str]:
    lines = ["| backbone | method | parameters (× single) | FLOPs / image (× single) | latency (× single, "
             "interleaved) |", "|---|---|---|---|---|"]
    for backbone, entry in cost["backbones"].items():
        for method, net in entry["inference"]["networks"].items():
            if method == "single":
                continue
            lines.append(f"| {backbone} | {method} | {net['params_ratio']:.3f} | {net['flops_ratio']:.3f} | "
                         f"{net['latency_ratio']['value']:.2f} [{net['latency_ratio']['rounds_q25']:.2f}, "
                         f"{net['latency_ratio']['rounds_q75']:.2f}] |")
    return lines


INTRO = """# Results

Generated by `python benchmarks/results_page.py` from the committed records (`benchmarks/records/`) and the
cost benchmark's `benchmarks/results/cost-cpu.json`: nothing here is typed by hand but the sentences. How the
benchmarks run: [benchmarks.md](benchmarks.md); the words used: [glossary.md](glossary.md); the investigations
behind them: [research/](research/). CPU only (2 cores); no GPU was lent to the sessions that made them.

Every run trains on the synthetic indoor scenes at 64 px for 960 network updates, 5 seeds; a row is better or
worse than single-task only where its 95 % interval, paired by seed, excludes 0. Every number is that of the
exported primary network, which costs exactly what single-task costs (last section)."""

READING = """## Can the benchmark see a gain? The positive controls

In `ctrl-depth` the primary (depth) is labelled on 10 % of 512 images and the auxiliary label (disparity =
1 / depth) on all; in `ctrl-layout` segmentation on 10 % and its own 4-class coarsening on all: the auxiliary label
provably carries what the primary lacks. The floor is single-task on the 10 %, the ceiling single-task on every
label; each method's share of that gap comes with its Fieller interval (bold: beyond noise). A control passes when
hard sharing's share lies above 0: then the benchmark can see a gain, and "no gain" elsewhere means something.
`d-10` is the same question on a real pair of tasks (segmentation on 10 %, surface normals on all)."""


def page(summaries: dict[str, dict[str, Any]], cost: dict[str, Any]) -> str:
    lines = [INTRO, "", READING, "", *controls_table(summaries), "",
             "![share of the gap](figures/share-of-gap.png)", ""]
    for label, summary in summaries.items():
        lines += [f"## Against single-task: {label}", "",
                  "Difference of the selected checkpoint's main metric to single-task's (lower is better for abs. "
                  "error and degrees; higher for mIoU), mean [95 % interval paired over 5 seeds]; bold: beyond "
                  f"noise. `{summary['preset']}` preset, tag `{summary['tag']}`, {len(summary['runs'])} runs.", "",
                  *delta_table(summary), ""]
        if answer := meta_answer(summary):
            lines += [f"### The meta-learned weightings: {label}", "",
                      "Does Auto-λ or AuxiLearn keep hard sharing's transfer on the controls and `d-10` while never "
                      "being worse than single-task on `a-large` and `b-large`? By the rule of "
                      "[weighting.md](weighting.md#evidence-do-the-meta-learned-weightings-transfer-like-hard-sharing"
                      "-and-never-hurt), written before their last runs; Δ of the selected checkpoint's main metric, "
                      "mean [95 % interval paired over 5 seeds], bold: beyond noise.", "", *answer, ""]
    lines += ["## Inference cost", "",
              "`auxnas bench cost`: every exported primary network against single-task's, latencies measured "
              "interleaved on a shared CPU (the ratio of medians with the quartiles of the per-round ratio; the "
              "networks are identical, so the spread is noise).", "", *cost_lines(cost), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    args = parser.parse_args()
    summaries = {label: central(tag) for label, tag in CENTRAL}
    out = Path(args.out)
    share_figure(summaries, out.parent / "figures" / "share-of-gap.png")
    cost = json.loads((ROOT / "benchmarks" / "results" / "cost-cpu.json").read_text())
    write_text(out, page(summaries, cost))
    print(f"wrote {out} and {out.parent / 'figures' / 'share-of-gap.png'}")


if __name__ == "__main__":
    main()
