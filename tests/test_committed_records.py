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


def test_a_table_names_the_runs_whose_primary_stalled(tmp_path, monkeypatch):
    """The protocol's vgg16_narrow runs at SGD 0.1: single-task seed 4 and Aux-Head seed 3 stopped learning depth
    (docs/protocols.md), and the table says so beside the numbers that include them."""
    monkeypatch.setenv("AUXNAS_CACHE", str(tmp_path / "cache"))
    again = run_accuracy_benchmark(
        "protocol", tmp_path, ROOT / "benchmarks" / "records", progress=False, settings=["ctrl-depth"],
        rows=["aux_head", "aux_g-layer"], tag="vgg16_narrow-64px-e30", train=False,
        overrides=["model.backbone=vgg16_narrow", "train.lr=0.1", "data.image_size=64", "train.epochs=30",
                   "train.diagnose_every=8"])
    table = again["table"]["ctrl-depth"]
    assert {row: entry.get("stalled_seeds") for row, entry in table.items()} == {
        "single": [4], "single-all_labels": None, "aux_head": [3], "aux_g-layer": None}
    assert "**Stalled runs**: the primary stopped learning in single seed 4; aux_head seed 3" in again["markdown"]
