"""Command line: ``leapformer bench ops [--quick] [--out-dir DIR] [--lengths ...]`` and
``leapformer bench decode [--quick] [--out-dir DIR] [--positions ...] [--batches ...]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch


def parse_length(text: str) -> int:
    """``"4096"``, ``"4k"`` or ``"4K"`` -> 4096."""
    text = text.strip().lower()
    try:
        n = int(text[:-1]) * 1024 if text.endswith("k") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a length: {text!r} (use e.g. 4096 or 4k)") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"length must be positive, got {n}")
    return n


def parse_positive(text: str) -> int:
    """A positive integer (batch size, repetitions, threads)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {n}")
    return n


def add_bench_ops_arguments(parser: argparse.ArgumentParser, *, out_dir_default=None) -> None:
    """Options shared by ``leapformer bench ops`` and ``benchmarks/ops.py``."""
    parser.add_argument("--quick", action="store_true",
                        help="lengths 1k/2k and few repetitions (under a minute)")
    parser.add_argument("--out-dir", type=Path, default=out_dir_default,
                        help="write ops-<device>[-quick].md/.json here"
                        + ("" if out_dir_default is None else f" (default {out_dir_default})"))
    parser.add_argument("--lengths", type=parse_length, nargs="+", metavar="N",
                        help="sequence lengths (default 1k 4k 16k; quick 1k 2k)")
    parser.add_argument("--positions", type=parse_length, nargs="+", metavar="P",
                        help="decode positions (default 128 and the largest length)")
    parser.add_argument("--reps", type=int, metavar="R",
                        help="fixed repetitions per measurement (default: adaptive)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_bench_ops(args: argparse.Namespace) -> int:
    """Run the ops benchmark from parsed options: print markdown, write files if ``out_dir``."""
    from tqdm import tqdm

    from leapformer.bench.ops import BenchConfig, render_markdown, run_ops_benchmark, write_results

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"device": args.device}
    if args.lengths:
        overrides["lengths"] = tuple(args.lengths)
    if args.positions:
        overrides["positions"] = tuple(args.positions)
    if args.reps:
        overrides.update(min_reps=args.reps, max_reps=args.reps, warmup=1)
    cfg = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)

    def progress(tasks):
        return tqdm(tasks, desc="bench ops", unit="group", disable=args.no_progress,
                    file=sys.stderr)

    result = run_ops_benchmark(cfg, progress=progress)
    print(render_markdown(result))
    if args.out_dir is not None:
        stem = f"ops-{torch.device(args.device).type}" + ("-quick" if args.quick else "")
        for path in write_results(result, args.out_dir, stem=stem):
            print(f"wrote {path}")
    return 0


def add_bench_decode_arguments(parser: argparse.ArgumentParser, *, out_dir_default=None) -> None:
    """Options shared by ``leapformer bench decode`` and ``benchmarks/decode.py``."""
    from leapformer.bench.decode import MECHANISMS

    parser.add_argument("--quick", action="store_true",
                        help="positions 128/1k, batch 1, few repetitions (under a minute)")
    parser.add_argument("--out-dir", type=Path, default=out_dir_default,
                        help="write decode-<device>[-quick].md/.json here"
                        + ("" if out_dir_default is None else f" (default {out_dir_default})"))
    parser.add_argument("--positions", type=parse_length, nargs="+", metavar="P",
                        help="decode positions (default 128 1k 4k 16k; quick 128 1k)")
    parser.add_argument("--batches", type=parse_positive, nargs="+", metavar="B",
                        help="batch sizes (default 1 8; quick 1)")
    parser.add_argument("--mechanisms", nargs="+", metavar="NAME",
                        help=f"attention mechanisms (default {' '.join(MECHANISMS)}; "
                        "softmax is the baseline of the ratios)")
    parser.add_argument("--reps", type=parse_positive, metavar="R",
                        help="fixed repetitions per measurement and round (default: adaptive)")
    parser.add_argument("--rounds", type=parse_positive, metavar="N",
                        help="passes over all groups, samples pooled (default 6; quick 1)")
    parser.add_argument("--threads", type=parse_positive,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_bench_decode(args: argparse.Namespace) -> int:
    """Run the decode benchmark from parsed options: print markdown, write files if ``out_dir``."""
    from tqdm import tqdm

    from leapformer.bench.decode import (
        DecodeConfig,
        render_markdown,
        run_decode_benchmark,
        write_results,
    )
    from leapformer.nn.mechanisms import check_mechanism_name

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"device": args.device}
    if args.positions:
        overrides["positions"] = tuple(args.positions)
    if args.batches:
        overrides["batches"] = tuple(args.batches)
    if args.mechanisms:
        overrides["mechanisms"] = tuple(args.mechanisms)
    if args.reps:
        overrides.update(min_reps=args.reps, max_reps=args.reps, warmup=1)
    if args.rounds:
        overrides["rounds"] = args.rounds
    try:
        cfg = DecodeConfig.quick(**overrides) if args.quick else DecodeConfig(**overrides)
        for name in cfg.mechanisms:
            check_mechanism_name(name)
    except ValueError as err:
        print(f"leapformer bench decode: error: {err}", file=sys.stderr)
        return 2

    def progress(tasks):
        return tqdm(tasks, desc="bench decode", unit="group", disable=args.no_progress,
                    file=sys.stderr)

    result = run_decode_benchmark(cfg, progress=progress)
    print(render_markdown(result))
    if args.out_dir is not None:
        stem = f"decode-{torch.device(args.device).type}" + ("-quick" if args.quick else "")
        for path in write_results(result, args.out_dir, stem=stem):
            print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from leapformer import __version__

    parser = argparse.ArgumentParser(prog="leapformer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"leapformer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="benchmarks")
    targets = bench.add_subparsers(dest="target", required=True)
    ops = targets.add_parser("ops", help="attention ops vs SDPA: time, GFLOP/s, peak memory")
    add_bench_ops_arguments(ops)
    ops.set_defaults(func=run_bench_ops)
    decode = targets.add_parser("decode", help="decoder step latency and cache memory: "
                                "softmax KV cache vs linear states")
    add_bench_decode_arguments(decode)
    decode.set_defaults(func=run_bench_decode)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
