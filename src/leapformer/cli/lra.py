"""``leapformer lra``, ``lra-grid``, ``lra-report`` and ``heatmap``: the Long-Range Arena harness."""

from __future__ import annotations

import argparse
from pathlib import Path

from leapformer.cli._args import (
    CommandError,
    add_checkpoint_seconds,
    check_writable,
    command_line,
    parse_index,
    parse_positive,
    parse_seed,
)


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
                        help="run folder: checkpoints, metrics.jsonl, results.json (a folder "
                        "holding a run needs --resume or --overwrite)")
    parser.add_argument("--seed", type=parse_seed, default=0, help="random seed, >= 0 "
                        "(default 0): data generation, initialisation, batch order")
    parser.add_argument("--steps", type=parse_positive, help="override the profile's steps "
                        "(the warm-up is capped at a tenth of them)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt "
                        "(the same task, mechanism, profile, seed and data)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in OUT")
    add_checkpoint_seconds(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--leap-hidden", type=parse_positive, metavar="N",
                        help="LeaP proportion-network hidden size (official LRA default 16, "
                        "the paper profile's; lite: head_dim // 4)")
    parser.add_argument("--cosformer-length", choices=("padded", "item"),
                        help="cosFormer's normaliser L: the padded tensor length (official; "
                        "the paper profile's) or each item's unpadded length (lite)")


def run_lra_command(args: argparse.Namespace) -> int:
    """One LRA run; data-parallel over the processes when started by ``torchrun``."""
    from leapformer.tasks.lra import run_lra
    from leapformer.train import cleanup, init_distributed

    overrides = {k: v for k, v in (("leap_hidden", args.leap_hidden),
                                   ("cosformer_length", args.cosformer_length)) if v is not None}
    dist = init_distributed("cpu")  # the LRA harness trains on the CPU: gloo
    try:
        res = run_lra(args.task, args.attention, profile=args.profile, out=args.out,
                      data_dir=args.data_dir, seed=args.seed, steps=args.steps,
                      resume=args.resume, progress=not args.no_progress, dist=dist,
                      overrides=overrides or None, overwrite=args.overwrite,
                      checkpoint_seconds=args.checkpoint_seconds, command=command_line(args))
    finally:
        cleanup()
    if dist.is_main:
        print(lra_summary(res))
        print(f"wrote {args.out / 'results.json'}")
    return 0


def lra_summary(res: dict) -> str:
    """One or two lines a person reads at the end of a run (the JSON is in results.json)."""
    best = res.get("best_valid_accuracy")
    text = (f"{res['task']} / {res['attention']} ({res['profile']}, seed {res['seed']}): "
            f"test accuracy {100 * res['test_accuracy']:.2f}%"
            + (f", best validation {100 * best:.2f}% at step {res['best_step']}"
               if best is not None else "")
            + f"; {res['steps']} steps in {res['train_wall_s']:.0f} s")
    cut = {k: n for k, n in (res.get("truncated") or {}).items() if n}
    if cut:
        text += (f"\nwarning: inputs cut to max_length {res['profile_settings']['max_length']}"
                 f": {', '.join(f'{k} {n}' for k, n in cut.items())} examples")
    return text


def _read_speed(path: Path | None) -> dict | None:
    """The ``--speed`` JSON (an ``lra-speed`` result), or None."""
    import json

    if path is None:
        return None
    try:
        speed = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CommandError(f"--speed {path}: {getattr(err, 'strerror', None) or err}") from None
    if not isinstance(speed, dict):
        raise CommandError(f"--speed {path}: expected a JSON object (an lra-speed result)")
    return speed


