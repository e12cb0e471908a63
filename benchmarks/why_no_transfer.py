"""Why does Aux-NAS not transfer in the positive control where hard sharing does? Measurements, per row.

Reads the finished runs of one positive control of a budget variant (run with ``train.diagnose_every``, as
``benchmarks/budget_curve.py`` makes them, and the investigation's rows) and reports, per row over seeds:

* the primary's test metric (selected checkpoint) and its share of the floor-to-ceiling gap;
* how much auxiliary gradient reaches the parameters every task's loss reaches (hard sharing: the shared
  backbone; Aux-G / Aux-NAS: the primary branch), as the ratio of the mean auxiliary to the mean primary
  gradient norm there, over the first and the second half of training, and its cosine with the primary's;
* with a2p links (Aux-NAS): the validation metric with them kept and cut, at the last epoch before the
  penalty starts and at the end (what the primary achieves while a2p is open, and what cutting costs);
* the final link strengths (largest p2a and a2p).

    python benchmarks/why_no_transfer.py --runs runs/bench-accuracy/controls-tiny_resnet-64px-e30-lr0p002 \
        --setting ctrl-depth --out benchmarks/results/why_no_transfer
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from auxnas.compare.table import gap_share
from auxnas.engine.record import EpochRecord
from auxnas.stats import mean_std, paired_interval
from auxnas.storage import write_json, write_text
from auxnas.tasks import build_task

#: fraction of training at which the a2p penalty starts (method.penalty_start's default)
PENALTY_START = 0.5


def read_history(run_dir: Path) -> list[EpochRecord]:
    """The epoch records of a run's ``metrics.json``."""
    return [EpochRecord.from_dict(r) for r in json.loads((run_dir / "metrics.json").read_text())["history"]]


def _ratio_of_means(history: list[EpochRecord], primary: str, aux: str) -> float | None:
    """Mean auxiliary over mean primary gradient norm on the shared parameters, over ``history``'s epochs; None
    where either is not recorded or the primary's is 0 (a primary branch that no longer learns)."""
    primary_norms, aux_norms = [], []
    for record in history:
        norms = (record.diagnostics or {}).get("shared_grad_norm", {})
        if primary in norms:
            primary_norms.append(norms[primary])
        if aux in norms:
            aux_norms.append(norms[aux])
    if not aux_norms or not any(primary_norms):
        return None
    return statistics.fmean(aux_norms) / statistics.fmean(primary_norms)


def _cosine(history: list[EpochRecord], aux: str) -> float | None:
    values = [r.diagnostics["shared_grad_cos_primary"][aux] for r in history
              if aux in (r.diagnostics or {}).get("shared_grad_cos_primary", {})]
    return statistics.fmean(values) if values else None


