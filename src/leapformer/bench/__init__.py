"""Benchmarks: the attention core (``leapformer.bench.ops``) and decoding with a cache
(``leapformer.bench.decode``, imported on its own so that the ops benchmark does not
load ``leapformer.nn``)."""

from leapformer.bench._common import machine_info, median_ms, peak_memory_bytes
from leapformer.bench.ops import (
    MECHANISMS,
    ROW_KEYS,
    SCENARIOS,
    BenchConfig,
    BenchResult,
    evaluate_targets,
    flop_count,
    plan,
    render_markdown,
    run_ops_benchmark,
    write_results,
)

__all__ = [
    "MECHANISMS",
    "ROW_KEYS",
    "SCENARIOS",
    "BenchConfig",
    "BenchResult",
    "evaluate_targets",
    "flop_count",
    "machine_info",
    "median_ms",
    "peak_memory_bytes",
    "plan",
    "render_markdown",
    "run_ops_benchmark",
    "write_results",
]
