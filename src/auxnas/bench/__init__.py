"""Benchmarks behind the project's claims; each writes JSON and a markdown table (docs/benchmarks.md).

``auxnas.bench.cost.run_cost_benchmark``, ``auxnas.bench.accuracy.run_accuracy_benchmark``; ``auxnas.bench.presets``
holds what the accuracy benchmark runs.
"""
