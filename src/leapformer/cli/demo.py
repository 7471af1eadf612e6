"""``leapformer demo``: the result ``make demo`` shows (recall that separates the
mechanisms, and the cost of attention at growing lengths)."""

from __future__ import annotations

import argparse
from pathlib import Path

from leapformer.cli._args import invocation, parse_length, parse_positive


def run_demo_command(args: argparse.Namespace) -> int:
    import time

    from leapformer.tasks.demo import run_demo

    start = time.perf_counter()
    res = run_demo(args.out, mechanisms=args.mechanisms, steps=args.steps, jobs=args.jobs,
                   lengths=args.lengths, command=invocation(),
                   announce=lambda line: print(line, flush=True))
    print()
    print(res["markdown"])
    print(f"wrote {args.out / 'demo.md'} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


def register(commands) -> None:
    from leapformer.tasks.demo import DEMO_CELL, DEMO_MECHANISMS, SPEED_LENGTHS

    demo = commands.add_parser(
        "demo", help="MQAR recall per mechanism with 95%% intervals, then attention time "
        "and decoding memory of softmax vs LeaP at growing lengths (about 6-8 min on 2 cores)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"),
                      help="folder (default runs/demo; finished runs in it are reused)")
    demo.add_argument("--mechanisms", nargs="+", default=list(DEMO_MECHANISMS), metavar="NAME",
                      help=f"default: {' '.join(DEMO_MECHANISMS)}")
    demo.add_argument("--steps", type=parse_positive, default=DEMO_CELL["steps"],
                      help=f"training steps per mechanism (default {DEMO_CELL['steps']})")
    demo.add_argument("--jobs", type=parse_positive, default=2,
                      help="runs side by side, one thread each (default 2)")
    demo.add_argument("--lengths", type=parse_length, nargs="+", default=list(SPEED_LENGTHS),
                      help="lengths of the cost table (default 1k 4k 16k)")
    demo.set_defaults(func=run_demo_command)
