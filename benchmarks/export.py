"""Export benchmark: latency of one decoding step of an exported linear-family LM in
onnxruntime against eager PyTorch, on the CPU.

Model: ``CausalLM`` with the ``small`` sizes (4 layers, 256 wide, 4 heads, FFN
1024, sinusoidal positions) and a vocabulary of 8192 (the Bible BPE's), randomly
initialised and seeded (latency does not depend on the weights), float32, for
each mechanism (default ``leap`` and ``linear``); ``--run DIR`` takes the model
of a ``leapformer lm train`` run folder instead.

A step decodes one new token per sequence (``B`` sequences) through all layers
and the output projection:

- ``eager``: ``model.project(model.hidden_states(tok, cache=cache)[:, -1])``
  under ``torch.inference_mode()`` (what ``leapformer.models.generate`` runs per
  token), the cache carried from step to step;
- ``onnxruntime``: the file of ``leapformer.export.export_onnx`` run by
  :class:`leapformer.export.OnnxDecoder` (``session.run`` on numpy arrays, the
  states passed in and returned each step), the states carried.

Both run with the same number of threads (``--threads``, default 1:
``torch.set_num_threads`` and onnxruntime's intra-op threads). Each is warmed
up, then the two are timed alternately (interleaved, same process) for
``--reps`` steps each; a row reports the median ms per step, the spread
(the 10th-90th percentiles) and ``speed-up`` = eager ms / onnxruntime ms (> 1:
onnxruntime faster). One step of each is compared first (max |logits
difference|, reported). The machine's load average is recorded: on a shared
machine the medians move with it.

Writes ``docs/results/export-cpu.md`` and ``export-cpu.json`` (``--quick``: 2
layers, 128 wide, vocabulary 1024, batch 1, 30 steps, ``export-cpu-quick.*``).

    python benchmarks/export.py [--quick] [--mechanisms leap linear] [--batches 1 8]
                                [--reps 200] [--threads 1] [--run DIR] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from leapformer.bench import machine_info
from leapformer.export import OnnxDecoder, export_onnx, load_run_model
from leapformer.models.lm import LM_PRESETS, CausalLM, LMConfig
from leapformer.report.tables import fmt, machine_line, write_files

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
FULL = {**LM_PRESETS["small"], "dropout": 0.0, "vocab_size": 8192}
QUICK = {**FULL, "num_layers": 2, "d_model": 128, "nhead": 4, "dim_feedforward": 512,
         "vocab_size": 1024}


def _percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def bench_step(model: CausalLM, dec: OnnxDecoder, batch: int, reps: int, warmup: int) -> dict:
    """One row: median ms per step, eager and onnxruntime, for ``batch`` sequences."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.vocab_size, (batch,), generator=gen)

    cache = model.new_cache(batch)
    states = dec.initial_states(batch)
    position = 0

    def eager():
        with torch.inference_mode():
            h = model.hidden_states(tokens[:, None], cache=cache,
                                    target_length=model.cfg.context_length)
            return model.project(h[:, -1])

    def ort():
        nonlocal states
        logits, states = dec.step(tokens.numpy(), np.full(batch, position + 1), states)
        return logits

    diff = float(np.abs(ort() - eager().numpy()).max())  # first step of each: same logits
    position += 1
    for _ in range(warmup):
        eager()
        ort()
        position += 1
    times: dict[str, list[float]] = {"eager": [], "onnxruntime": []}
    for r in range(reps):
        order = (("eager", eager), ("onnxruntime", ort)) if r % 2 == 0 else \
            (("onnxruntime", ort), ("eager", eager))
        for name, fn in order:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        position += 1
    row = {"mechanism": model.cfg.attention, "batch": batch, "layers": model.cfg.num_layers,
           "d_model": model.cfg.d_model, "vocab_size": model.cfg.vocab_size,
           "reps": reps, "file_mb": dec.path.stat().st_size / 1e6,
           "max_abs_logit_diff": diff}
    for name, xs in times.items():
        ms = [1e3 * x for x in xs]
        row[f"{name}_ms"] = statistics.median(ms)
        row[f"{name}_p10_ms"] = _percentile(ms, 10)
        row[f"{name}_p90_ms"] = _percentile(ms, 90)
    row["speedup"] = row["eager_ms"] / row["onnxruntime_ms"]
    return row


