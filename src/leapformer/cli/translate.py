"""``leapformer translate train|eval|simul|report``: text translation, offline and wait-k.

Registered on the top-level parser by :func:`add_translate_parser`::

    leapformer translate train --spec enc=leap,dec=leap,cross=leap --waitk 5 --out runs/wk5
    leapformer translate eval  --run runs/wk5 --beam 5 --split test
    leapformer translate simul --run runs/wk5 --waitk 5 --encoder incremental --out runs/wk5/s5
    leapformer translate report --runs runs/ --out docs/results/simul-cpu.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from leapformer.cli._args import (
    add_checkpoint_seconds,
    command_line,
    parse_key_value,
    parse_positive,
    parse_seed,
    print_error,
)

__all__ = ["register", "run_translate_eval_command", "run_translate_report_command",
           "run_translate_simul_command", "run_translate_train_command"]


def _waitk(text: str) -> int | str:
    if text == "multi":
        return text
    try:
        return parse_positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"--waitk must be a positive integer or 'multi', got "
                                         f"{text!r}") from None


def _bar(args, total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=args.no_progress, file=sys.stderr)


def run_translate_train_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.translate import run_translate_train
    from leapformer.train import cleanup, init_distributed

    try:
        dist = init_distributed(args.device)
    except (RuntimeError, ValueError) as err:
        return print_error("translate train", err)
    causal = None if args.causal_encoder is None else args.causal_encoder == "yes"
    try:
        res = run_translate_train(
            args.spec, out=args.out, waitk=args.waitk, data=args.data, src_lang=args.src_lang,
            tgt_lang=args.tgt_lang, preset=args.preset, causal_encoder=causal,
            length_predictor=args.length_predictor, steps=args.steps,
            max_batch_tokens=args.max_batch_tokens, lr=args.lr, schedule=args.schedule,
            warmup_steps=args.warmup_steps, seed=args.seed, resume=args.resume,
            overwrite=args.overwrite, command=command_line(args),
            overrides=dict(args.train_option), model_overrides=dict(args.model_option),
            mechanism_options=dict(args.mechanism_option), device=dist.device, dist=dist,
            progress=not args.no_progress, scale_warmup=True,
            checkpoint_seconds=args.checkpoint_seconds)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        return print_error("translate train", err)
    finally:
        cleanup()
    if dist.is_main:
        best = res["best_valid_loss"]
        print(f"translate / {res['spec']}" + (f", wait-{res['waitk']}" if res["waitk"] else "")
              + f" ({res['preset']}, seed {res['seed']}): " + (f"best validation loss "
              f"{best:.3f} at step {res['best_step']}; " if best is not None else "")
              + f"{res['steps']} steps in {res['train_wall_s']:.0f} s")
        print(f"wrote {Path(args.out) / 'results.json'}")
    return 0


def _sentences(args) -> int:
    from leapformer.tasks.translate.data import load_translation_data
    from leapformer.tasks.translate.run import check_translate_run

    # a folder of another kind is named as such before its files are read
    check_translate_run(args.run, getattr(args, "checkpoint", "best"))
    n = len(load_translation_data(args.run).ids[args.split][0])
    return n if args.max_sentences is None else min(n, args.max_sentences)


def run_translate_eval_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.translate import run_translate_eval

    try:
        with _bar(args, _sentences(args), f"beam {args.beam}", "sent") as bar:
            res = run_translate_eval(args.run, split=args.split, beam=args.beam,
                                     length_penalty=args.length_penalty,
                                     max_len_a=args.max_len_a, max_len_b=args.max_len_b,
                                     max_sentences=args.max_sentences,
                                     batch_size=args.batch_size, checkpoint=args.checkpoint,
                                     length_predictor=args.length_predictor, out=args.out,
                                     device=args.device, progress=bar.update)
    except (ValueError, TypeError, FileNotFoundError) as err:
        return print_error("translate eval", err)
    print(json.dumps(res, indent=2, ensure_ascii=False))
    return 0


def run_translate_simul_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.translate import run_translate_simul

    try:
        with _bar(args, _sentences(args), f"wait-{args.waitk}", "sent") as bar:
            res = run_translate_simul(args.run, k=args.waitk, split=args.split,
                                      encoder=args.encoder, max_sentences=args.max_sentences,
                                      max_len_a=args.max_len_a, max_len_b=args.max_len_b,
                                      source_ms_per_token=args.source_ms_per_token,
                                      checkpoint=args.checkpoint, out=args.out,
                                      device=args.device, batch_size=args.batch_size,
                                      compile_step=not args.no_compile_step,
                                      progress=bar.update)
    except (ValueError, TypeError, FileNotFoundError) as err:
        return print_error("translate simul", err)
    print(json.dumps(res, indent=2, ensure_ascii=False))
    return 0


def run_translate_report_command(args: argparse.Namespace) -> int:
    from leapformer._io import atomic_write_text
    from leapformer.tasks.translate.report import (
        collect_translate_runs,
        render_translate_report,
    )

    try:
        text = render_translate_report(collect_translate_runs(args.runs),
                                       command=command_line(args), notes=args.note)
    except (ValueError, FileNotFoundError) as err:
        return print_error("translate report", err)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(text, end="")
    print(f"wrote {args.out}")
    return 0


def _add_decode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="run folder of 'translate train'")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--max-sentences", type=parse_positive, help="first N sentences only")
    p.add_argument("--max-len-a", type=float, default=1.5, help="max length a * |src| + b")
    p.add_argument("--max-len-b", type=float, default=10)
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(commands) -> argparse.ArgumentParser:
    """Add ``translate`` with ``train``, ``eval``, ``simul`` and ``report`` to ``commands``
    (the top-level ``add_subparsers`` object); returns the ``translate`` parser."""
    from leapformer.models.simul import ENCODER_MODES
    from leapformer.tasks.translate.run import EVAL_LENGTHS, TRANSLATE_PRESETS
    from leapformer.train.schedule import SCHEDULES

    tr = commands.add_parser("translate", help="text translation: train (offline or wait-k), "
                             "offline BLEU, simultaneous BLEU + latency")
    sub = tr.add_subparsers(dest="translate_command", required=True)

    train = sub.add_parser("train", help="train an encoder-decoder (embedded en-ja Bible, or "
                           "--data DIR)")
    train.add_argument("--spec", default="enc=leap,dec=leap,cross=leap",
                       help="mechanism per block, e.g. enc=leap,dec=linear,cross=leap; a block "
                       "not named gets softmax (logged); one name sets all three")
    train.add_argument("--waitk", type=_waitk, help="wait-k training: K or 'multi' "
                       "(default: offline)")
    train.add_argument("--data", type=Path, metavar="DIR", help="folder of {train,valid,test}."
                       "{SRC,TGT} text files (default: embedded en-ja Bible)")
    train.add_argument("--src-lang", default="en")
    train.add_argument("--tgt-lang", default="ja")
    train.add_argument("--preset", default="lite", choices=sorted(TRANSLATE_PRESETS))
    train.add_argument("--causal-encoder", choices=("yes", "no"),
                       help="unidirectional encoder (default: yes with --waitk, else no)")
    train.add_argument("--length-predictor", choices=("ratio", "lookup", "conv"),
                       help="target-length predictor (cosFormer decoder blocks; default ratio "
                       "there, none otherwise)")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument("--steps", type=parse_positive, help="optimisation steps (the preset's "
                       "warm-up is capped at a tenth of them unless --warmup-steps or "
                       "--train-option warmup_steps= is given)")
    train.add_argument("--max-batch-tokens", type=parse_positive, help="padded tokens per batch")
    train.add_argument("--lr", type=float)
    train.add_argument("--schedule", choices=SCHEDULES)
    train.add_argument("--warmup-steps", type=int)
    train.add_argument("--seed", type=parse_seed, default=0, help="random seed, >= 0")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--overwrite", action="store_true", help="replace the run in OUT (and "
                       "its eval-*/simul-* results; the tokenised data is kept)")
    add_checkpoint_seconds(train)
    train.add_argument("--train-option", type=parse_key_value, action="append", default=[],
                       metavar="KEY=VALUE", help="TranslatePreset field, e.g. eval_every=100")
    train.add_argument("--model-option", type=parse_key_value, action="append", default=[],
                       metavar="KEY=VALUE", help="Seq2SeqConfig field, e.g. d_model=128")
    train.add_argument("--mechanism-option", type=parse_key_value, action="append", default=[],
                       metavar="NAME=JSON", help='mechanism options, e.g. leap={"hidden":16}')
    train.add_argument("--device", help="torch device (default: cpu, or cuda:LOCAL_RANK "
                       "under torchrun)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run_translate_train_command)

    ev = sub.add_parser("eval", help="offline beam search on a split: BLEU (sacreBLEU)")
    _add_decode_arguments(ev)
    ev.add_argument("--beam", type=parse_positive, default=5)
    ev.add_argument("--length-penalty", type=float, default=1.0)
    ev.add_argument("--batch-size", type=parse_positive, default=32, help="sentences per batch")
    ev.add_argument("--length-predictor", default="trained", choices=EVAL_LENGTHS,
                    help="target length of a cosFormer decoder: the run's own predictor, a "
                         "ratio/lookup one fitted on the training pairs, or the reference "
                         "length (oracle)")
    ev.add_argument("--out", type=Path, help="output folder (default RUN/eval-SPLIT, "
                                             "RUN/eval-SPLIT-PREDICTOR for another predictor)")
    ev.set_defaults(func=run_translate_eval_command)

    si = sub.add_parser("simul", help="simultaneous wait-k translation: instances.log and "
                        "scores.json (BLEU, AL, LAAL, AP, DAL, computation-aware)")
    _add_decode_arguments(si)
    si.add_argument("--waitk", type=parse_positive, required=True, help="test-time k")
    si.add_argument("--encoder", default="incremental", choices=ENCODER_MODES,
                    help="incremental (causal encoder, extended state) or reencode (baseline)")
    si.add_argument("--batch-size", type=parse_positive, default=1,
                    help="sentences served at once, each with its own wait-k policy and state "
                         "(default 1: one at a time; compute-aware latency then includes the "
                         "batch's shared compute)")
    si.add_argument("--no-compile-step", action="store_true",
                    help="decode with the eager modules (default: the compiled fused decoder "
                         "step, eager where compiling fails)")
    si.add_argument("--source-ms-per-token", type=float, default=300.0,
                    help="source rate for computation-aware latency (ms per token)")
    si.add_argument("--out", type=Path, help="output folder (default "
                    "RUN/simul-SPLIT-kK-ENCODER)")
    si.set_defaults(func=run_translate_simul_command)

    rep = sub.add_parser("report", help="markdown report of translation runs and their "
                         "eval/simul results (training, per-block ablation, BLEU: mean ± "
                         "95%% interval over seeds and a verdict)")
    rep.add_argument("--runs", type=Path, nargs="+", required=True,
                     help="run folders, or folders holding them; runs that differ only in "
                     "seed are grouped")
    rep.add_argument("--note", action="append", default=[],
                     help="extra line for the report's header (repeatable)")
    rep.add_argument("--out", type=Path, required=True, help="markdown file to write")
    rep.set_defaults(func=run_translate_report_command)
    return tr
