"""``leapformer lra``, ``lra-grid``, ``lra-report`` and ``heatmap``: the Long-Range Arena harness."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from leapformer.cli._args import parse_positive


def add_lra_arguments(parser: argparse.ArgumentParser) -> None:
    from leapformer.nn import MECHANISMS
    from leapformer.tasks.lra import PROFILES, TASKS

    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--attention", required=True, choices=sorted(MECHANISMS),
                        help="encoder self-attention mechanism")
    parser.add_argument("--profile", default="lite", choices=PROFILES,
                        help="paper = published settings; lite = 2-core CPU in minutes")
    parser.add_argument("--data-dir", type=Path,
                        help="official files (ListOps: basic_{train,val,test}.tsv); "
                        "default: generate the data")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder: checkpoints, metrics.jsonl, results.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=parse_positive, help="override the profile's steps")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_lra_command(args: argparse.Namespace) -> int:
    """One LRA run; data-parallel over the processes when started by ``torchrun``."""
    import json

    from leapformer.tasks.lra import run_lra
    from leapformer.train import cleanup, init_distributed

    dist = init_distributed("cpu")  # the LRA harness trains on the CPU: gloo
    try:
        res = run_lra(args.task, args.attention, profile=args.profile, out=args.out,
                      data_dir=args.data_dir, seed=args.seed, steps=args.steps,
                      resume=args.resume, progress=not args.no_progress, dist=dist)
    finally:
        cleanup()
    if dist.is_main:
        print(json.dumps({k: v for k, v in res.items() if k != "profile_settings"}, indent=2))
        print(f"wrote {args.out / 'results.json'}")
    return 0


def run_lra_report(args: argparse.Namespace) -> int:
    import json

    from leapformer._io import atomic_write_text
    from leapformer.tasks.lra.report import (
        collect,
        figure1_points,
        render_report,
        render_table,
    )

    results = collect(args.runs)
    speed = None
    if args.speed is not None:
        try:
            speed = json.loads(args.speed.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"leapformer lra-report: error: --speed {args.speed}: {err}", file=sys.stderr)
            return 2
    table = render_table(results)
    print(table, end="")
    if args.out is not None:
        command = "leapformer lra-report " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else ""
        atomic_write_text(args.out, render_report(results, speed, command=command))
        print(f"wrote {args.out}")
    if args.figure is not None:
        from leapformer.tasks.lra.figures import plot_accuracy_throughput

        points, xlabel = figure1_points(results, speed)
        if not points:
            print("leapformer lra-report: error: no mechanism has a run of every task "
                  "(and a speed row); no figure written", file=sys.stderr)
            return 2
        tasks = sorted({r["task"] for r in results})
        plot_accuracy_throughput(points, args.figure, xlabel=xlabel,
                                 title=f"LRA ({', '.join(tasks)}): accuracy vs throughput")
        print(f"wrote {args.figure}")
    return 0


def run_lra_grid(args: argparse.Namespace) -> int:
    import json

    from leapformer.tasks.lra.grid import run_grid

    speed = None
    if args.speed is not None:
        try:
            speed = json.loads(args.speed.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"leapformer lra-grid: error: --speed {args.speed}: {err}", file=sys.stderr)
            return 2
    data_dirs = {}
    for item in args.data_dir or ():
        task, sep, path = item.partition("=")
        if not sep:
            print(f"leapformer lra-grid: error: --data-dir wants TASK=DIR, got {item!r}",
                  file=sys.stderr)
            return 2
        data_dirs[task] = Path(path)
    try:
        res = run_grid(args.tasks, args.mechanisms, args.out, profile=args.profile,
                       seed=args.seed, data_dirs=data_dirs, speed=speed,
                       progress=not args.no_progress,
                       announce=lambda msg: print(f"== {msg}", flush=True))
    except ValueError as err:
        print(f"leapformer lra-grid: error: {err}", file=sys.stderr)
        return 2
    print(res["report"], end="")
    print(f"wrote {args.out / 'report.md'}")
    if res["figure"] is not None:
        print(f"wrote {res['figure']}")
    return 0


def run_heatmap(args: argparse.Namespace) -> int:
    """Figure 3: cosFormer's re-weighting next to a trained model's, on a ListOps example."""
    from leapformer.data.listops import ListOpsTokenizer, generate_listops, read_tsv
    from leapformer.models import ClassifierConfig, SequenceClassifier
    from leapformer.tasks.lra.figures import (
        cosformer_reweighting,
        plot_reweighting,
        reweighting_matrices,
    )

    path = args.checkpoint
    if not path.is_file():
        print(f"leapformer heatmap: error: checkpoint {path} does not exist", file=sys.stderr)
        return 2
    ck = torch.load(path, map_location="cpu", weights_only=False)
    meta = ck.get("meta", {})
    if meta.get("task") != "listops" or "model" not in meta:
        print(f"leapformer heatmap: error: {path} is not a checkpoint of an LRA ListOps run "
              f"(meta task = {meta.get('task')!r})", file=sys.stderr)
        return 2
    model = SequenceClassifier(ClassifierConfig(**meta["model"]))
    model.load_state_dict(ck["model"])
    if args.tsv is not None:
        examples = read_tsv(args.tsv)
        if args.index >= len(examples):
            print(f"leapformer heatmap: error: --index {args.index} but {args.tsv} has "
                  f"{len(examples)} examples", file=sys.stderr)
            return 2
        example = examples[args.index]
    else:
        example = generate_listops(args.index + 1, seed=args.seed, min_len=args.min_len,
                                   max_len=args.max_len)[args.index]
    ids = ListOpsTokenizer().encode(example.source)[:model.cfg.max_length]
    tokens = torch.tensor([ids])
    try:
        mats = reweighting_matrices(model, tokens)
    except ValueError as err:
        print(f"leapformer heatmap: error: {err}", file=sys.stderr)
        return 2
    panels = {f"cosFormer (L = {len(ids)})": cosformer_reweighting(len(ids))}
    for layer, m in enumerate(mats):
        for head in range(m.shape[0]):
            panels[f"{meta.get('attention')} layer {layer + 1} head {head + 1}"] = m[head]
    plot_reweighting(panels, args.out, title=f"re-weighting on a ListOps example "
                     f"({len(ids)} tokens, label {example.label})")
    print(f"wrote {args.out}")
    return 0



def register(commands) -> None:
    lra = commands.add_parser("lra", help="train and evaluate one Long-Range Arena task")
    add_lra_arguments(lra)
    lra.set_defaults(func=run_lra_command)
    report = commands.add_parser("lra-report", help="accuracy table of LRA runs (markdown)")
    report.add_argument("--runs", type=Path, nargs="+", required=True,
                        help="run folders (searched for results.json)")
    report.add_argument("--out", type=Path, help="also write the table to this file")
    report.add_argument("--figure", type=Path, help="write Figure 1 (accuracy vs throughput, "
                        "bubble = memory) to this PNG")
    report.add_argument("--speed", type=Path, help="throughput and memory from this "
                        "lra-speed JSON (default: from the runs)")
    report.set_defaults(func=run_lra_report)
    grid = commands.add_parser("lra-grid", help="train a grid of LRA tasks x mechanisms "
                               "(resumable), then the table and Figure 1")
    grid.add_argument("--tasks", nargs="+", default=["listops"], metavar="TASK")
    grid.add_argument("--mechanisms", nargs="+", required=True, metavar="NAME")
    grid.add_argument("--profile", default="lite", choices=("paper", "lite"))
    grid.add_argument("--seed", type=int, default=0)
    grid.add_argument("--data-dir", nargs="+", metavar="TASK=DIR",
                      help="official files per task (default: generated / embedded data)")
    grid.add_argument("--speed", type=Path, help="Figure 1 throughput and memory from this "
                      "lra-speed JSON (default: from the runs)")
    grid.add_argument("--out", type=Path, required=True, help="grid folder")
    grid.add_argument("--no-progress", action="store_true")
    grid.set_defaults(func=run_lra_grid)
    heat = commands.add_parser("heatmap", help="Figure 3: re-weighting matrices of cosFormer "
                               "and a trained model on a ListOps example (PNG)")
    heat.add_argument("--checkpoint", type=Path, required=True,
                      help="best.pt or last.pt of a 'leapformer lra --task listops' run")
    heat.add_argument("--tsv", type=Path, help="take the example from this ListOps TSV "
                      "(default: generate one)")
    heat.add_argument("--index", type=int, default=0, help="example index (default 0)")
    heat.add_argument("--seed", type=int, default=0, help="seed of the generated example")
    heat.add_argument("--min-len", type=parse_positive, default=30)
    heat.add_argument("--max-len", type=parse_positive, default=200)
    heat.add_argument("--out", type=Path, required=True, help="PNG to write")
    heat.set_defaults(func=run_heatmap)