def render(rows: list[dict], info: dict, cfg: dict) -> str:
    load = cfg["load_average"]
    lines = [
        "# Export benchmark: one decoding step, onnxruntime vs eager PyTorch (cpu)", "",
        machine_line(info),
        f"- date: {info['date']}; run time {cfg['wall_s']:.0f} s; torch threads and "
        f"onnxruntime intra-op threads: {cfg['threads']}; onnxruntime {cfg['onnxruntime']}",
        f"- load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f} on "
        f"{info['cores']} cores. **The machine was shared with running training jobs**: "
        "absolute times are inflated and noisy; the ratio of two interleaved timings is "
        "the more robust number.",
        f"- model: {cfg['model']}",
        "- step: one new token per sequence through all layers and the output projection; "
        "eager = `model.project(model.hidden_states(tok, cache=cache)[:, -1])` under "
        "`torch.inference_mode()`; onnxruntime = the file of `leapformer export` "
        "(`session.run` on numpy, states passed in and out every step); states carried "
        "from step to step",
        "- ms: median over `reps` steps each, the two timed alternately in one process; "
        "p10-p90: spread; speed-up: eager ms / onnxruntime ms (> 1 = onnxruntime faster); "
        "diff: max |logits difference| of the first step. Method in `benchmarks/export.py`.",
        "",
        "| mechanism | batch | eager ms (p10-p90) | onnxruntime ms (p10-p90) | speed-up | "
        "reps | diff | export s | file MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mechanism']} | {r['batch']} | {fmt(r['eager_ms'])} "
            f"({fmt(r['eager_p10_ms'])}-{fmt(r['eager_p90_ms'])}) | {fmt(r['onnxruntime_ms'])} "
            f"({fmt(r['onnxruntime_p10_ms'])}-{fmt(r['onnxruntime_p90_ms'])}) | "
            f"{r['speedup']:.2f}x | {r['reps']} | {r['max_abs_logit_diff']:.1e} | "
            f"{r['export_s']:.1f} | {fmt(r['file_mb'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model, batch 1, 30 steps")
    parser.add_argument("--mechanisms", nargs="+", default=["leap", "linear"])
    parser.add_argument("--batches", nargs="+", type=int)
    parser.add_argument("--reps", type=int)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", type=Path, help="a 'leapformer lm train' run folder (its "
                        "model replaces --mechanisms)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import onnxruntime

    batches = args.batches or ([1] if args.quick else [1, 8])
    reps = args.reps or (30 if args.quick else 200)
    sizes = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.run is not None:
            models = [load_run_model(args.run)[0]]
            desc = f"the best checkpoint of {args.run}"
        else:
            models = []
            for name in args.mechanisms:
                torch.manual_seed(0)
                models.append(CausalLM(LMConfig(**sizes, attention=name)))
            desc = (f"`CausalLM(LMConfig({', '.join(f'{k}={v}' for k, v in sizes.items())}, "
                    "attention=...))`, random weights (seed 0), float32")
        for model in models:
            model.eval()
            start = time.perf_counter()
            path = export_onnx(model, Path(tmp) / f"{model.cfg.attention}.onnx")
            export_s = time.perf_counter() - start
            dec = OnnxDecoder(path, threads=args.threads)
            for batch in batches:
                rows.append({**bench_step(model, dec, batch, reps, args.warmup),
                             "export_s": export_s})
                print(f"{rows[-1]['mechanism']} batch {batch}: eager "
                      f"{rows[-1]['eager_ms']:.2f} ms, onnxruntime "
                      f"{rows[-1]['onnxruntime_ms']:.2f} ms ({rows[-1]['speedup']:.2f}x)",
                      file=sys.stderr)
    info = machine_info("cpu")
    cfg = {"model": desc, "mechanisms": [m.cfg.attention for m in models], "batches": batches,
           "reps": reps, "warmup": args.warmup, "threads": args.threads,
           "onnxruntime": onnxruntime.__version__, "quick": args.quick,
           "load_average": [load_before, os.getloadavg()[0]],
           "wall_s": time.perf_counter() - t0}
    stem = "export-cpu-quick" if args.quick else "export-cpu"
    md, js = write_files(render(rows, info, cfg), {"machine": info, "config": cfg, "rows": rows},
                         args.out_dir, stem)
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