def run_lra_report(args: argparse.Namespace) -> int:
    from leapformer._io import atomic_write_text
    from leapformer.tasks.lra.report import (
        collect,
        figure1_points,
        group_cells,
        render_report,
        render_table,
    )

    if args.curves_figure is not None and args.curves is None:
        raise CommandError("--curves-figure needs --curves TASK")
    for path, option in ((args.out, "--out"), (args.figure, "--figure"),
                         (args.curves_figure, "--curves-figure")):
        if path is not None:
            check_writable(path, option)
    speed = _read_speed(args.speed)
    results = collect(args.runs)
    points = xlabel = None
    if args.figure is not None:
        points, xlabel = figure1_points(results, speed)
        if not points:
            raise CommandError("--figure: no mechanism has a run of every task (and a speed "
                               "row); nothing written")
    if args.paired is not None:
        labels = sorted({label for label, _ in group_cells(results)})
        if args.paired not in labels:
            raise CommandError(f"--paired must name a mechanism of the runs "
                               f"({', '.join(labels)}), got {args.paired!r}")
    curves = curve_lines = None
    if args.curves is not None:
        from leapformer.tasks.lra.curves import learning_curves, render_curves

        curves = learning_curves(results, args.curves)
        curve_lines = render_curves(curves, args.curves)
    table = render_table(results, args.paired)
    print(table, end="")
    if curve_lines and args.out is None:
        print("\n" + "\n".join(curve_lines), end="")
    if args.out is not None:
        atomic_write_text(args.out, render_report(results, speed, command=command_line(args),
                                                  paired=args.paired, curves=curve_lines))
        print(f"wrote {args.out}")
    if args.curves_figure is not None:
        from leapformer.tasks.lra.curves import plot_curves

        plot_curves(curves, args.curves_figure, task=args.curves)
        print(f"wrote {args.curves_figure}")
    if args.figure is not None:
        from leapformer.tasks.lra.figures import plot_accuracy_throughput

        tasks = sorted({r["task"] for r in results})
        plot_accuracy_throughput(points, args.figure, xlabel=xlabel,
                                 title=f"LRA ({', '.join(tasks)}): accuracy vs throughput")
        print(f"wrote {args.figure}")
    return 0


def run_lra_grid(args: argparse.Namespace) -> int:
    from leapformer.tasks.lra.grid import run_grid

    speed = _read_speed(args.speed)
    data_dirs = {}
    for item in args.data_dir or ():
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise CommandError(f"--data-dir wants TASK=DIR, got {item!r}")
        data_dirs[task] = Path(path)
    res = run_grid(args.tasks, args.mechanisms, args.out, profile=args.profile,
                   seed=args.seed, data_dirs=data_dirs, speed=speed, steps=args.steps,
                   overwrite=args.overwrite, progress=not args.no_progress,
                   command=command_line(args),
                   announce=lambda msg: print(f"== {msg}", flush=True))
    print(res["report"], end="")
    print(f"wrote {args.out / 'report.md'}")
    if res["figure"] is not None:
        print(f"wrote {res['figure']}")
    return 0


def run_heatmap(args: argparse.Namespace) -> int:
    """Figure 3: cosFormer's re-weighting next to a trained model's, on a ListOps example."""
    import torch

    from leapformer.data.listops import ListOpsTokenizer, generate_listops, read_tsv
    from leapformer.models import ClassifierConfig, SequenceClassifier
    from leapformer.tasks.lra.figures import (
        cosformer_reweighting,
        plot_reweighting,
        reweighting_matrices,
    )
    from leapformer.train import load_checkpoint

    path = args.checkpoint
    if not path.is_file():
        raise CommandError(f"checkpoint {path} does not exist")
    check_writable(args.out, "--out")
    ck = load_checkpoint(path)
    meta = ck.get("meta", {})
    if meta.get("task") != "listops" or "model" not in meta:
        raise CommandError(f"{path} is not a checkpoint of an LRA ListOps run "
                           f"(meta task = {meta.get('task')!r})")
    model = SequenceClassifier(ClassifierConfig(**meta["model"]))
    model.load_state_dict(ck["model"])
    if args.tsv is not None:
        examples = read_tsv(args.tsv)
        if args.index >= len(examples):
            raise CommandError(f"--index {args.index} but {args.tsv} has {len(examples)} "
                               "examples")
        example = examples[args.index]
    else:
        example = generate_listops(args.index + 1, seed=args.seed, min_len=args.min_len,
                                   max_len=args.max_len)[args.index]
    ids = ListOpsTokenizer().encode(example.source)[:model.cfg.max_length]
    mats = reweighting_matrices(model, torch.tensor([ids]))
    panels = {f"cosFormer (L = {len(ids)})": cosformer_reweighting(len(ids))}
    for layer, m in enumerate(mats):
        for head in range(m.shape[0]):
            panels[f"{meta.get('attention')} layer {layer + 1} head {head + 1}"] = m[head]
    plot_reweighting(panels, args.out, title=f"re-weighting on a ListOps example "
                     f"({len(ids)} tokens, label {example.label})")
    print(f"wrote {args.out}")
    return 0



