"""Benchmarks: the attention core (``leapformer.bench.ops``) and decoding with a cache
(``leapformer.bench.decode``, imported on its own so that the ops benchmark does not
load ``leapformer.nn``). Rows name mechanisms as the registry does; readers of older
result files map the old names with :func:`canonical_result` (``leapformer.bench.names``)."""

from leapformer.bench._common import (
    load_line,
    machine_info,
    median_ms,
    peak_memory_bytes,
    table_header,
    write_table,
)
from leapformer.bench.names import LEGACY_NAMES, canonical_mechanism, canonical_result
from leapformer.bench.ops import (
    IMPLEMENTATIONS,
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
    "IMPLEMENTATIONS",
    "LEGACY_NAMES",
    "MECHANISMS",
    "ROW_KEYS",
    "SCENARIOS",
    "BenchConfig",
    "BenchResult",
    "canonical_mechanism",
    "canonical_result",
    "evaluate_targets",
    "flop_count",
    "load_line",
    "machine_info",
    "median_ms",
    "peak_memory_bytes",
    "plan",
    "render_markdown",
    "run_ops_benchmark",
    "table_header",
    "write_results",
    "write_table",
]
