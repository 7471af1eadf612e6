"""``leapformer mqar``, ``mqar-grid``, ``mqar-report`` and ``data mqar``: multi-query
associative recall (Zoology, Arora et al. 2023; docs/math.md §5.4)."""

from __future__ import annotations

import argparse
from pathlib import Path

from leapformer.cli._args import invocation, parse_key_value, parse_positive, parse_seed


def _causal_mechanisms() -> list[str]:
    from leapformer.nn import MECHANISMS

    return sorted(n for n, cls in MECHANISMS.items() if cls.full)


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return x


def _cell(text: str) -> tuple[int, int]:
    from leapformer.tasks.mqar.grid import parse_cell

    try:
        return parse_cell(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _common(parser: argparse.ArgumentParser) -> None:
    """Options of a run shared by ``mqar`` and ``mqar-grid``."""
    from leapformer.tasks.mqar import DEFAULTS

    parser.add_argument("--vocab", type=parse_positive, default=DEFAULTS["vocab"],
                        help=f"vocabulary size (default {DEFAULTS['vocab']}, Zoology's)")
    parser.add_argument("--layers", type=parse_positive, default=DEFAULTS["layers"],
                        help=f"blocks (default {DEFAULTS['layers']})")
    parser.add_argument("--short-conv", action=argparse.BooleanOptionalAction, default=True,
                        help="a short causal depthwise convolution before each attention "
                        "(Zoology's hybrid; default on: --no-short-conv for attention only)")
    parser.add_argument("--n-train", type=parse_positive,
                        help="training sequences (default: steps x batch size, at most "
                        f"{DEFAULTS['max_train']:,}: none seen twice)")
    parser.add_argument("--n-test", type=parse_positive, default=DEFAULTS["n_test"],
                        help=f"test sequences (default {DEFAULTS['n_test']})")
    parser.add_argument("--eval-every", type=parse_positive, default=DEFAULTS["eval_every"],
                        help=f"validate every N steps (default {DEFAULTS['eval_every']})")
    parser.add_argument("--threads", type=parse_positive,
                        help="torch threads (default: torch's choice; the grid's timings "
                        "assume 1)")
    parser.add_argument("--mechanism-option", type=parse_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="attention option, e.g. head_norm=rms "
                        "(repeatable; the runs are filed and reported as leap+head_norm=rms)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_mqar_arguments(parser: argparse.ArgumentParser) -> None:
    from leapformer.tasks.mqar import DEFAULTS

    parser.add_argument("--attention", required=True, choices=_causal_mechanisms(),
                        help="token-mixing mechanism (causal)")
    parser.add_argument("--d-model", type=parse_positive, required=True, help="model width")
    parser.add_argument("--seq-len", type=parse_positive, required=True,
                        help="sequence length (even)")
    parser.add_argument("--num-kv", type=parse_positive, required=True,
                        help="key-value pairs per sequence (4 * num_kv <= seq_len)")
    parser.add_argument("--steps", type=parse_positive, default=DEFAULTS["steps"],
                        help=f"training steps (default {DEFAULTS['steps']})")
    parser.add_argument("--lr", type=_positive_float, default=DEFAULTS["lr"],
                        help=f"peak learning rate (default {DEFAULTS['lr']:g})")
    parser.add_argument("--batch-size", type=parse_positive,
                        help="sequences per step (default: 512 // num_kv, 512 queries)")
    parser.add_argument("--seed", type=int, default=0, help="model and data seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue OUT/last.pt")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in OUT (default: refuse a folder holding a run)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder: config.json, checkpoints, metrics.jsonl, "
                        "results.json")
    _common(parser)


def run_mqar_command(args: argparse.Namespace) -> int:
    """One MQAR run; ends with a one-line summary."""
    from leapformer.tasks.mqar import mechanism_label, run_mqar

    _set_threads(args.threads)
    res = run_mqar(args.attention, d_model=args.d_model, seq_len=args.seq_len,
                   num_kv=args.num_kv, vocab=args.vocab, layers=args.layers, steps=args.steps,
                   lr=args.lr, batch_size=args.batch_size,
                   n_train=args.n_train, n_test=args.n_test, eval_every=args.eval_every,
                   seed=args.seed, short_conv=args.short_conv, out=args.out,
                   resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                   command=invocation(), mechanism_options=dict(args.mechanism_option))
    name = mechanism_label(args.attention, dict(args.mechanism_option))
    print(f"mqar {name} d={args.d_model} T={args.seq_len} kv={args.num_kv}: test "
          f"accuracy {100 * res['test_accuracy']:.2f}% per query "
          f"({100 * res['test_sequence_accuracy']:.1f}% of sequences all right), state "
          f"{res['state_bytes'] / 1024:.1f} KiB per layer, {res['steps']} steps in "
          f"{res['train_wall_s']:.0f} s; wrote {args.out / 'results.json'}")
    return 0


def run_mqar_grid(args: argparse.Namespace) -> int:
    from leapformer.tasks.mqar.grid import run_grid

    _set_threads(args.threads)
    options = {"n_train": args.n_train, "n_test": args.n_test, "eval_every": args.eval_every,
               "layers": args.layers}
    res = run_grid(args.out, mechanisms=args.mechanisms, widths=args.widths, cells=args.cells,
                   lrs=args.lrs, seeds=args.seeds, steps=args.steps,
                   queries_per_batch=args.queries_per_batch, vocab=args.vocab,
                   short_conv=args.short_conv, accept=args.accept,
                   progress=not args.no_progress, command=invocation(), run_options=options,
                   mechanism_options=dict(args.mechanism_option),
                   announce=lambda msg: print(f"== {msg}", flush=True))
    print(f"mqar-grid: {res['trained']} runs trained, {res['skipped']} skipped, "
          f"{len(res['runs'])} kept (best lr); wrote {args.out / 'report.md'}"
          + (f" and {res['figure']}" if res["figure"] else ""))
    return 0


def run_mqar_report(args: argparse.Namespace) -> int:
    from leapformer._io import atomic_write_text
    from leapformer.tasks.mqar.report import (
        collect,
        keep_only,
        plot_accuracy_vs_width,
        render_report,
    )

    results = collect(args.runs)
    if not results:
        raise ValueError(f"no MQAR results.json under {', '.join(map(str, args.runs))}")
    results = keep_only(results, lrs=args.lrs, seeds=args.seeds)
    if not results:
        raise ValueError("no MQAR result matches --lrs/--seeds")
    names = sorted({r["attention"] for r in results})
    for flag, value in (("--paired", args.paired), ("--focus", args.focus)):
        if value is not None and value not in names:
            raise ValueError(f"{flag} must name a mechanism of the runs ({', '.join(names)}), "
                             f"got {value!r}")
    text = render_report(results, command=invocation(), paired=args.paired,
                         focus=args.focus if args.focus is not None else "auto",
                         notes=args.note)
    written = []
    if args.out is not None:
        atomic_write_text(args.out, text)
        written.append(str(args.out))
    else:
        print(text, end="")
    if args.figure is not None:
        written.append(str(plot_accuracy_vs_width(results, args.figure)))
    print(f"mqar-report: {len(results)} runs" + (f"; wrote {', '.join(written)}"
                                                   if written else ""))
    return 0


def run_data_mqar(args: argparse.Namespace) -> int:
    """Generate MQAR sequences, write the .npz file, print a one-line summary."""
    from leapformer.data.mqar import make_mqar, save_mqar

    inputs, labels = make_mqar(args.n, args.seq_len, args.num_kv, args.vocab, args.seed)
    path = save_mqar(args.out, inputs, labels)
    print(f"wrote {len(inputs)} MQAR sequences to {path}: seq_len {args.seq_len}, "
          f"{args.num_kv} key-value pairs, vocab {args.vocab}, seed {args.seed}, "
          f"{int((labels != -100).sum())} queries")
    return 0


def add_data_mqar(datasets) -> None:
    """Add ``data mqar`` to the ``data`` sub-commands (``cli.data.register``'s return)."""
    p = datasets.add_parser("mqar", help="multi-query associative recall sequences (.npz: "
                            "inputs, labels)")
    p.add_argument("--n", type=parse_positive, required=True, help="number of sequences")
    p.add_argument("--seq-len", type=parse_positive, required=True, help="length (even)")
    p.add_argument("--num-kv", type=parse_positive, required=True,
                   help="key-value pairs per sequence (4 * num_kv <= seq_len)")
    p.add_argument("--vocab", type=parse_positive, default=8192,
                   help="vocabulary size, > seq_len (default 8192)")
    p.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    p.add_argument("--out", type=Path, required=True, help=".npz file to write")
    p.set_defaults(func=run_data_mqar)


def register(commands) -> None:
    from leapformer.tasks.mqar.grid import GRID_DEFAULTS as G

    mqar = commands.add_parser("mqar", help="train and test one multi-query associative "
                               "recall run")
    add_mqar_arguments(mqar)
    mqar.set_defaults(func=run_mqar_command)

    grid = commands.add_parser("mqar-grid", help="MQAR over mechanisms x widths x cells x "
                               "learning rates x seeds (resumable), then the report")
    grid.add_argument("--mechanisms", nargs="+", default=G["mechanisms"], metavar="NAME",
                      choices=_causal_mechanisms(),
                      help=f"default: {' '.join(G['mechanisms'])}")
    grid.add_argument("--widths", nargs="+", type=parse_positive, default=G["widths"],
                      metavar="D", help=f"model widths (default {' '.join(map(str, G['widths']))})")
    grid.add_argument("--cells", nargs="+", type=_cell, default=G["cells"], metavar="T:K",
                      help="seq_len:num_kv cells (default "
                      + " ".join(f"{t}:{k}" for t, k in G["cells"]) + ")")
    grid.add_argument("--lrs", nargs="+", type=_positive_float, default=G["lrs"],
                      metavar="LR", help="learning rates; the best (validation) is kept "
                      f"(default {' '.join(f'{x:g}' for x in G['lrs'])})")
    grid.add_argument("--seeds", nargs="+", type=int, default=G["seeds"], metavar="S",
                      help=f"seeds (default {' '.join(map(str, G['seeds']))})")
    grid.add_argument("--steps", type=parse_positive, default=G["steps"],
                      help=f"training steps per run (default {G['steps']})")
    grid.add_argument("--queries-per-batch", type=parse_positive,
                      default=G["queries_per_batch"],
                      help="batch = this // num_kv sequences (default "
                      f"{G['queries_per_batch']})")
    grid.add_argument("--accept", type=float,
                      help="skip the other learning rates of a (cell, mechanism, width, seed) "
                      "once one reaches this validation accuracy (e.g. 0.99)")
    grid.add_argument("--out", type=Path, required=True, help="grid folder")
    _common(grid)
    grid.set_defaults(func=run_mqar_grid)

    report = commands.add_parser("mqar-report", help="MQAR markdown report and the accuracy "
                                 "vs width figure")
    report.add_argument("--runs", type=Path, nargs="+", required=True,
                        help="folders searched for results.json")
    report.add_argument("--out", type=Path, help="markdown file (default: print it)")
    report.add_argument("--figure", type=Path, help="PNG: accuracy vs width per cell")
    report.add_argument("--lrs", type=_positive_float, nargs="+", metavar="LR",
                        help="keep only these learning rates (default: all; the best by "
                        "validation accuracy is reported per seed)")
    report.add_argument("--seeds", type=parse_seed, nargs="+", metavar="S",
                        help="keep only these seeds (default: all)")
    report.add_argument("--paired", metavar="MECHANISM",
                        help="also compare this mechanism with every other one seed by seed "
                        "(mean difference ± 95%% t interval, wins, sign test)")
    report.add_argument("--note", action="append", default=[], metavar="TEXT",
                        help="a bullet line for the report's header (repeatable)")
    report.add_argument("--focus", metavar="MECHANISM",
                        help="summarise where this mechanism stands against every other one "
                        "at each cell and width (default: leap, when the runs have it)")
    report.set_defaults(func=run_mqar_report)
