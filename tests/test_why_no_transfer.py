"""benchmarks/why_no_transfer.py on the committed records of the central rerun (reads JSON, trains nothing)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
RUNS = ROOT / "benchmarks" / "records" / "central-tiny_resnet-64px-e30-lr0p002"


def _script():
    spec = importlib.util.spec_from_file_location("why_no_transfer", ROOT / "benchmarks" / "why_no_transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not RUNS.is_dir(), reason="the central rerun's records are not in this checkout")
def test_summary_of_the_depth_control_compares_rows_on_the_primary_only():
    summary = _script().summarise(RUNS, "ctrl-depth")
    assert summary["primary"] == "depth" and summary["aux"] == "disparity"
    assert summary["seeds"] == [0, 1, 2, 3, 4]
    rows = summary["rows"]
    assert "single-aux" not in rows  # the recipe's run of the auxiliary task has no depth metric
    assert {"single", "single-all_labels", "aux_head", "aux_nas", "aux_nas-recipe"} <= set(rows)
    assert rows["aux_head"]["share"]["bounded"] and rows["aux_head"]["share"]["low"] > 0
    assert rows["aux_head"]["grad_ratio_first_half"] > 2 * rows["aux_nas"]["grad_ratio_first_half"]
    assert rows["aux_nas"]["a2p_max"] < 0.01
    assert "val_end" in rows["aux_nas"] and "val_end" not in rows["aux_head"]
