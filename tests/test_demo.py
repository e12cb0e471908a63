"""The default job in its smoke version: every method over seeds, exported, costed and judged against Single."""

import json
import math
import statistics
from pathlib import Path

import pytest

from auxnas.cli import main
from auxnas.demo import DEMO_ROWS
from auxnas.stats import t_quantile_975


def test_demo_quick_writes_report_statistics_exports_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out  # --quiet removes progress bars, not the result
    assert "| Aux-NAS |" in printed and f"report: {out / 'report.md'}" in printed
    report = (out / "report.md").read_text()
    for label in DEMO_ROWS.values():
        assert f"| {label} |" in report
    summary = json.loads((out / "demo.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["setting"] == "b-small"
    assert summary["verdict"] in report and "within the seed spread" in summary["verdict"]
    assert "These are 2 updates of a tiny network: a smoke run" in summary["verdict"]  # its own budget, not 96
    # the positive control at the demo's own budget, reported beside the result and in the verdict
    control = summary["control"]
    assert "## Can this demo see a gain?" in report and "| ctrl-depth | abs_err |" in report
    assert set(control["shares"]) == {"aux_head", "aux_g-layer", "aux_nas", "aux_nas-random_aux"}
    # its verdict follows from its own numbers: Aux-Head's share of the gap from floor to ceiling (abs_err: lower)
    head = control["shares"]["aux_head"]
    assert head["gap"] == pytest.approx(control["floor"]["mean"] - control["ceiling"]["mean"])
    assert control["passed"] is (head["bounded"] and head["gap"] > 0 and head["low"] > 0)
    reason = ("the ceiling is not better than the floor beyond the seed spread" if not head["bounded"]
              or head["gap"] <= 0 else "aux_head's share interval includes 0" if head["low"] <= 0
              else "aux_head's share interval lies above 0")
    assert control["reason"] == reason
    assert f"| {'**PASSED**' if control['passed'] else '**NOT PASSED**'}: {reason} |" in report
    assert ("did **not** pass at this budget" in summary["verdict"]) == (not control["passed"])
    rows = {r["row"]: r for r in summary["rows"]}
    assert list(rows) == list(DEMO_ROWS)
    assert rows["single"]["cell"]["vs_single"] is None
    for row in rows.values():  # every exported network costs exactly the single-task network
        assert row["params_ratio"] == 1.0 and row["flops_ratio"] == 1.0
        assert len(row["cell"]["values"]) == 2 and row["seed_value"] == row["cell"]["values"][0]
        assert (Path(row["run_dir"]) / "export" / "export_report.json").is_file()
    # every row's numbers are its runs' test metrics, and its verdict against Single follows from them
    bench = json.loads((out / "accuracy-smoke.json").read_text())
    main_metric, single = summary["main_metric"], rows["single"]["cell"]["values"]
    assert main_metric == "mean_angle"  # normals primary: lower is better
    for name, row in rows.items():
        runs = sorted((r for r in bench["runs"] if r["row"] == name and r["setting"] == "b-small"),
                      key=lambda r: r["seed"])
        assert row["cell"]["values"] == [r["test_best"][main_metric] for r in runs]
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        assert row["seed_value"] == metrics["test_best"]["normal"][main_metric]
        assert row["cell"]["mean"] == pytest.approx(statistics.fmean(row["cell"]["values"]))
        if name == "single":
            continue
        diffs = [v - s for v, s in zip(row["cell"]["values"], single)]
        half = t_quantile_975(1) * statistics.stdev(diffs) / math.sqrt(2)
        outcome = row["cell"]["vs_single"]
        assert outcome["n"] == 2 and outcome["mean_diff"] == pytest.approx(statistics.fmean(diffs))
        assert (outcome["low"], outcome["high"]) == pytest.approx((outcome["mean_diff"] - half,
                                                                   outcome["mean_diff"] + half))
        expected = "better" if outcome["high"] < 0 else "worse" if outcome["low"] > 0 else "no difference"
        assert outcome["outcome"] == expected
        assert (row["label"] in summary["verdict"].split("better than Single beyond the seed spread: ")[1]
                .split(";")[0]) == (expected == "better")
        export = json.loads((Path(row["run_dir"]) / "export" / "export_report.json").read_text())
        assert all(export["checks"].values()) and not export["forced"]
    for figure in ("link_strengths.png", "link_heatmap.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    assert len({r["network_updates"] for r in bench["runs"]}) == 1  # the same budget for every method and seed
    assert bench["runs"][0]["run_dir"].startswith(str(out / "runs"))
