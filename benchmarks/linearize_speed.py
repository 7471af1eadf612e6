"""Generation speed and cache memory of a linearised model against its softmax teacher.

The teacher is a ``transformers`` causal LM folder (``leapformer lm train --hf-arch
llama|gpt2 --out RUN`` writes ``RUN/hf``); the linearised model is a folder of
``leapformer linearize --out DIR`` (read with
:func:`leapformer.linearize.load_linearized`). At each position ``p`` both models
prefill ``p`` random tokens in one call (the teacher into ``transformers``'
``DynamicCache``: every key and value; the linearised model into
:func:`leapformer.linearize.linear_cache`: a constant-size state per linearised
layer), then decode one token at a time; the two are timed alternately in the same
process (interleaved, ``--reps`` steps each, after ``--warmup`` steps) and a row
reports the median ms per token, the ratio teacher ms / linearised ms (> 1: the
linearised model is faster) and the cache bytes at ``p`` (keys and values of the
teacher; the linear states, plus any softmax layer's keys and values, of the
linearised model). Every step adds its token to the caches, so the timed steps sit
at positions ``p`` to ``p + warmup + reps``. Rotary positions (Llama) work beyond the
teacher's training context; a learned table (GPT-2's ``n_positions``) must cover
``p + warmup + reps`` (a clear error otherwise).

Writes ``linearize-speed-cpu.md`` and ``.json`` to ``--out-dir`` (default
docs/results).

    python benchmarks/linearize_speed.py --teacher runs/lin/teacher/hf \\
        --linearized runs/lin/lin-leap [--positions 512 4096] [--reps 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from leapformer.bench import machine_info
from leapformer.report.tables import fmt, machine_line, write_files

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _cache_bytes(cache) -> int:
    """Bytes of every tensor a ``transformers`` cache holds (keys, values, states)."""
    from leapformer.linearize import state_bytes

    total = state_bytes(cache) if any(type(la).__name__ == "LinearStateLayer"
                                      for la in cache.layers) else 0
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def _decoder(model, make_cache, position: int, vocab: int):
    """``(step, cache)``: ``model`` prefilled with ``position`` random tokens."""
    from leapformer.hf import CACHE_ARGUMENT

    g = torch.Generator().manual_seed(position)
    prompt = torch.randint(0, vocab, (1, position), generator=g)
    token = torch.randint(0, vocab, (1, 1), generator=g)
    cache = make_cache()
    with torch.inference_mode():
        model(input_ids=prompt, use_cache=True, **{CACHE_ARGUMENT: cache})

    def step():
        with torch.inference_mode():
            return model(input_ids=token, use_cache=True, **{CACHE_ARGUMENT: cache}).logits

    return step, cache


def measure(teacher, student, positions, reps: int, warmup: int) -> list[dict]:
    from transformers import DynamicCache

    from leapformer.linearize import linear_cache

    vocab = teacher.config.vocab_size
    table = getattr(teacher.config, "n_positions", None)  # GPT-2's learned positions
    if table is not None and max(positions) + warmup + reps > table:
        raise ValueError(f"--positions: the teacher's learned position table has {table} "
                         f"rows; position {max(positions)} + warm-up + reps does not fit")
    rows = []
    for p in positions:
        fns, caches = {}, {}
        for name, model, make in (("teacher", teacher, DynamicCache),
                                  ("linearized", student, lambda: linear_cache(student))):
            fns[name], caches[name] = _decoder(model, make, p, vocab)
        bytes_at_p = {name: _cache_bytes(c) for name, c in caches.items()}
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        samples = {name: [] for name in fns}
        for _ in range(reps):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
        ms = {name: 1e3 * statistics.median(s) for name, s in samples.items()}
        for name in fns:
            rows.append({"position": p, "model": name, "ms": ms[name],
                         "vs_teacher": ms["teacher"] / ms[name],
                         "cache_mb": bytes_at_p[name] / 1e6, "reps": reps})
    return rows


def render(result: dict, command: str) -> str:
    lines = ["# Linearised model vs its softmax teacher: generation (cpu)", "",
             machine_line(result["machine"]), f"- date: {result['machine']['date']}",
             f"- command: `{command}`",
             f"- teacher: `{result['teacher']}`; linearised: `{result['linearized']}`",
             ("- batch 1; a step decodes one token after a prefill of `position` random "
              "tokens; medians of interleaved steps; vs teacher = teacher ms / ms (> 1 = "
              "faster); cache MB = the cache's tensors at the position"),
             f"- load average before the run: {result['load']}", "",
             "| position | model | ms / token | vs teacher | cache MB |",
             "|---:|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['position']} | {r['model']} | {fmt(r['ms'])} "
                     f"| {fmt(r['vs_teacher'])} | {fmt(r['cache_mb'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="transformers folder")
    parser.add_argument("--linearized", type=Path, required=True,
                        help="folder of 'leapformer linearize --out'")
    parser.add_argument("--positions", type=_positive, nargs="+", default=[512, 4096])
    parser.add_argument("--reps", type=_positive, default=40)
    parser.add_argument("--warmup", type=_positive, default=5)
    parser.add_argument("--threads", type=_positive, default=1)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for option, path in (("--teacher", args.teacher), ("--linearized", args.linearized)):
        if not path.is_dir():
            print(f"linearize_speed: error: {option} {path} is not a folder", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from leapformer.linearize import load_linearized

    teacher = AutoModelForCausalLM.from_pretrained(args.teacher).eval()
    student = load_linearized(args.linearized).eval()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        rows = measure(teacher, student, args.positions, args.reps, args.warmup)
    except ValueError as err:
        print(f"linearize_speed: error: {err}", file=sys.stderr)
        return 2
    result = {"machine": machine_info(torch.device("cpu")), "teacher": str(args.teacher),
              "linearized": str(args.linearized), "load": load, "rows": rows}
    command = "python benchmarks/linearize_speed.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv)
    text = render(result, command)
    print(text, end="")
    md, js = write_files(text, dict(result, command=command), args.out_dir,
                         "linearize-speed-cpu")
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
