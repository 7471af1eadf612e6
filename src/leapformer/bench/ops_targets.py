"""The targets of the ops benchmark (issue thresholds), evaluated on its rows."""

from __future__ import annotations

from leapformer.bench.peers import PEERS
from leapformer.report.tables import target

MATMUL_SIZE = 2048  # the matmul reference of GFLOP/s
SINGLE_THREAD = "leap-1thread"  # LeaP at one thread: a row of contended runs


def _row(rows, scenario, mechanism, length):
    return next((r for r in rows if (r["scenario"], r["mechanism"], r["length"])
                 == (scenario, mechanism, length)), None)


def _get(rows, scenario, mechanism, length, key):
    row = _row(rows, scenario, mechanism, length)
    return None if row is None else row.get(key)


def evaluate_targets(rows: list[dict], matmul: dict | None = None, *,
                     contended: int = 0) -> list[dict]:
    """The LeaP targets as dicts ``{name, target, value, status}``; status PASS, MISS or n/a."""
    out = []

    def add(name, goal, value, ok, fmt_spec):
        out.append(target(name, goal, value, ok, fmt_spec))

    for n, want in ((4096, 12.0), (16384, 50.0)):
        add(f"LeaP bidirectional forward vs softmax (SDPA) at {n // 1024}k",
            f">= {want:g}x faster", _get(rows, "fwd", "leap", n, "vs_softmax"),
            lambda x, w=want: x >= w, "{:.1f}x")
    add("LeaP causal fwd+bwd vs softmax (SDPA) at 4k", ">= 3x faster",
        _get(rows, "causal_fwd_bwd", "leap", 4096, "vs_softmax"), lambda x: x >= 3.0, "{:.1f}x")
    p16, p4 = (_get(rows, "causal_fwd_bwd", "leap", n, "peak_mb") for n in (16384, 4096))
    add("LeaP causal fwd+bwd peak memory 16k / 4k", "linear: ~4 (pass <= 5; quadratic = 16)",
        p16 / p4 if p16 and p4 else None, lambda x: x <= 5.0, "{:.2f}")
    d16, d128 = (_get(rows, "decode", "leap", n, "ms") for n in (16384, 128))
    add("LeaP decode step time at 16k / at 128", "<= 1.2",
        d16 / d128 if d16 and d128 else None, lambda x: x <= 1.2, "{:.2f}")
    g4 = _get(rows, "fwd", "leap", 4096, "gflops")
    mm = (matmul or {}).get("gflops")
    add(f"LeaP bidirectional 4k GFLOP/s vs {MATMUL_SIZE}^2 matmul", ">= 40%",
        100 * g4 / mm if g4 and mm else None, lambda x: x >= 40.0, "{:.0f}%")
    leap4 = _get(rows, "causal_fwd_bwd", "leap", 4096, "ms")
    for peer in sorted({r["mechanism"] for r in rows if r["mechanism"] in PEERS}):
        other = _get(rows, "causal_fwd_bwd", peer, 4096, "ms")
        add(f"LeaP causal fwd+bwd vs {peer} (ELU) at 4k", ">= 1.0x (as fast or faster)",
            other / leap4 if other and leap4 else None, lambda x: x >= 1.0, "{:.2f}x")
    if contended:
        add(f"LeaP bidirectional 4k vs softmax, {contended} busy process(es)", ">= 10x faster",
            _get(rows, "fwd", "leap", 4096, "vs_softmax"), lambda x: x >= 10.0, "{:.1f}x")
        one = _get(rows, "fwd", SINGLE_THREAD, 4096, "ms")
        add("LeaP bidirectional 4k, all threads vs 1 thread, busy", ">= 1.0x (no slower)",
            one / leap4b if one and (leap4b := _get(rows, "fwd", "leap", 4096, "ms")) else None,
            lambda x: x >= 1.0, "{:.2f}x")
    return out
