"""The default job in its smoke version: every method over seeds, exported, costed and judged against Single."""

import json
from pathlib import Path

from auxnas.cli import main
from auxnas.demo import DEMO_ROWS


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
    rows = {r["row"]: r for r in summary["rows"]}
    assert list(rows) == list(DEMO_ROWS)
    assert rows["single"]["cell"]["vs_single"] is None
    for row in rows.values():  # every exported network costs exactly the single-task network
        assert row["params_ratio"] == 1.0 and row["flops_ratio"] == 1.0
        assert len(row["cell"]["values"]) == 2 and row["seed_value"] == row["cell"]["values"][0]
        assert (Path(row["run_dir"]) / "export" / "export_report.json").is_file()
    outcome = rows["aux_nas"]["cell"]["vs_single"]
    assert outcome["outcome"] in ("better", "worse", "no difference") and outcome["n"] == 2
    for figure in ("link_strengths.png", "link_heatmap.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    bench = json.loads((out / "accuracy-smoke.json").read_text())
    assert len({r["network_updates"] for r in bench["runs"]}) == 1  # the same budget for every method and seed
    assert bench["runs"][0]["run_dir"].startswith(str(out / "runs"))
