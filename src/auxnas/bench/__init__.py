"""Benchmarks behind the project's claims; each writes JSON and a markdown table (docs/benchmarks.md)."""

from .accuracy import run_accuracy_benchmark as run_accuracy_benchmark
from .cost import run_cost_benchmark as run_cost_benchmark
