"""The committed benchmark records still read: a sample table regenerates from them, unchanged, training nothing."""

import json
from pathlib import Path

from auxnas.bench.accuracy import run_accuracy_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_a_committed_table_regenerates_identically_from_its_records(tmp_path, monkeypatch):
    """`controls` at 96 updates (24 runs recorded before records had an identity, and before tasks had kinds)."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    committed = json.loads((ROOT / "benchmarks/results/accuracy-controls-tiny_resnet-64px-e3-lr0p002.json").read_text())
    again = run_accuracy_benchmark(
        committed["preset"], tmp_path, ROOT / "benchmarks" / "records", progress=False,
        settings=list(committed["settings"]), rows=[r["label"] for r in committed["rows"]], seeds=committed["seeds"],
        overrides=committed["overrides"], tag=committed["tag"], train=False)
    assert len(again["runs"]) == 24 and all(r["reused"] for r in again["runs"])
    assert json.dumps(again["table"], sort_keys=True) == json.dumps(committed["table"], sort_keys=True)