def register(commands) -> None:
    from leapformer.tasks.lra import TASKS

    lra = commands.add_parser("lra", help="train and evaluate one Long-Range Arena task")
    add_lra_arguments(lra)
    lra.set_defaults(func=run_lra_command)
    report = commands.add_parser("lra-report", help="accuracy table of LRA runs (markdown): "
                                 "mean ± 95%% interval over seeds (a single run: bootstrap "
                                 "over test examples) and a verdict")
    report.add_argument("--runs", type=Path, nargs="+", required=True,
                        help="run folders (searched for results.json); runs that differ "
                        "only in seed are grouped")
    report.add_argument("--out", type=Path, help="also write the table to this file")
    report.add_argument("--figure", type=Path, help="write Figure 1 (accuracy vs throughput, "
                        "bubble = memory) to this PNG")
    report.add_argument("--speed", type=Path, help="throughput and memory from this "
                        "lra-speed JSON (default: from the runs)")
    report.add_argument("--paired", metavar="MECHANISM",
                        help="also compare this mechanism with every other one seed by seed "
                        "(mean difference ± 95%% t interval, wins, sign test)")
    report.add_argument("--curves", metavar="TASK", choices=TASKS,
                        help="add this task's learning curves (training loss, validation "
                        "accuracy per step, mean over seeds) to the report (--out, or the "
                        "printed table)")
    report.add_argument("--curves-figure", type=Path, metavar="PNG",
                        help="and draw them to this PNG")
    report.set_defaults(func=run_lra_report)
    grid = commands.add_parser("lra-grid", help="train a grid of LRA tasks x mechanisms "
                               "(resumable), then the table and Figure 1")
    grid.add_argument("--tasks", nargs="+", default=["listops"], metavar="TASK",
                      help="LRA tasks, e.g. listops text (default listops)")
    grid.add_argument("--mechanisms", nargs="+", required=True, metavar="NAME",
                      help="attention mechanisms, e.g. softmax linear cosformer leap")
    grid.add_argument("--profile", default="lite", choices=("paper", "lite"),
                      help="paper = published settings; lite = 2-core CPU in minutes "
                      "(default lite)")
    grid.add_argument("--steps", type=parse_positive, metavar="N",
                      help="training steps of every pair (default: the profile's; a quick "
                      "grid: e.g. 50)")
    grid.add_argument("--seed", type=parse_seed, default=0, help="random seed of every pair, "
                      ">= 0 (default 0)")
    grid.add_argument("--data-dir", nargs="+", metavar="TASK=DIR",
                      help="official files per task (default: generated / embedded data)")
    grid.add_argument("--speed", type=Path, help="Figure 1 throughput and memory from this "
                      "lra-speed JSON (default: from the runs)")
    grid.add_argument("--out", type=Path, required=True,
                      help="grid folder: one run folder per pair (OUT/TASK-MECHANISM), "
                      "report.md, figure1.png; run the same command again to continue")
    grid.add_argument("--overwrite", action="store_true",
                      help="retrain every pair from scratch (default: skip finished pairs, "
                      "resume unfinished ones)")
    grid.add_argument("--no-progress", action="store_true", help="no progress bars")
    grid.set_defaults(func=run_lra_grid)
    heat = commands.add_parser("heatmap", help="Figure 3: re-weighting matrices of cosFormer "
                               "and a trained model on a ListOps example (PNG)")
    heat.add_argument("--checkpoint", type=Path, required=True,
                      help="best.pt or last.pt of a 'leapformer lra --task listops' run")
    heat.add_argument("--tsv", type=Path, help="take the example from this ListOps TSV "
                      "(default: generate one)")
    heat.add_argument("--index", type=parse_index, default=0, help="example index, >= 0 "
                      "(default 0)")
    heat.add_argument("--seed", type=parse_seed, default=0, help="seed of the generated example")
    heat.add_argument("--min-len", type=parse_positive, default=30)
    heat.add_argument("--max-len", type=parse_positive, default=200)
    heat.add_argument("--out", type=Path, required=True, help="PNG to write")
    heat.set_defaults(func=run_heatmap)