def run_measures(run_dir: Path, primary: str, aux: str, metric: str) -> dict[str, Any]:
    """What one run's metrics.json says about transfer."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = read_history(run_dir)
    half = len(history) // 2
    out: dict[str, Any] = {
        "test": metrics["test_best"][primary][metric],
        "grad_ratio_first_half": _ratio_of_means(history[:half], primary, aux),
        "grad_ratio_second_half": _ratio_of_means(history[half:], primary, aux),
        "grad_cos": _cosine(history, aux),
    }
    if "a2p_kept" in history[-1].val_variants:
        before = history[max(0, int(PENALTY_START * len(history)) - 1)]
        out["val_before_penalty"] = {"kept": before.val_variants["a2p_kept"][primary][metric],
                                     "cut": before.val[primary][metric]}
        out["val_end"] = {"kept": history[-1].val_variants["a2p_kept"][primary][metric],
                          "cut": history[-1].val[primary][metric]}
    links = history[-1].recorded.get("link_strengths") or {}
    for direction in ("p2a", "a2p"):
        values = [v for key, strengths in links.items() if key.startswith(direction) for v in strengths]
        out[f"{direction}_max"] = max(values) if values else None
    return out


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return mean_std(kept)[0] if kept else None


def summarise(runs: Path, setting: str) -> dict[str, Any]:
    """Per row: the measures of every seed and their means, and the test metric against floor and ceiling."""
    folder = runs / setting
    records = {row.name: sorted(({**json.loads(p.read_text()), "run_dir": str(p.parent)}  # where it is now
                                 for p in row.glob("seed*/bench_run.json")), key=lambda r: r["seed"])
               for row in sorted(folder.iterdir()) if row.is_dir()}
    first = records["single"][0]
    config = json.loads((Path(first["run_dir"]) / "metrics.json").read_text())
    primary, metric = config["primary"], config["selection"].split("/")[-1]
    aux = next(t for r in records.get("aux_head", []) for t in r["final_train_losses"] if t != primary)
    seeds = [r["seed"] for r in records["single"]]
    floor = [r["test_best"][metric] for r in records["single"]]
    ceiling = [r["test_best"][metric] for r in records["single-all_labels"]] if "single-all_labels" in records else None
    higher_is_better = build_task(primary, {primary: 2}).higher_is_better[metric]  # any class count: a direction
    rows: dict[str, Any] = {}
    for row, rs in records.items():
        if [r["seed"] for r in rs] != seeds:
            continue  # a row still running, or run on other seeds
        if json.loads((Path(rs[0]["run_dir"]) / "metrics.json").read_text())["primary"] != primary:
            continue  # the recipe's single-task run of the auxiliary task
        per_seed = [run_measures(Path(r["run_dir"]), primary, aux, metric) for r in rs]
        values = [m["test"] for m in per_seed]
        entry: dict[str, Any] = {"per_seed": per_seed, "test": dict(zip(("mean", "std"), mean_std(values)))}
        if row != "single":
            entry["vs_floor"] = paired_interval(values, floor)
        if ceiling is not None and row not in ("single", "single-all_labels"):
            entry["share"] = gap_share(values, floor, ceiling, higher_is_better)
        for key in ("grad_ratio_first_half", "grad_ratio_second_half", "grad_cos", "p2a_max", "a2p_max"):
            entry[key] = _mean([m[key] for m in per_seed])
        if "val_end" in per_seed[0]:
            for key in ("val_before_penalty", "val_end"):
                entry[key] = {k: _mean([m[key][k] for m in per_seed]) for k in ("kept", "cut")}
        rows[row] = entry
    return {"runs": str(runs), "setting": setting, "primary": primary, "aux": aux, "metric": metric,
            "seeds": seeds, "rows": rows}


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(summary: dict[str, Any]) -> str:
    metric = summary["metric"]
    lines = [
        f"# Why no transfer? `{summary['setting']}` ({summary['primary']} primary, {summary['aux']} auxiliary), "
        f"seeds {summary['seeds']}",
        "",
        f"Runs: `{summary['runs']}`. Test `{metric}` of the selected checkpoint (mean ± std); share of the "
        "floor-to-ceiling gap [95 % Fieller interval]; *aux/primary gradient*: mean auxiliary over mean primary "
        "weighted-loss gradient norm on the parameters every task's loss reaches (hard sharing: the backbone; "
        "linked methods: the primary branch), first / second half of training; *cos*: its mean cosine with the "
        "primary's; *val kept / cut*: validation metric with a2p links kept and cut, at the last epoch before the "
        "a2p penalty starts and at the end.",
        "",
        "| row | test | share of gap | aux/primary gradient (1st / 2nd half) | cos | val kept / cut before penalty "
        "| val kept / cut at end | p2a max | a2p max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row, e in summary["rows"].items():
        share = e.get("share")
        share_text = "—" if share is None else (
            f"{100 * share['share']:+.0f} % [{100 * share['low']:+.0f}, {100 * share['high']:+.0f}]"
            if share["bounded"] else f"{100 * share['share']:+.0f} % [unbounded]")
        before, end = e.get("val_before_penalty"), e.get("val_end")
        cells = [
            row, f"{e['test']['mean']:.3f} ± {e['test']['std']:.3f}", share_text,
            f"{_f(e['grad_ratio_first_half'], 2)} / {_f(e['grad_ratio_second_half'], 2)}", _f(e["grad_cos"], 2),
            "—" if before is None else f"{_f(before['kept'])} / {_f(before['cut'])}",
            "—" if end is None else f"{_f(end['kept'])} / {_f(end['cut'])}",
            _f(e["p2a_max"], 2), "—" if e["a2p_max"] is None else f"{e['a2p_max']:.1e}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", required=True, help="the runs folder of one benchmark variant")
    parser.add_argument("--setting", default="ctrl-depth")
    parser.add_argument("--out", default="benchmarks/results/why_no_transfer", help="writes <out>.json and <out>.md")
    args = parser.parse_args()
    summary = summarise(Path(args.runs), args.setting)
    write_json(Path(f"{args.out}.json"), summary)
    write_text(Path(f"{args.out}.md"), markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
