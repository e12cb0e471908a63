"""Regenerate every committed accuracy table from the committed records and compare it with the committed one.

For each ``benchmarks/results/accuracy-<preset>[-<tag>].json`` whose runs folder is in ``benchmarks/records``, reads
every run back (``--reuse-only``: nothing trains) with the preset, settings, rows, seeds and overrides the JSON
records, and compares the aggregated table with the committed one exactly. Prints one line per table and exits 1
when one differs or cannot be read back.

    python benchmarks/regenerate_all.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from auxnas.bench.accuracy import run_accuracy_benchmark

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    records, failed = ROOT / "benchmarks" / "records", 0
    for path in sorted((ROOT / "benchmarks" / "results").glob("accuracy-*.json")):
        committed = json.loads(path.read_text())
        name = f"{committed['preset']}-{committed['tag']}" if committed.get("tag") else committed["preset"]
        if not any((records / name).rglob("bench_run.json")):
            print(f"{path.name}: no records of its runs in {records / name}, skipped")
            continue
        rows = [r["label"] for r in committed["rows"]]
        try:
            with tempfile.TemporaryDirectory() as out:
                again = run_accuracy_benchmark(
                    committed["preset"], out, records, progress=False, settings=list(committed["settings"]),
                    rows=rows, seeds=committed["seeds"], overrides=committed["overrides"], tag=committed.get("tag"),
                    train=False)
        except (OSError, ValueError) as err:
            failed += 1
            print(f"{path.name}: not read back ({err})")
            continue
        same = json.dumps(again["table"], sort_keys=True) == json.dumps(committed["table"], sort_keys=True)
        failed += not same
        print(f"{path.name}: {len(again['runs'])} runs read back, table {'identical' if same else 'DIFFERS'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
