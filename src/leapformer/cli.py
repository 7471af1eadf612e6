"""Command line: ``leapformer bench ops [--quick] [--out-dir DIR] [--lengths ...]``,
``leapformer bench decode [--quick] [--out-dir DIR] [--positions ...] [--batches ...]`` and
``leapformer data listops --n N --seed S --min-len A --max-len B --out FILE.tsv`` and
``leapformer lm train|eval|generate`` (see docs/lm.md)."""

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


def invocation() -> str:
    """The command line that started this process, for results files."""
    import os
    import shlex

    prog = Path(sys.argv[0]).name
    prog = prog if prog == "leapformer" else f"python {os.path.relpath(sys.argv[0])}"
    return " ".join([prog, *map(shlex.quote, sys.argv[1:])])


def parse_positive(text: str) -> int:
    """A positive integer (batch size, repetitions, threads)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {n}")
    return n


def _add_bench_common(parser: argparse.ArgumentParser, name: str, quick_help: str,
                      out_dir_default) -> None:
    """Options every benchmark command has."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out-dir", type=Path, default=out_dir_default,
                        help=f"write {name}-<device>[-quick].md/.json here"
                        + ("" if out_dir_default is None else f" (default {out_dir_default})"))
    parser.add_argument("--threads", type=parse_positive,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_bench_ops_arguments(parser: argparse.ArgumentParser, *, out_dir_default=None) -> None:
    """Options shared by ``leapformer bench ops`` and ``benchmarks/ops.py``."""
    _add_bench_common(parser, "ops", "lengths 1k/2k and few repetitions (under a minute)",
                      out_dir_default)
    parser.add_argument("--lengths", type=parse_length, nargs="+", metavar="N",
                        help="sequence lengths (default 1k 4k 16k; quick 1k 2k)")
    parser.add_argument("--positions", type=parse_length, nargs="+", metavar="P",
                        help="decode positions (default 128 and the largest length)")
    parser.add_argument("--reps", type=parse_positive, metavar="R",
                        help="fixed repetitions per measurement (default: adaptive)")


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

    _add_bench_common(parser, "decode", "positions 128/1k, batch 1, few repetitions "
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


def add_bench_lra_speed_arguments(parser: argparse.ArgumentParser, *,
                                  out_dir_default=None) -> None:
    """Options shared by ``leapformer bench lra-speed`` and ``benchmarks/lra_speed.py``."""
    from leapformer.bench.lra_speed import MECHANISMS

    _add_bench_common(parser, "lra-speed", "length 1k, batch 2, one round (about a minute)",
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
        print(f"leapformer bench lra-speed: error: {err}", file=sys.stderr)
        return 2
    with tqdm(total=cfg.rounds * len(cfg.modes), desc="bench lra-speed", unit="round",
              disable=args.no_progress, file=sys.stderr) as bar:
        result = run_lra_speed(cfg, progress=lambda msg: bar.update(1))
    command = invocation()
    print(render_markdown(result, command))
    if args.out_dir is not None:
        stem = f"lra-speed-{torch.device(args.device).type}" + ("-quick" if args.quick else "")
        for path in write_results(result, args.out_dir, command, stem=stem):
            print(f"wrote {path}")
    return 0


def add_data_listops_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``leapformer data listops``."""
    from leapformer.data.listops import LRA_MAX_LEN, LRA_MIN_LEN

    parser.add_argument("--n", type=parse_positive, required=True, help="number of examples")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument("--min-len", type=parse_positive, default=LRA_MIN_LEN,
                        help=f"shortest length, inclusive, in operator/digit/']' tokens "
                        f"(default {LRA_MIN_LEN}: LRA keeps 500 < length < 2000)")
    parser.add_argument("--max-len", type=parse_positive, default=LRA_MAX_LEN,
                        help=f"longest length, inclusive (default {LRA_MAX_LEN})")
    parser.add_argument("--max-depth", type=parse_positive, default=10,
                        help="tree levels at most, root = 1 (default 10)")
    parser.add_argument("--max-args", type=parse_positive, default=10,
                        help="arguments per operator at most, at least 2 (default 10)")
    parser.add_argument("--p-operator", type=float, default=0.25,
                        help="probability that a node above the last level is an operator "
                        "(default 0.25)")
    parser.add_argument("--out", type=Path, required=True, help="TSV file to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_data_listops(args: argparse.Namespace) -> int:
    """Generate ListOps examples, write the TSV file, print a one-line summary."""
    from collections import Counter

    from tqdm import tqdm

    from leapformer.data.listops import generate_listops, write_tsv

    with tqdm(total=args.n, desc="listops", unit="ex", disable=args.no_progress,
              file=sys.stderr) as bar:
        try:
            examples = generate_listops(
                args.n, seed=args.seed, min_len=args.min_len, max_len=args.max_len,
                max_depth=args.max_depth, max_args=args.max_args, p_operator=args.p_operator,
                progress=bar.update)
        except ValueError as err:
            bar.close()
            print(f"leapformer data listops: error: {err}", file=sys.stderr)
            return 2
    path = write_tsv(examples, args.out)
    lengths = [ex.length for ex in examples]
    labels = Counter(ex.label for ex in examples)
    histogram = " ".join(f"{d}:{labels[d]}" for d in range(10))
    print(f"wrote {len(examples)} examples to {path}: length mean "
          f"{sum(lengths) / len(lengths):.1f} min {min(lengths)} max {max(lengths)}; "
          f"labels {histogram}")
    return 0


def run_data_pathfinder(args: argparse.Namespace) -> int:
    from leapformer.data.pathfinder import generate_pathfinder, save_pathfinder_dir

    images, labels = generate_pathfinder(args.n, seed=args.seed)
    save_pathfinder_dir(images, labels, args.out, overwrite=args.overwrite)
    print(f"wrote {len(labels)} images ({int(labels.sum())} connected) to {args.out} "
          "in the official LRA pathfinder32 layout")
    return 0


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
    from leapformer.tasks.lra_report import (
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
        from leapformer.tasks.lra_figures import plot_accuracy_throughput

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

    from leapformer.tasks.lra_grid import run_grid

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
    from leapformer.tasks.lra_figures import (
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


def parse_key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)``; VALUE read as JSON when it parses
    (``4``, ``0.1``, ``true``, ``null``), else kept as a string."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_lm_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``leapformer lm train``."""
    from leapformer.tasks.lm import LM_TRAIN_PRESETS
    from leapformer.train.schedule import SCHEDULES

    parser.add_argument("--attention", required=True,
                        help="causal self-attention mechanism (softmax, linear, elu, cosformer, "
                        "leap, performer, ...)")
    parser.add_argument("--preset", default="lite", choices=sorted(LM_TRAIN_PRESETS),
                        help="model sizes and training settings (default lite)")
    parser.add_argument("--corpus", choices=("bible", "wikitext"),
                        help="bible: the embedded Bible corpus with BPE (default); wikitext: "
                        "needs --data")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="WikiText folder (wiki.{train,valid,test}.tokens): word-level LM")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder: tokenizer, tokens, checkpoints, metrics.jsonl, "
                        "config.json, results.json")
    parser.add_argument("--steps", type=parse_positive, help="optimisation steps")
    parser.add_argument("--context", type=parse_length, help="tokens per training sample")
    parser.add_argument("--batch-size", type=parse_positive, help="samples per micro-batch "
                        "(the global batch under torchrun)")
    parser.add_argument("--grad-accum", type=parse_positive, help="micro-batches per step")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--schedule", choices=SCHEDULES)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--optimizer", choices=("adamw", "nag"))
    parser.add_argument("--amp", action="store_true", default=None,
                        help="bfloat16 autocast")
    parser.add_argument("--eval-every", type=int, help="validate every N steps (0: at the end)")
    parser.add_argument("--valid-tokens", type=parse_positive,
                        help="validate during training on the first N validation tokens")
    parser.add_argument("--eval-window", type=parse_length,
                        help="final evaluation: tokens read per window (default: --context)")
    parser.add_argument("--eval-stride", type=parse_positive,
                        help="final evaluation: tokens scored per window (default: half the "
                        "window; 1 = fairseq --context-window window-1)")
    parser.add_argument("--bpe-vocab", type=parse_positive, help="BPE vocabulary size (Bible)")
    parser.add_argument("--mechanism-option", type=parse_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="attention option, e.g. step_down=4 (repeatable)")
    parser.add_argument("--model-option", type=parse_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="LMConfig field, e.g. num_layers=2 d_model=64 "
                        "(repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK if available, "
                        "else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _lm_error(command: str, err: Exception) -> int:
    print(f"leapformer lm {command}: error: {err}", file=sys.stderr)
    return 2


def run_lm_train_command(args: argparse.Namespace) -> int:
    """One LM run; data-parallel over the processes when started by ``torchrun``."""
    import json

    from leapformer.tasks.lm import run_lm_train
    from leapformer.train import cleanup, init_distributed

    if args.corpus == "wikitext" and args.data is None:
        return _lm_error("train", ValueError("--corpus wikitext needs --data DIR"))
    if args.corpus == "bible" and args.data is not None:
        return _lm_error("train", ValueError("--data is a WikiText folder; it cannot be "
                                             "combined with --corpus bible"))
    overrides = {k: getattr(args, k) for k in ("eval_every", "valid_tokens", "eval_window",
                                               "eval_stride", "bpe_vocab")
                 if getattr(args, k) is not None}
    try:
        dist = init_distributed(args.device)
    except (RuntimeError, ValueError) as err:
        return _lm_error("train", err)
    try:
        res = run_lm_train(
            args.attention, out=args.out, preset=args.preset, data=args.data, steps=args.steps,
            context=args.context, batch_size=args.batch_size, lr=args.lr,
            schedule=args.schedule, optimizer=args.optimizer, grad_accum=args.grad_accum,
            warmup_steps=args.warmup_steps, amp=args.amp, seed=args.seed, resume=args.resume,
            overrides=overrides, model_overrides=dict(args.model_option),
            mechanism_options=dict(args.mechanism_option), device=dist.device, dist=dist,
            progress=not args.no_progress)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        return _lm_error("train", err)
    finally:
        cleanup()
    if dist.is_main:
        print(json.dumps({k: v for k, v in res.items() if k != "config"}, indent=2))
        print(f"wrote {args.out / 'results.json'}")
    return 0


def run_lm_eval_command(args: argparse.Namespace) -> int:
    """Perplexity of a trained run on one split (fairseq eval-lm --context-window)."""
    import json

    from tqdm import tqdm

    from leapformer.tasks.lm import LMTrainPreset, load_data, load_lm_run
    from leapformer.tasks.lm_eval import evaluate_perplexity

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, tok, config = load_lm_run(args.run, checkpoint=args.checkpoint, device=device)
        _, ids, info = load_data(args.run)
        train = LMTrainPreset(**config["train"])
        window, stride = train.windows(config["model"]["context_length"])
        window = args.window or window
        stride = args.stride or min(stride, window)
        n_windows = -(-len(ids[args.split]) // stride)
        with tqdm(total=n_windows, desc=f"eval {args.split}", unit="window",
                  disable=args.no_progress, file=sys.stderr) as bar:
            res = evaluate_perplexity(model, ids[args.split], window=window, stride=stride,
                                      batch_size=args.batch_size, bos=tok.eos_id,
                                      words=info["splits"][args.split]["words"],
                                      cosformer_length=args.cosformer_length,
                                      progress=bar.update)
    except (ValueError, TypeError, FileNotFoundError) as err:
        return _lm_error("eval", err)
    res = {"run": str(args.run), "split": args.split, "checkpoint": args.checkpoint,
           "attention": config["attention"], "cosformer_length": args.cosformer_length, **res}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out is not None:
        from leapformer._io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
        print(f"wrote {args.out}")
    return 0


GENERATE_STRATEGIES = ("greedy", "sample", "top-k", "top-p")


def run_lm_generate_command(args: argparse.Namespace) -> int:
    """Continue prompts with a trained run (batched, left-padded, through the cache)."""
    from leapformer.models import generate
    from leapformer.tasks.lm import load_lm_run

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    top_k, top_p = args.top_k, args.top_p
    if args.strategy == "top-k" and top_k is None:
        top_k = 50
    if args.strategy == "top-p" and top_p is None:
        top_p = 0.9
    cos_len = args.cosformer_length
    try:
        cos_len = int(cos_len)
    except ValueError:
        pass
    try:
        model, tok, _ = load_lm_run(args.run, checkpoint=args.checkpoint, device=device)
        prompts = [tok.encode(p) or [tok.eos_id] for p in args.prompt]
        outs = generate(model, prompts, args.max_new_tokens,
                        strategy="greedy" if args.strategy == "greedy" else "sample",
                        temperature=args.temperature, top_k=top_k, top_p=top_p,
                        eos_id=tok.eos_id if args.stop_at_eos else None, pad_id=tok.pad_id,
                        seed=args.seed, cosformer_length=cos_len)
    except (ValueError, TypeError, FileNotFoundError) as err:
        return _lm_error("generate", err)
    for k, (prompt, new) in enumerate(zip(prompts, outs, strict=True)):
        if k:
            print("-" * 40)
        print(tok.decode(prompt + new))
    return 0


def add_lm_bench_arguments(parser: argparse.ArgumentParser, *, out_dir_default=None) -> None:
    """Options shared by ``leapformer lm bench`` and ``benchmarks/lm_speed.py``."""
    from leapformer.bench.lm_speed import MECHANISMS

    _add_bench_common(parser, "lm-speed", "contexts 128/512 at 1k tokens per step, positions "
                      "128/1k, one round (a few minutes)", out_dir_default)
    parser.add_argument("--contexts", type=parse_length, nargs="+", metavar="N",
                        help="training contexts (default 512 2k)")
    parser.add_argument("--tokens-per-step", type=parse_length, metavar="T",
                        help="training tokens per step; batch = T / context (default 8k)")
    parser.add_argument("--positions", type=parse_length, nargs="+", metavar="P",
                        help="generation positions (default 128 4k 16k)")
    parser.add_argument("--mechanisms", nargs="+", metavar="NAME",
                        help=f"mechanisms (default: {' '.join(MECHANISMS)}; softmax is the "
                        "baseline of the ratios)")
    parser.add_argument("--modes", nargs="+", choices=("train", "generate"),
                        help="what to measure (default both)")
    parser.add_argument("--rounds", type=parse_positive, metavar="N",
                        help="interleaved passes, samples pooled (default 3; quick 1)")
    parser.add_argument("--model-option", type=parse_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="LMConfig field overriding the lite preset")


def run_lm_bench(args: argparse.Namespace) -> int:
    """LM training throughput / memory and generation latency per mechanism."""
    from tqdm import tqdm

    from leapformer.bench.lm_speed import (
        LMSpeedConfig,
        render_markdown,
        run_lm_speed,
        write_results,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"device": args.device, "model_overrides": dict(args.model_option)}
    for name in ("contexts", "tokens_per_step", "positions", "mechanisms", "modes", "rounds"):
        if getattr(args, name):
            value = getattr(args, name)
            overrides[name] = tuple(value) if isinstance(value, list) else value
    try:
        cfg = LMSpeedConfig.quick(**overrides) if args.quick else LMSpeedConfig(**overrides)
    except ValueError as err:
        print(f"leapformer lm bench: error: {err}", file=sys.stderr)
        return 2
    total = (len(cfg.contexts) if "train" in cfg.modes else 0) + \
        (len(cfg.positions) if "generate" in cfg.modes else 0)
    with tqdm(total=total, desc="lm bench", unit="group", disable=args.no_progress,
              file=sys.stderr) as bar:
        result = run_lm_speed(cfg, progress=lambda msg: bar.update(1))
    command = invocation()
    print(render_markdown(result, command))
    if args.out_dir is not None:
        stem = f"lm-speed-{torch.device(args.device).type}" + ("-quick" if args.quick else "")
        for path in write_results(result, args.out_dir, command, stem=stem):
            print(f"wrote {path}")
    return 0


def run_lm_report_command(args: argparse.Namespace) -> int:
    """Markdown report of LM runs, extra evaluations and a speed result."""
    from leapformer._io import atomic_write_text
    from leapformer.tasks.lm_report import (
        collect_lm_results,
        load_evals,
        load_speed,
        render_lm_report,
    )

    try:
        results = collect_lm_results(args.runs)
        evals = load_evals(args.evals)
        speed = load_speed(args.speed) if args.speed is not None else None
        text = render_lm_report(results, evals, speed, command=invocation())
    except (ValueError, FileNotFoundError) as err:
        return _lm_error("report", err)
    atomic_write_text(args.out, text)
    print(text, end="")
    print(f"wrote {args.out}")
    return 0


def add_lm_commands(commands) -> None:
    """``leapformer lm train|eval|generate``."""
    lm = commands.add_parser("lm", help="causal language model: train, evaluate perplexity, "
                             "generate")
    sub = lm.add_subparsers(dest="lm_command", required=True)
    train = sub.add_parser("train", help="train a causal LM (Bible BPE by default, or "
                           "WikiText with --data)")
    add_lm_train_arguments(train)
    train.set_defaults(func=run_lm_train_command)

    ev = sub.add_parser("eval", help="perplexity of a run on a split (fairseq eval-lm "
                        "--context-window semantics)")
    ev.add_argument("--run", type=Path, required=True, help="run folder of 'lm train'")
    ev.add_argument("--split", default="test", choices=("valid", "test"))
    ev.add_argument("--window", type=parse_length, help="tokens read per window "
                    "(default: the run's eval window)")
    ev.add_argument("--stride", type=parse_positive, help="tokens scored per window "
                    "(default: the run's eval stride; 1 = every token with a full window)")
    ev.add_argument("--batch-size", type=parse_positive, default=8, help="windows per batch")
    ev.add_argument("--checkpoint", default="best", choices=("best", "last"))
    ev.add_argument("--cosformer-length", default="window", choices=("window", "train",
                                                                      "stepping"),
                    help="cosFormer's L: each window's length (default), the training "
                    "context, or the current position (stepping)")
    ev.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    ev.add_argument("--out", type=Path, help="also write the JSON result here")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=run_lm_eval_command)

    gen = sub.add_parser("generate", help="continue prompts with a run's model")
    gen.add_argument("--run", type=Path, required=True, help="run folder of 'lm train'")
    gen.add_argument("--prompt", action="append", required=True,
                     help="prompt text (repeatable: one batch, left-padded)")
    gen.add_argument("--max-new-tokens", type=int, default=50)
    gen.add_argument("--strategy", default="greedy", choices=GENERATE_STRATEGIES,
                     help="greedy; sample (temperature only); top-k; top-p (nucleus)")
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, help="keep the k likeliest tokens (top-k default 50)")
    gen.add_argument("--top-p", type=float, help="nucleus mass (top-p default 0.9)")
    gen.add_argument("--seed", type=int, help="sampling seed")
    gen.add_argument("--cosformer-length", default="train",
                     help="cosFormer's L while generating: train (the training context, "
                     "fixed), stepping (L = current length), or an int")
    gen.add_argument("--stop-at-eos", action="store_true", help="stop a prompt at </s> "
                     "(a line break)")
    gen.add_argument("--checkpoint", default="best", choices=("best", "last"))
    gen.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    gen.set_defaults(func=run_lm_generate_command)

    bench = sub.add_parser("bench", help="LM speed: training tokens/s and memory per context, "
                           "generation ms/token per position, per mechanism")
    add_lm_bench_arguments(bench)
    bench.set_defaults(func=run_lm_bench)

    rep = sub.add_parser("report", help="markdown report of LM runs (perplexity table, extra "
                         "evaluations, speed, targets)")
    rep.add_argument("--runs", type=Path, nargs="+", required=True,
                     help="run folders of 'lm train' (searched for results.json)")
    rep.add_argument("--evals", type=Path, nargs="+", default=[], metavar="FILE.json",
                     help="JSON results of 'lm eval --out' (e.g. cosFormer with "
                     "--cosformer-length train/stepping)")
    rep.add_argument("--speed", type=Path, help="JSON of 'lm bench' / benchmarks/lm_speed.py")
    rep.add_argument("--out", type=Path, required=True, help="the markdown file to write")
    rep.set_defaults(func=run_lm_report_command)


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
    lra_speed = targets.add_parser("lra-speed", help="LRA classifier at 4k: training and "
                                   "inference throughput and memory per mechanism")
    add_bench_lra_speed_arguments(lra_speed)
    lra_speed.set_defaults(func=run_bench_lra_speed)
    data = commands.add_parser("data", help="generate task data")
    datasets = data.add_subparsers(dest="dataset", required=True)
    listops = datasets.add_parser("listops", help="LRA ListOps examples as an official TSV file")
    add_data_listops_arguments(listops)
    listops.set_defaults(func=run_data_listops)
    pathfinder = datasets.add_parser("pathfinder", help="Pathfinder-32 images in the official "
                                     "LRA folder layout")
    pathfinder.add_argument("--n", type=parse_positive, required=True, help="number of images")
    pathfinder.add_argument("--seed", type=int, default=0)
    pathfinder.add_argument("--out", type=Path, required=True, help="release root folder")
    pathfinder.add_argument("--overwrite", action="store_true")
    pathfinder.set_defaults(func=run_data_pathfinder)
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
    add_lm_commands(commands)
    from leapformer.cli_translate import add_translate_parser

    add_translate_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
