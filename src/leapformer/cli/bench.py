"""``leapformer bench ops|decode|lra-speed``: the attention-core, decoding and LRA speed benchmarks."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from leapformer.cli._args import (
    add_bench_common,
    command_line,
    parse_length,
    parse_nonnegative,
    parse_positive,
)


def add_bench_ops_arguments(parser: argparse.ArgumentParser, *, out_dir_default=None) -> None:
    """Options shared by ``leapformer bench ops`` and ``benchmarks/ops.py``."""
    add_bench_common(parser, "ops", "lengths 1k/2k and few repetitions (under a minute)",
                      out_dir_default)
    parser.add_argument("--lengths", type=parse_length, nargs="+", metavar="N",
                        help="sequence lengths (default 1k 4k 16k; quick 1k 2k)")
    parser.add_argument("--positions", type=parse_length, nargs="+", metavar="P",
                        help="decode positions (default 128 and the largest length)")
    parser.add_argument("--reps", type=parse_positive, metavar="R",
                        help="fixed repetitions per measurement (default: adaptive)")
    parser.add_argument("--scenarios", nargs="+", metavar="S",
                        choices=("fwd", "causal_fwd", "causal_fwd_bwd", "decode"),
                        help="scenarios to measure (default all)")
    parser.add_argument("--peers", nargs="*", metavar="PEER",
                        choices=("fla-naive", "fast-transformers"),
                        help="other libraries' linear attention to time beside ours: "
                             "fla-naive, fast-transformers (default: those installed; "
                             "--peers alone: none)")
    parser.add_argument("--contended", type=parse_nonnegative, default=0, metavar="N",
                        help="run N other busy torch processes while measuring (default 0); "
                             "results go to ops-<device>-contended<N>.*")
    parser.add_argument("--contention-work", choices=("matmul", "leap"), default="matmul",
                        help="what the busy processes run (default matmul)")
    parser.add_argument("--contention-threads", type=parse_positive, metavar="T",
                        help="threads of each busy process (default: torch's default)")


def run_bench_ops(args: argparse.Namespace) -> int:
    """Run the ops benchmark from parsed options: print markdown, write files if ``out_dir``."""
    from tqdm import tqdm

    from leapformer.bench.ops import (
        BenchConfig,
        render_markdown,
        run_ops_benchmark,
        write_results,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"device": args.device}
    if args.lengths:
        overrides["lengths"] = tuple(args.lengths)
    if args.positions:
        overrides["positions"] = tuple(args.positions)
    if args.reps:
        overrides.update(min_reps=args.reps, max_reps=args.reps, warmup=1)
    if args.scenarios:
        overrides["scenarios"] = tuple(args.scenarios)
    from leapformer.bench.peers import available_peers

    overrides["peers"] = available_peers() if args.peers is None else tuple(args.peers)
    overrides.update(contended=args.contended, contention_work=args.contention_work,
                     contention_threads=args.contention_threads)
    cfg = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)

    def progress(tasks):
        return tqdm(tasks, desc="bench ops", unit="group", disable=args.no_progress,
                    file=sys.stderr)

    result = run_ops_benchmark(cfg, progress=progress)
    print(render_markdown(result))
    if args.out_dir is not None:
        policy = os.environ.get("OMP_WAIT_POLICY")
        stem = (f"ops-{torch.device(args.device).type}" + ("-quick" if args.quick else "")
                + (f"-contended{args.contended}" if args.contended else "")
                + (f"-{policy.lower()}" if args.contended and policy else ""))
        for path in write_results(result, args.out_dir, stem=stem):
            print(f"wrote {path}")
    return 0


def add_bench_decode_arguments(parser: argparse.ArgumentParser, *, out_dir_default=None) -> None:
    """Options shared by ``leapformer bench decode`` and ``benchmarks/decode.py``."""
    from leapformer.bench.decode import MECHANISMS

    add_bench_common(parser, "decode", "positions 128/1k, batch 1, few repetitions "
                      "(under a minute)", out_dir_default)
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
    parser.add_argument("--no-compile-step", action="store_true",
                        help="time the eager decoding step instead of the compiled one "
                        "(torch.compile of the whole step; default on)")


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
    if getattr(args, "no_compile_step", False):
        overrides["compile_step"] = False
    try:
        cfg = DecodeConfig.quick(**overrides) if args.quick else DecodeConfig(**overrides)
        for name in cfg.mechanisms:
            check_mechanism_name(name)
    except ValueError as err:
        print(f"error: leapformer bench decode: {err}", file=sys.stderr)
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


def add_bench_lra_speed_arguments(parser: argparse.ArgumentParser, *,
                                  out_dir_default=None) -> None:
    """Options shared by ``leapformer bench lra-speed`` and ``benchmarks/lra_speed.py``."""
    from leapformer.bench.lra_speed import MECHANISMS

    add_bench_common(parser, "lra-speed", "length 1k, batch 2, one round (about a minute)",
                      out_dir_default)
    parser.add_argument("--length", type=parse_length, help="tokens per sequence (default 4k)")
    parser.add_argument("--batch", type=parse_positive, help="sequences per step (default 4)")
    parser.add_argument("--mechanisms", nargs="+", metavar="NAME",
                        help=f"mechanisms (default: {' '.join(MECHANISMS)})")
    parser.add_argument("--rounds", type=parse_positive, metavar="N",
                        help="interleaved passes, samples pooled (default 3)")


def run_bench_lra_speed(args: argparse.Namespace) -> int:
    """LRA classifier throughput and memory per mechanism: print markdown, write files."""
    from tqdm import tqdm

    from leapformer.bench.lra_speed import (
        LRASpeedConfig,
        render_markdown,
        run_lra_speed,
        write_results,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"device": args.device}
    if args.quick:
        overrides.update(length=1024, batch=2, rounds=1, max_reps=3, target_s=0.5)
    for name in ("length", "batch", "rounds"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    if args.mechanisms:
        overrides["mechanisms"] = tuple(args.mechanisms)
    try:
        cfg = LRASpeedConfig(**overrides)
    except ValueError as err:
        print(f"error: leapformer bench lra-speed: {err}", file=sys.stderr)
        return 2
    with tqdm(total=cfg.rounds * len(cfg.modes), desc="bench lra-speed", unit="round",
              disable=args.no_progress, file=sys.stderr) as bar:
        result = run_lra_speed(cfg, progress=lambda msg: bar.update(1))
    command = command_line(args)
    print(render_markdown(result, command))
    if args.out_dir is not None:
        stem = f"lra-speed-{torch.device(args.device).type}" + ("-quick" if args.quick else "")
        for path in write_results(result, args.out_dir, command, stem=stem):
            print(f"wrote {path}")
    return 0



def register(commands) -> None:
    bench = commands.add_parser("bench", help="benchmarks: attention ops, decoding, LRA speed")
    targets = bench.add_subparsers(dest="target", required=True)
    ops = targets.add_parser("ops", help="attention ops vs SDPA: time, GFLOP/s, peak memory")
    add_bench_ops_arguments(ops)
    ops.set_defaults(func=run_bench_ops)
    decode = targets.add_parser("decode", help="decoder step latency and cache memory: "
                                "softmax KV cache vs linear states")
    add_bench_decode_arguments(decode)
    decode.set_defaults(func=run_bench_decode)
    lra_speed = targets.add_parser("lra-speed", help="LRA classifier at 4k: training and "
                                   "inference throughput and memory per mechanism")
    add_bench_lra_speed_arguments(lra_speed)
    lra_speed.set_defaults(func=run_bench_lra_speed)
