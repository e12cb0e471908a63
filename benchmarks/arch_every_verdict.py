"""The architecture cadence's verdict (docs/protocols.md, "The architecture cadence"), by the rule written before its
runs finished: on each control, the paired difference of the share of the floor-to-ceiling gap, ``arch_every=2``
minus ``arch_every=1``, with its 95 % t interval over the seeds; ``arch_every=2`` becomes the default unless that
interval lies entirely below 0 on some control. Aux-Head must pass each control first.

    python benchmarks/arch_every_verdict.py --runs benchmarks/records/controls-arch2-tiny_resnet-64px-e30 \\
        --out benchmarks/results/arch_every
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from why_no_transfer import summarise

from auxnas.stats import paired_interval
from auxnas.storage import write_json, write_text
from auxnas.tasks import build_task

SETTINGS = ("ctrl-depth", "ctrl-layout")
EVERY_1, EVERY_2 = "aux_nas", "aux_nas-arch_every_2"


def share_difference(summary: dict[str, Any]) -> dict[str, Any]:
    """The paired difference per seed of the primary's test metric, ``EVERY_2`` minus ``EVERY_1``, oriented so that
    positive is better and divided by the mean floor-to-ceiling gap: the difference of the two shares, with its
    interval."""
    rows, primary, metric = summary["rows"], summary["primary"], summary["metric"]
    sign = 1.0 if build_task(primary, {primary: 2}).higher_is_better[metric] else -1.0
    floor = statistics.fmean(m["test"] for m in rows["single"]["per_seed"])
    ceiling = statistics.fmean(m["test"] for m in rows["single-all_labels"]["per_seed"])
    gap = sign * (ceiling - floor)
    two, one = ([sign * m["test"] / gap for m in rows[row]["per_seed"]] for row in (EVERY_2, EVERY_1))
    return {"gap": gap, **paired_interval(two, one)}


def verdict(settings: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The rule: validity (Aux-Head passes each control), then whether any difference is below 0 beyond noise."""
    failed = [name for name, s in settings.items()
              if not (s["aux_head_share"] and s["aux_head_share"]["bounded"] and s["aux_head_share"]["low"] > 0)]
    if failed:
        return {"verdict": "no verdict: the default stays 1", "why": f"Aux-Head does not pass {', '.join(failed)}"}
    lower = [name for name, s in settings.items() if s["difference"]["high"] < 0]
    if lower:
        return {"verdict": "the default stays arch_every=1",
                "why": f"arch_every=2's share is lower beyond noise on {', '.join(lower)}"}
    return {"verdict": "arch_every=2 becomes the default",
            "why": "on neither control is its share lower beyond noise"}


def _pct(entry: dict[str, Any] | None, key: str = "share") -> str:
    if entry is None:
        return "—"
    return f"{entry[key]:+.0%} [{entry['low']:+.0%}, {entry['high']:+.0%}]"


def markdown(result: dict[str, Any]) -> str:
    lines = ["# `method.arch_every=2` against 1 on the positive controls", "",
             f"Runs: `{result['runs']}`. Rule: docs/protocols.md, \"The architecture "
             "cadence\". Shares of the floor-to-ceiling gap with Fieller intervals; the difference is paired by seed.",
             "", "| setting | seeds | Aux-Head share | arch_every=1 share | arch_every=2 share | difference (2 − 1) |",
             "|---|---|---|---|---|---|"]
    for name, s in result["settings"].items():
        lines.append(f"| {name} | {len(s['seeds'])} | {_pct(s['aux_head_share'])} | {_pct(s['every_1_share'])} | "
                     f"{_pct(s['every_2_share'])} | {_pct(s['difference'], 'mean_diff')} |")
    lines += ["", f"**Verdict: {result['verdict']['verdict']}** ({result['verdict']['why']}).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="the runs folder holding ctrl-depth/ and ctrl-layout/")
    parser.add_argument("--out", required=True, help="output path without extension (.json and .md are written)")
    args = parser.parse_args()
    settings = {}
    for name in SETTINGS:
        summary = summarise(Path(args.runs), name)
        missing = {"single", "single-all_labels", "aux_head", EVERY_1, EVERY_2} - summary["rows"].keys()
        if missing:
            raise SystemExit(f"{args.runs}/{name}: rows {sorted(missing)} have not run on every seed of 'single'")
        rows = summary["rows"]
        settings[name] = {"seeds": summary["seeds"], "aux_head_share": rows["aux_head"]["share"],
                          "every_1_share": rows[EVERY_1]["share"], "every_2_share": rows[EVERY_2]["share"],
                          "difference": share_difference(summary)}
    result = {"runs": args.runs, "settings": settings, "verdict": verdict(settings)}
    write_json(Path(f"{args.out}.json"), result)
    write_text(Path(f"{args.out}.md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
