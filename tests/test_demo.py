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


def test_every_demo_row_gets_the_same_number_of_network_updates(tmp_path):
    from auxnas.config import load_config
    from auxnas.data import num_val_images
    from auxnas.demo import DEMO_METHODS, QUICK_OVERRIDES, _row_config
    from auxnas.train import steps_per_epoch

    for overrides, tolerance in ((QUICK_OVERRIDES, 0), ((), 0.02)):
        base = load_config("demo", list(overrides))
        updates = {}
        for label, method in DEMO_METHODS:
            cfg = _row_config(base, tmp_path, label, method)
            n = cfg.data.num_train - num_val_images(cfg.data.num_train, cfg.data.val_fraction)
            bilevel = cfg.method.name == "aux_nas"
            updates[label] = steps_per_epoch(n, cfg, bilevel) * cfg.train.epochs
        single = updates["Single"]
        assert all(abs(u - single) <= tolerance * single for u in updates.values()), updates
