"""GPU benchmark of the fused LeaP kernels (docs/gpu.md).

Rows: LeaP through the Triton kernels (``backend="triton"``), through our torch chunk
form (``backend="torch"``), FLA's ``chunk_linear_attn`` on the expanded features
``[phi(x) sin, phi(x) cos]`` with a ones column on the values (the kernel alone, on
features built beforehand: the comparison the issue's targets name), softmax
attention through SDPA restricted to its FlashAttention backend, and gated LeaP (GLA's
decay, ``gated_leap_attention``) through its Triton kernels, causal only, on a log
decay drawn once outside the timing.

Passes, per head size and length: causal forward, causal forward+backward,
bidirectional forward, and one decoding step (one token; LeaP reads and updates a
state of constant size, SDPA reads a KV cache of the given length). Each cell is the
median of ``--reps`` timed calls (CUDA events, after ``--warmup`` calls) and the peak
memory above the inputs (``torch.cuda.max_memory_allocated``). A cell that runs out of
memory is written as ``OOM``. Shapes: B 8, H 16, d 64 and 128, N 1k to 64k, bf16.

Writes ``docs/results/gpu-<device>.md`` and ``.json`` (``--out-dir`` to change).

    python benchmarks/gpu.py [--lengths 1k 4k 16k] [--dims 64] [--reps 20]
    python benchmarks/gpu.py --dry-run   # CPU, Triton interpreter, tiny shapes: checks the
                                         # script end to end; its times mean nothing
    python benchmarks/gpu.py --compile-check [--arch 90]  # no GPU needed: compile every
                                         # kernel for sm_90, report shared memory per block
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
PASSES = ("fwd", "fwd+bwd", "bidir-fwd", "decode")
METHODS = ("leap-triton", "leap-torch-chunk", "fla-chunk-expanded", "sdpa-flash",
           "gated-leap-triton")


def _length(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kK]?)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"length must be like 512, 4k or 64k, got {text!r}")
    return int(m.group(1)) * (1024 if m.group(2) else 1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, TRITON_INTERPRET=1, tiny shapes (a check of the script)")
    p.add_argument("--lengths", nargs="+", type=_length, default=None,
                   help="sequence lengths (default 1k 2k 4k 8k 16k 32k 64k)")
    p.add_argument("--dims", nargs="+", type=int, default=None, help="head sizes (default 64 128)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--torch-max-length", type=_length, default=16 * 1024,
                   help="skip the torch chunk form above this length (it is slow, not fused)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--compile-check", action="store_true",
                   help="compile the kernels for --arch without a GPU and report shared memory")
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 90, 80")
    p.add_argument("--compile-dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    p.add_argument("--kernels", nargs="+", default=None,
                   help="with --compile-check: a subset of fwd bwd reduce read grad")
    args = p.parse_args(argv)
    if args.dry_run:
        args.lengths = args.lengths or [16, 40]
        args.dims = args.dims or [16]
        args.batch, args.heads = args.batch or 1, args.heads or 2
        args.reps, args.warmup = min(args.reps, 2), 1
    else:
        args.lengths = args.lengths or [1024 * 2 ** i for i in range(7)]
        args.dims = args.dims or [64, 128]
        args.batch, args.heads = args.batch or 8, args.heads or 16
    return args


class Timer:
    """Median milliseconds and peak extra memory of a call, on CUDA or (dry run) CPU."""

    def __init__(self, device, reps: int, warmup: int):
        self.device, self.reps, self.warmup = device, reps, warmup

    def __call__(self, fn, setup=None) -> dict:
        import torch

        cuda = self.device.type == "cuda"
        try:
            for _ in range(self.warmup):
                if setup:
                    setup()
                fn()
            times = []
            if setup:
                setup()  # e.g. drop the warm-up's gradients before the baseline
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            for _ in range(self.reps):
                if setup:
                    setup()
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                        enable_timing=True)
                    start.record()
                    fn()
                    end.record()
                    torch.cuda.synchronize()
                    times.append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - t0) * 1e3)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else None
            return {"ms": statistics.median(times), "peak_mib": peak}
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return {"ms": None, "peak_mib": None, "error": "OOM"}


def _inputs(B, H, N, d, dtype, device, grad):
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(B, H, N, d, generator=g, device=device, dtype=dtype)
               .requires_grad_(grad) for _ in range(3))
    qp, kp = (torch.rand(B, H, N, generator=g, device=device, dtype=torch.float32)
              .requires_grad_(grad) for _ in range(2))
    return q, k, v, qp, kp


def _methods(args, device, dtype, causal, grad):
    """name -> (fn(q,k,v,qp,kp) -> output, or None when unavailable: reason)."""
    import torch
    import torch.nn.functional as F

    from leapformer.ops import leap_attention

    def leap(backend, **kw):
        return lambda q, k, v, qp, kp: leap_attention(q, k, v, qp, kp, causal=causal,
                                                      backend=backend, check_proportions=False,
                                                      **kw)

    out = {"leap-triton": leap("triton"), "leap-torch-chunk": leap("torch", mode="chunk")}
    if device.type == "cuda" and causal:
        from fla.ops.linear_attn import chunk_linear_attn

        from leapformer.ops.feature_maps import relu
        from leapformer.ops.triton.fla import expanded_inputs

        def fla(q, k, v, qp, kp, _cache={}):
            key = (q.data_ptr(), grad)
            if key not in _cache:  # the features are built once, outside the timing
                _cache.clear()
                with torch.no_grad():
                    eq, ek, ev = expanded_inputs(q, k, v, qp, kp, phi=relu,
                                                 key_padding_mask=None, dtype=q.dtype)
                _cache[key] = tuple(t.contiguous().requires_grad_(grad) for t in (eq, ek, ev))
            eq, ek, ev = _cache[key]
            for t in (eq, ek, ev):
                t.grad = None
            return chunk_linear_attn(eq, ek, ev, scale=1.0, normalize=False)[0]
        out["fla-chunk-expanded"] = fla
    else:
        out["fla-chunk-expanded"] = "needs CUDA" if device.type != "cuda" else "causal only"

    def sdpa(q, k, v, qp, kp):
        if device.type != "cuda":
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out["sdpa-flash"] = sdpa
    out["gated-leap-triton"] = _gated_leap(causal) if causal else "causal only"
    return out


def _gated_leap(causal):
    """Gated LeaP through the kernels, on a log decay drawn once per shape (untimed)."""
    import torch

    from leapformer.ops import gated_leap_attention, gla_log_decay

    cache = {}

    def fn(q, k, v, qp, kp, **kw):
        key = (tuple(q.shape), q.device)
        if key not in cache:
            cache.clear()
            g = torch.Generator(device=q.device).manual_seed(1)
            logits = torch.randn(q.shape, generator=g, device=q.device, dtype=torch.float32)
            cache[key] = gla_log_decay(logits)
        return gated_leap_attention(q, k, v, cache[key], qp, kp, backend="triton",
                                    check_proportions=False, **kw)
    return fn


def _bench_cell(timer, fn, inputs, backward):
    import torch

    if not backward:
        def call():
            with torch.no_grad():
                fn(*inputs)
        return timer(call)

    def call():
        out = fn(*inputs)
        out.float().sum().backward()
    for t in inputs:
        t.grad = None
    return timer(call, setup=lambda: [setattr(t, "grad", None) for t in inputs])


def _decode_cells(timer, B, H, N, d, dtype, device) -> dict:
    """One token: LeaP step on a state (constant size) vs SDPA over a KV cache of N."""
    import torch
    import torch.nn.functional as F

    from leapformer.ops import LinearAttentionState, leap_attention

    q, k, v, qp, kp = _inputs(B, H, 1, d, dtype, device, False)
    state = LinearAttentionState.zeros(B, H, 2, d, d, device=device)
    state.s.normal_()  # the sums after N keys: their size does not depend on N
    cells = {}
    for name, backend in (("leap-triton", "triton"), ("leap-torch-chunk", "torch")):
        def step(backend=backend):
            with torch.no_grad():
                leap_attention(q, k, v, qp, kp, causal=True, mode="recurrent",
                               initial_state=state, output_final_state=True,
                               backend=backend, check_proportions=False)
        cells[name] = timer(step)
    gated = _gated_leap(True)

    def gated_step():
        with torch.no_grad():
            gated(q, k, v, qp, kp, mode="recurrent", initial_state=state,
                  output_final_state=True)
    cells["gated-leap-triton"] = timer(gated_step)
    try:
        kc = torch.randn(B, H, N, d, device=device, dtype=dtype)
        vc = torch.randn(B, H, N, d, device=device, dtype=dtype)
    except torch.cuda.OutOfMemoryError:
        cells["sdpa-flash"] = {"ms": None, "peak_mib": None, "error": "OOM"}
        return cells

    def sdpa_step():
        with torch.no_grad():
            if device.type == "cuda":
                from torch.nn.attention import SDPBackend, sdpa_kernel
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    F.scaled_dot_product_attention(q, kc, vc)
            else:
                F.scaled_dot_product_attention(q, kc, vc)
    cells["sdpa-flash"] = timer(sdpa_step)
    cells["fla-chunk-expanded"] = {"ms": None, "peak_mib": None, "error": "not measured"}
    return cells


def run(args) -> dict:
    import torch

    device = torch.device("cpu" if args.dry_run else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: benchmarks/gpu.py needs a CUDA device (or --dry-run)")
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    timer = Timer(device, args.reps, args.warmup)
    B, H = args.batch, args.heads
    rows = []
    for d in args.dims:
        for N in args.lengths:
            for pass_ in PASSES:
                if pass_ == "decode":
                    cells = _decode_cells(timer, B, H, N, d, dtype, device)
                else:
                    causal = pass_ != "bidir-fwd"
                    backward = pass_ == "fwd+bwd"
                    methods = _methods(args, device, dtype, causal, backward)
                    inputs = _inputs(B, H, N, d, dtype, device, backward)
                    cells = {}
                    for name in METHODS:
                        fn = methods.get(name)
                        if isinstance(fn, str):
                            cells[name] = {"ms": None, "peak_mib": None, "error": fn}
                        elif name == "leap-torch-chunk" and N > args.torch_max_length:
                            cells[name] = {"ms": None, "peak_mib": None, "error": "skipped"}
                        else:
                            cells[name] = _bench_cell(timer, fn, inputs, backward)
                    del inputs
                for name, cell in cells.items():
                    rows.append({"d": d, "N": N, "pass": pass_, "method": name, **cell})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    name = "cpu-dry-run" if args.dry_run else re.sub(
        r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")
    return {"device": name, "batch": B, "heads": H, "dtype": str(dtype).replace("torch.", ""),
            "reps": args.reps, "torch": torch.__version__, "rows": rows}


def _fmt(cell: dict, key: str) -> str:
    value = cell.get(key)
    if value is None:
        return cell.get("error", "n/a") if key == "ms" else "n/a"
    return f"{value:.3f}" if key == "ms" else f"{value:.0f}"


def render(result: dict) -> str:
    lines = [f"# GPU benchmark: {result['device']}", "",
             f"B {result['batch']}, H {result['heads']}, {result['dtype']}, median of "
             f"{result['reps']} calls (ms), peak memory above the inputs (MiB); torch "
             f"{result['torch']}. Written by `benchmarks/gpu.py` (method: docs/gpu.md).", ""]
    if result["device"] == "cpu-dry-run":
        lines += ["**Dry run on CPU through the Triton interpreter: these times mean "
                  "nothing.**", ""]
    rows = result["rows"]
    for pass_ in PASSES:
        lines += [f"## {pass_}", "",
                  "| d | N | " + " | ".join(f"{m} ms | {m} MiB" for m in METHODS)
                  + " | sdpa / leap-triton |",
                  "|---|---|" + "---|---|" * len(METHODS) + "---|"]
        keys = sorted({(r["d"], r["N"]) for r in rows if r["pass"] == pass_})
        for d, N in keys:
            cells = {r["method"]: r for r in rows if (r["d"], r["N"], r["pass"]) == (d, N, pass_)}
            parts = []
            for m in METHODS:
                c = cells.get(m, {"error": "n/a"})
                parts += [_fmt(c, "ms"), _fmt(c, "peak_mib")]
            a, b = cells.get("sdpa-flash", {}).get("ms"), cells.get("leap-triton", {}).get("ms")
            ratio = f"{a / b:.2f}x" if a and b and not math.isnan(a / b) else "n/a"
            lines.append(f"| {d} | {N} | " + " | ".join(parts) + f" | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def compile_check(args) -> int:
    """Compile every kernel for ``--arch`` (no GPU needed); 1 if one fails or overflows."""
    os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels, not interpreted ones
    import torch

    from leapformer.ops.triton.compile_check import KERNELS, compile_kernels

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.compile_dtype]
    rows = compile_kernels(arch=args.arch, dtype=dtype, head_dims=args.dims,
                           kernels=args.kernels or KERNELS)
    print(f"| kernel | d | rows | warps | shared (bytes) | limit sm_{args.arch} | ok | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kernel']} | {r['d']} | {r['rows']} | {r['warps']} | {r['shared']} | "
              f"{r['limit']} | {'yes' if r['ok'] else 'NO'} | {r['seconds']:.0f} |")
        if r.get("error"):
            print(f"  {r['kernel']} d={r['d']}: {r['error']}")
    return 0 if all(r["ok"] for r in rows) else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compile_check:
        return compile_check(args)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are defined
    result = run(args)
    from leapformer._io import atomic_write_text

    stem = args.out_dir / f"gpu-{result['device']}"
    atomic_write_text(stem.with_suffix(".md"), render(result))
    atomic_write_text(stem.with_suffix(".json"), json.dumps(result, indent=1))
    print(f"wrote {stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
