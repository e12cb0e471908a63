"""The default job in its smoke version: every method trains, exports, and lands in the report."""

import json

from auxnas.cli import main


def test_demo_quick_writes_report_table_and_plots(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for label in ("Single", "Aux-Head", "Aux-G-Layer", "Aux-NAS"):
        assert f"| {label} |" in report
    summary = json.loads((out / "demo.json").read_text())
    rows = {r["label"]: r for r in summary["rows"]}
    assert rows["Single"]["delta_m"] == 0.0
    for row in rows.values():  # every exported network costs exactly the single-task network
        assert row["params_ratio"] == 1.0 and row["flops_ratio"] == 1.0
    for figure in ("link_strengths.png", "link_heatmap.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    assert (out / "aux_nas" / "export" / "export_report.json").is_file()
