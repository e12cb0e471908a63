"""The protocol experiment's verdict (docs/protocols.md), by the decision rule written before its runs.

Reads one backbone's runs folder of ``auxnas bench accuracy --preset protocol`` (``--runs``: the folder holding
``ctrl-depth/`` and ``d-10/``) and reports, per setting: each row's share of the floor-to-ceiling gap with its
Fieller interval; protocol Aux-NAS against ``aux_nas-default`` and against protocol Aux-Head, paired by seed; the
auxiliary / primary gradient ratio on the shared parameters (whole run, and each half); the largest p2a strength,
a2p's final strengths, the p2a and a2p projection norms at the end; the validation metric with a2p kept and cut at
the end; whether every auxiliary gradient stayed non-zero after the first epoch. Then applies the rule on
``ctrl-depth``:

    python benchmarks/protocol_verdict.py --runs benchmarks/records/protocol-tiny_resnet-64px-e30 \\
        --out benchmarks/results/protocol-tiny_resnet

``--nas-row aux_nas-disparity_15`` applies it with that row in place of protocol Aux-NAS (the follow-up of
docs/protocols.md: the protocol at the default's auxiliary weight).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from why_no_transfer import _ratio_of_means, read_history, summarise

from auxnas.engine.record import stalled
from auxnas.stats import paired_interval
from auxnas.storage import write_json, write_text

#: the rows that train on the auxiliary task (their auxiliary gradient must stay alive)
AUX_ROWS = ("aux_head", "aux_g-layer", "aux_nas", "aux_nas-default", "aux_nas-disparity_15")
#: the rule's threshold: protocol Aux-NAS must close at least this share of the depth gap (mean)
SHARE_NEEDED = 0.25


def run_extras(run_dir: str, primary: str, aux: str) -> dict[str, Any]:
    """What ``why_no_transfer.run_measures`` leaves out: the whole run's gradient ratio, the epochs after the first
    whose auxiliary gradient on the shared parameters was 0, the projection norms and a2p strengths at the end."""
    history = read_history(Path(run_dir))
    dead = [r.epoch for r in history[1:] if (r.diagnostics or {}).get("shared_grad_norm", {}).get(aux, 1.0) == 0.0]
    links = history[-1].recorded.get("link_strengths") or {}
    a2p = [v for key, values in links.items() if key.startswith("a2p") for v in values]
    norms = (history[-1].diagnostics or {}).get("projection_norm", {})
    return {"grad_ratio": _ratio_of_means(history, primary, aux), "dead_aux_epochs": dead,
            "stalled": stalled(history, primary),
            "a2p_mean": statistics.fmean(a2p) if a2p else None, "p2a_norm": norms.get("p2a"),
            "a2p_norm": norms.get("a2p")}


def setting_summary(runs: Path, setting: str, nas_row: str = "aux_nas") -> dict[str, Any]:
    """``why_no_transfer.summarise`` of one setting, with ``run_extras`` per seed and the paired comparisons of
    ``nas_row`` (protocol Aux-NAS, or the follow-up's row in its place)."""
    summary = summarise(runs, setting)
    primary, aux, metric = summary["primary"], summary["aux"], summary["metric"]
    folder = runs / setting
    for row, entry in summary["rows"].items():
        dirs = [str(p.parent) for p in sorted((folder / row).glob("seed*/bench_run.json"))]
        extras = [run_extras(d, primary, aux) for d in dirs]
        entry["extras"] = extras
        entry["dead_aux"] = sorted({e for x in extras for e in x["dead_aux_epochs"]}) if row in AUX_ROWS else []
        entry["stalled_seeds"] = [int(Path(d).name.removeprefix("seed")) for d, x in zip(dirs, extras) if x["stalled"]]
        for key in ("grad_ratio", "a2p_mean", "p2a_norm", "a2p_norm"):
            values = [x[key] for x in extras if x[key] is not None]
            entry[key] = statistics.fmean(values) if values else None
    rows = summary["rows"]

    def tests(row: str) -> list[float]:
        return [m["test"] for m in rows[row]["per_seed"]]

    summary["nas_row"] = nas_row
    if {nas_row, "aux_nas-default"} <= rows.keys():
        summary["aux_nas_vs_default"] = paired_interval(tests(nas_row), tests("aux_nas-default"))
        summary["grad_ratio_vs_default"] = paired_interval(
            [x["grad_ratio"] for x in rows[nas_row]["extras"]],
            [x["grad_ratio"] for x in rows["aux_nas-default"]["extras"]])
    if {nas_row, "aux_head"} <= rows.keys():
        summary["aux_nas_vs_aux_head"] = paired_interval(tests(nas_row), tests("aux_head"))
    summary["metric"] = metric
    return summary


def verdict(depth: dict[str, Any]) -> dict[str, str]:
    """The rule of docs/protocols.md on the ``ctrl-depth`` summary: validity first (with the follow-up's clause, after
    the main rule's two: no stalled primary in the rows the rule reads), then the four outcomes."""
    rows = depth["rows"]
    read = ("aux_head", "aux_g-layer", depth["nas_row"], "aux_nas-default")
    dead = {row: rows[row]["dead_aux"] for row in read if row in rows and rows[row]["dead_aux"]}
    head = rows["aux_head"].get("share")
    if dead:
        return {"verdict": "no verdict", "why": f"an auxiliary gradient died (row: epochs) {dead}"}
    if not (head and head["bounded"] and head["low"] > 0):
        return {"verdict": "no verdict", "why": "protocol Aux-Head does not pass the depth control"}
    halted = {row: rows[row]["stalled_seeds"] for row in ("single", "single-all_labels", "aux_head", depth["nas_row"],
                                                          "aux_nas-default") if rows.get(row, {}).get("stalled_seeds")}
    if halted:
        return {"verdict": "no verdict", "why": f"a primary stalled (row: seeds) {halted}"}
    nas, default = rows[depth["nas_row"]]["share"], rows["aux_nas-default"]["share"]
    ratio = depth["grad_ratio_vs_default"]
    if nas["share"] >= SHARE_NEEDED and nas["bounded"] and default["bounded"] and nas["low"] > default["high"]:
        return {"verdict": "the missing transfer was an implementation choice",
                "why": f"Aux-NAS closes {nas['share']:.0%} [{nas['low']:.0%}, {nas['high']:.0%}], above "
                       f"aux_nas-default's upper bound {default['high']:.0%}"}
    if not ratio["low"] > 0:
        return {"verdict": "the protocol did not engage",
                "why": f"gradient ratio vs default {ratio['mean_diff']:+.3f} [{ratio['low']:+.3f}, "
                       f"{ratio['high']:+.3f}]"}
    if nas["bounded"] and nas["high"] < head["share"] / 2:
        return {"verdict": "a property of the method at this scale",
                "why": f"gradient ratio up {ratio['mean_diff']:+.3f} [{ratio['low']:+.3f}, {ratio['high']:+.3f}], "
                       f"but Aux-NAS's share's upper bound {nas['high']:.0%} is below half of Aux-Head's "
                       f"{head['share']:.0%}"}
    return {"verdict": "inconclusive at these seeds", "why": "none of the rule's outcomes holds: add seeds 5-9 for "
            "aux_nas, aux_nas-default and aux_head, then apply the rule again"}


def _pct(share: dict[str, Any] | None) -> str:
    if share is None:
        return "—"
    if not share["bounded"]:
        return f"{100 * share['share']:+.0f} % [unbounded]"
    return f"{100 * share['share']:+.0f} % [{100 * share['low']:+.0f}, {100 * share['high']:+.0f}]"


def _f(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _interval(entry: dict[str, Any] | None, digits: int = 3) -> str:
    if entry is None:
        return "—"
    return f"{entry['mean_diff']:+.{digits}f} [{entry['low']:+.{digits}f}, {entry['high']:+.{digits}f}]"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# The protocol experiment: `{result['runs']}`", "",
             f"**Verdict (ctrl-depth, docs/protocols.md's rule): {result['verdict']['verdict']}** — "
             f"{result['verdict']['why']}.", ""]
    for setting, s in result["settings"].items():
        lines += [f"## `{setting}` ({s['primary']} primary, {s['aux']} auxiliary), seeds {s['seeds']}", "",
                  f"`{s['nas_row']}` vs `aux_nas-default`: {_interval(s.get('aux_nas_vs_default'))} {s['metric']}; "
                  f"vs protocol Aux-Head: {_interval(s.get('aux_nas_vs_aux_head'))}; gradient ratio vs default: "
                  f"{_interval(s.get('grad_ratio_vs_default'))}.", "",
                  "| row | test | share of gap | aux/primary gradient (run; 1st / 2nd half) | p2a max | a2p end "
                  "(max / mean) | ‖W‖ p2a / a2p | val kept / cut at end | dead aux epochs | primary stalled (seeds) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row, e in s["rows"].items():
            end = e.get("val_end")
            cells = [row, f"{e['test']['mean']:.3f} ± {e['test']['std']:.3f}", _pct(e.get("share")),
                     f"{_f(e['grad_ratio'])}; {_f(e['grad_ratio_first_half'])} / {_f(e['grad_ratio_second_half'])}",
                     _f(e["p2a_max"]),
                     "—" if e["a2p_max"] is None else f"{e['a2p_max']:.1e} / {e['a2p_mean']:.1e}",
                     f"{_f(e['p2a_norm'])} / {_f(e['a2p_norm'])}",
                     "—" if end is None else f"{_f(end['kept'], 3)} / {_f(end['cut'], 3)}",
                     ", ".join(map(str, e["dead_aux"])) or "none", ", ".join(map(str, e["stalled_seeds"])) or "none"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="one backbone's runs folder of the protocol preset")
    parser.add_argument("--settings", nargs="+", default=["ctrl-depth", "d-10"])
    parser.add_argument("--nas-row", default="aux_nas", help="the row the rule reads as protocol Aux-NAS")
    parser.add_argument("--out", required=True, help="writes <out>.json and <out>.md")
    args = parser.parse_args()
    runs = Path(args.runs)
    settings = {name: setting_summary(runs, name, args.nas_row) for name in args.settings if (runs / name).is_dir()}
    result = {"runs": str(runs), "settings": settings, "verdict": verdict(settings["ctrl-depth"])}
    write_json(Path(f"{args.out}.json"), result)
    write_text(Path(f"{args.out}.md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
