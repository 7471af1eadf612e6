"""Re-weighted attention with the hand-written backward against the autograd path.

Forward + backward (gradients of q, k, v and both proportions) of LeaP attention at
LRA-like shapes (default B 2, H 8, N 4096, d 64, float32, ReLU features, clamp
normalisation, chunk 64, one torch thread), bidirectional and causal, for:

- ``custom``: ``leapformer.ops.reweighted_grad.reweighted_attention_fn``;
- ``autograd``: ``leap_attention(..., mode="chunk")`` (the autograd-traced chunk form);
- ``relu-linear``: ``linear_attention(..., feature_map="relu", mode="chunk")``, the
  issue's reference (goal: LeaP training at >= 0.9x ReLU-linear throughput).

Timing: each function is warmed up, then the three are called round-robin
(``--reps`` rounds) and the median per function reported; ``peak_mb`` is the peak
of the bytes allocated during one call above those allocated before it
(``leapformer.bench.peak_memory_bytes``, torch profiler events on CPU). Gradients of
``custom`` and ``autograd`` are compared (max abs difference) before timing.
Writes ``docs/results/reweighted-grad-cpu.md`` and ``.json`` (atomically) with the
machine load (``os.getloadavg``) at start and end.

    python benchmarks/reweighted_grad.py [--length 4096] [--reps 7] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from leapformer.bench import machine_info, peak_memory_bytes
from leapformer.ops import leap_attention, linear_attention
from leapformer.ops.reweighted_grad import reweighted_attention_fn
from leapformer.report.tables import fmt, fmt_len, machine_line, write_files

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
IMPLS = ("custom", "autograd", "relu-linear")


def _inputs(B, H, N, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, N, D, generator=g).requires_grad_() for _ in range(3))
    qp, kp = (torch.rand(B, H, N, generator=g).requires_grad_() for _ in range(2))
    go = torch.randn(B, H, N, D, generator=g)
    return q, k, v, qp, kp, go


def _forwards(inputs, causal: bool, chunk: int) -> dict:
    q, k, v, qp, kp, _ = inputs
    kw = dict(causal=causal, normalize="clamp", chunk_size=chunk)
    return {
        "custom": lambda: reweighted_attention_fn(q, k, v, qp, kp, **kw),
        "autograd": lambda: leap_attention(q, k, v, qp, kp, mode="chunk",
                                           check_proportions=False, **kw),
        "relu-linear": lambda: linear_attention(q, k, v, mode="chunk", **kw),
    }


def _step_fns(inputs, causal: bool, chunk: int) -> dict:
    """Forward + backward (gradients of every input that the implementation uses)."""
    q, k, v, qp, kp, go = inputs
    leaves = {"custom": (q, k, v, qp, kp), "autograd": (q, k, v, qp, kp),
              "relu-linear": (q, k, v)}

    def run(f, leaves):
        def step():
            for t in leaves:
                t.grad = None
            f().backward(go)
        return step

    return {name: run(f, leaves[name]) for name, f in _forwards(inputs, causal, chunk).items()}


def _grad_diff(inputs, causal: bool, chunk: int) -> float:
    """Largest relative difference of the five gradients, custom vs autograd:
    ``max |a - b| / max |b|`` per gradient."""
    q, k, v, qp, kp, go = inputs
    kw = dict(causal=causal, normalize="clamp", chunk_size=chunk)
    leaves = (q, k, v, qp, kp)
    a = torch.autograd.grad(reweighted_attention_fn(q, k, v, qp, kp, **kw), leaves, go)
    b = torch.autograd.grad(leap_attention(q, k, v, qp, kp, mode="chunk",
                                           check_proportions=False, **kw), leaves, go)
    return max(((x - y).abs().max() / y.abs().max()).item() for x, y in zip(a, b))


def _time(fns: dict, reps: int, warmup: int = 2) -> tuple[dict, dict]:
    """Wall-clock and thread CPU seconds per call, round-robin over ``fns``."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn()
            cpu[name].append(time.thread_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    return wall, cpu


def _saved_mb(inputs, causal: bool, chunk: int) -> dict:
    """MB that each implementation's forward keeps for the backward (saved tensors,
    distinct storages, the inputs' own storages not counted)."""
    q, k, v, qp, kp, _ = inputs
    own = {t.untyped_storage().data_ptr() for t in (q, k, v, qp, kp)}
    fns = _forwards(inputs, causal, chunk)
    result = {}
    for name, f in fns.items():
        seen = {}

        def pack(t, seen=seen):
            st = t.untyped_storage()
            if st.data_ptr() not in own:
                seen[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            f()
        result[name] = sum(seen.values()) / 1e6
    return result


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    inputs = _inputs(args.batch, args.heads, args.length, args.head_dim)
    rows = []
    for causal in (False, True):
        fns = _step_fns(inputs, causal, args.chunk)
        diff = _grad_diff(inputs, causal, args.chunk)
        saved = _saved_mb(inputs, causal, args.chunk)
        wall, cpu = _time(fns, args.reps)
        ms = {name: 1e3 * statistics.median(s) for name, s in wall.items()}
        cpu_ms = {name: 1e3 * statistics.median(s) for name, s in cpu.items()}
        for name in IMPLS:
            peak = peak_memory_bytes(fns[name])
            rows.append({
                "form": "causal" if causal else "bidirectional", "impl": name,
                "ms": ms[name], "cpu_ms": cpu_ms[name],
                "ms_all": [1e3 * s for s in wall[name]],
                "cpu_ms_all": [1e3 * s for s in cpu[name]],
                "vs_autograd": ms["autograd"] / ms[name],
                "vs_relu_linear": ms["relu-linear"] / ms[name],
                "cpu_vs_autograd": cpu_ms["autograd"] / cpu_ms[name],
                "cpu_vs_relu_linear": cpu_ms["relu-linear"] / cpu_ms[name],
                "peak_mb": None if peak is None else peak / 1e6,
                "saved_mb": saved[name],
                "grad_max_abs_diff_vs_autograd": diff if name == "custom" else None,
            })
    return {
        "machine": machine_info(), "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
        "shape": {"batch": args.batch, "heads": args.heads, "length": args.length,
                  "head_dim": args.head_dim, "chunk": args.chunk, "dtype": "float32",
                  "feature_map": "relu", "normalize": "clamp"},
        "reps": args.reps, "rows": rows,
    }


def render(data: dict) -> str:
    s = data["shape"]
    la, lb = data["load_avg_start"], data["load_avg_end"]
    lines = [
        "# Hand-written backward of re-weighted attention (CPU, provisional)", "",
        f"Forward + backward of LeaP attention, B {s['batch']}, H {s['heads']}, "
        f"N {fmt_len(s['length'])}, d {s['head_dim']}, {s['dtype']}, {s['feature_map']} "
        f"features, {s['normalize']} normalisation, chunk {s['chunk']}; median of "
        f"{data['reps']} interleaved rounds. Command: `python benchmarks/reweighted_grad.py`.", "",
        machine_line(data["machine"]),
        f"- date: {data['machine']['date']}",
        f"- load average (1/5/15 min, as `uptime` shows it; 2 cores) at start "
        f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}, "
        f"at end {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}: **the machine was shared with "
        "training jobs; the numbers are provisional** (re-measure on a quiet machine).", "",
        "| form | implementation | wall ms | CPU ms | vs autograd (wall / CPU) "
        "| vs ReLU linear (wall / CPU) | saved MB | peak MB | grad rel. diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        diff = r["grad_max_abs_diff_vs_autograd"]
        lines.append(f"| {r['form']} | {r['impl']} | {fmt(r['ms'])} | {fmt(r['cpu_ms'])} "
                     f"| {fmt(r['vs_autograd'])} / {fmt(r['cpu_vs_autograd'])} "
                     f"| {fmt(r['vs_relu_linear'])} / {fmt(r['cpu_vs_relu_linear'])} "
                     f"| {fmt(r['saved_mb'])} | {fmt(r['peak_mb'])} "
                     f"| {'-' if diff is None else f'{diff:.1e}'} |")
    lines += [
        "",
        "- `vs autograd` and `vs ReLU linear`: the other implementation's median time over "
        "this row's (> 1 = this row is faster; `vs ReLU linear` is the throughput ratio "
        "that the issue's target, LeaP training at >= 0.9x ReLU linear, sets for the "
        "whole model, not for the attention op alone).",
        "- `CPU ms`: thread CPU time of the call (`time.thread_time`), less sensitive than "
        "wall time to the other processes on the machine; page faults are included.",
        "- `saved MB`: what the forward keeps for the backward (saved tensors, inputs "
        "excluded); `peak MB`: peak allocated during one forward + backward above the "
        "allocation before it (torch profiler events).",
        "- `grad rel. diff`: largest of `max |a - b| / max |b|` over the five gradients "
        "(q, k, v, both proportions), custom (a) vs autograd (b), float32.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--stem", default="reweighted-grad-cpu")
    args = parser.parse_args(argv)
    data = run(args)
    md, js = write_files(render(data), data, args.out_dir, args.stem)
    sys.stdout.write(render(data) + f"\nwrote {md} and {js}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
