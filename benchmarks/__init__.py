"""Benchmarks: each module runs with `python -m benchmarks.<name>` from the repository root; figures in
BENCHMARKS.md."""
