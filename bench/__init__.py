"""Benchmark of polaris-bot under load, beside the original tool's design.

Run it from the repository root: ``python -m bench`` (full) or ``python -m bench --quick``
(the CI size). docs/benchmark.md says what each figure measures.
"""
