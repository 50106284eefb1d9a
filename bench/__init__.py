"""Benchmarks: `python -m bench` (see bench/run.py and docs/PERFORMANCE.md)."""
