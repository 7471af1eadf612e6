"""``leapformer st train|eval|simul``: ASR and speech translation, offline and wait-k.

Registered on the top-level parser by :func:`register`::

    leapformer st train --task asr --data data/spoken-bible --out runs/asr
    leapformer st train --task st --data data/spoken-bible --init-from runs/asr \\
        --waitk 5 --ratio 7 --out runs/st-wk5
    leapformer st eval  --run runs/st-wk5 --beam 5 --split test
    leapformer st simul --run runs/st-wk5 --waitk 5 --encoder incremental
    leapformer st report --runs runs/asr-* --paired asr-leap --out st.md
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
)

__all__ = ["register", "run_st_eval_command", "run_st_report_command", "run_st_simul_command",
           "run_st_train_command"]


def _bar(args, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="utt", disable=args.no_progress, file=sys.stderr)


def run_st_train_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.st import run_st_train

    causal = None if args.causal_encoder is None else args.causal_encoder == "yes"
    res = run_st_train(
        args.spec, out=args.out, data=args.data, task=args.task, tgt_lang=args.tgt_lang,
        waitk=args.waitk, ratio=args.ratio, preset=args.preset, init_from=args.init_from,
        causal_encoder=causal, length_predictor=args.length_predictor,
        specaugment=args.specaugment, steps=args.steps,
        max_batch_frames=args.max_batch_frames, lr=args.lr, warmup_steps=args.warmup_steps,
        seed=args.seed, resume=args.resume, overwrite=args.overwrite,
        overrides=dict(args.train_option), model_overrides=dict(args.model_option),
        device=args.device, progress=not args.no_progress, command=command_line(args),
        checkpoint_seconds=args.checkpoint_seconds)
    best = res["best_valid_loss"]
    print(f"st {res['task']} / {res['spec']}" + (f", wait-{res['waitk']}x{res['ratio']}"
          if res["waitk"] else "") + ": " + (f"best validation loss {best:.3f} at step "
          f"{res['best_step']}; " if best is not None else "")
          + f"{res['steps']} steps in {res['train_wall_s']:.0f} s")
    print(f"wrote {Path(args.out) / 'results.json'}")
    return 0


def _utterances(args) -> int:
    from leapformer.tasks.st.data import load_st_data
    from leapformer.tasks.st.evaluate import simul_groups

    n = len(load_st_data(args.run).items[args.split])
    if getattr(args, "concat", 1) > 1:
        n = len(simul_groups(n, args.concat))
    return n if args.max_utterances is None else min(n, args.max_utterances)


def _summary(res: dict) -> dict:
    """``res`` without its per-utterance lists (they stay in results.json)."""
    return {k: v for k, v in res.items() if not k.endswith("_per_utterance")}


def run_st_eval_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.st import run_st_eval

    with _bar(args, _utterances(args), f"beam {args.beam}") as bar:
        res = run_st_eval(args.run, split=args.split, beam=args.beam,
                          length_penalty=args.length_penalty, max_len_a=args.max_len_a,
                          max_len_b=args.max_len_b, max_utterances=args.max_utterances,
                          batch_size=args.batch_size, checkpoint=args.checkpoint,
                          out=args.out, device=args.device, progress=bar.update)
    print(json.dumps(_summary(res), indent=2, ensure_ascii=False))
    return 0


def run_st_simul_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.st import run_st_simul

    with _bar(args, _utterances(args), f"wait-{args.waitk}") as bar:
        res = run_st_simul(args.run, k=args.waitk, ratio=args.ratio, split=args.split,
                           encoder=args.encoder, segment_ms=args.segment_ms,
                           max_utterances=args.max_utterances, max_len_a=args.max_len_a,
                           max_len_b=args.max_len_b, checkpoint=args.checkpoint,
                           concat=args.concat, out=args.out, device=args.device,
                           compile_step=not args.no_compile_step, progress=bar.update)
    print(json.dumps(_summary(res), indent=2, ensure_ascii=False))
    return 0


def run_st_report_command(args: argparse.Namespace) -> int:
    from leapformer._io import atomic_write_text
    from leapformer.tasks.st.report import collect_st_evals, render_st_report

    evals = collect_st_evals(args.runs)
    text = render_st_report(evals, command=command_line(args), paired=args.paired,
                            notes=args.note)
    atomic_write_text(args.out, text)
    print(f"st report: {len(evals)} evaluations; wrote {args.out}")
    return 0


def _add_decode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="run folder of 'st train'")
    p.add_argument("--split", default="test", choices=("train", "dev", "test"))
    p.add_argument("--max-utterances", type=parse_positive, help="first N utterances only")
    p.add_argument("--max-len-a", type=float, default=0.5,
                   help="max length a * encoder states + b")
    p.add_argument("--max-len-b", type=float, default=10)
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(commands) -> argparse.ArgumentParser:
    """Add ``st`` with ``train``, ``eval`` and ``simul`` to ``commands`` (the top-level
    ``add_subparsers`` object); returns the ``st`` parser."""
    from leapformer.models.simul import ENCODER_MODES
    from leapformer.tasks.st.data import TASKS
    from leapformer.tasks.st.run import ST_PRESETS

    st = commands.add_parser("st", help="speech: ASR pre-training, speech translation (offline "
                             "or wait-k on pre-decision chunks), WER/BLEU, simultaneous latency")
    sub = st.add_subparsers(dest="st_command", required=True)

    train = sub.add_parser("train", help="train a speech encoder-decoder on manifests")
    train.add_argument("--task", default="st", choices=TASKS,
                       help="asr (speech -> transcript) or st (speech -> translation)")
    train.add_argument("--data", type=Path, required=True, metavar="DIR",
                       help="folder of {train,dev,test}_{asr,st}.tsv (leapformer data "
                       "spoken-bible)")
    train.add_argument("--tgt-lang", default="ja", help="target language of --task st (BLEU "
                       "tokenizer)")
    train.add_argument("--spec", default="enc=leap,dec=leap,cross=leap",
                       help="mechanism per block, e.g. enc=leap,dec=linear,cross=leap")
    train.add_argument("--waitk", type=parse_positive, help="wait-k training (reads of --ratio "
                       "encoder states; default: offline)")
    train.add_argument("--ratio", type=parse_positive, default=7,
                       help="pre-decision ratio: encoder states per read (default 7)")
    train.add_argument("--init-from", type=Path, metavar="RUN",
                       help="ASR run whose speech encoder initialises this model")
    train.add_argument("--preset", default="lite", choices=sorted(ST_PRESETS))
    train.add_argument("--causal-encoder", choices=("yes", "no"),
                       help="unidirectional encoder and subsampler (default: yes with --waitk)")
    train.add_argument("--length-predictor", choices=("ratio", "conv"),
                       help="target-length predictor (cosFormer decoder blocks)")
    train.add_argument("--specaugment", action="store_true", help="SpecAugment in training "
                       "(fairseq's LB policy)")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument("--steps", type=parse_positive)
    train.add_argument("--max-batch-frames", type=parse_positive,
                       help="padded feature frames per batch")
    train.add_argument("--lr", type=float)
    train.add_argument("--warmup-steps", type=int)
    train.add_argument("--seed", type=parse_seed, default=0)
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--overwrite", action="store_true", help="replace the run in OUT")
    add_checkpoint_seconds(train)
    train.add_argument("--train-option", type=parse_key_value, action="append", default=[],
                       metavar="KEY=VALUE", help="STPreset field, e.g. eval_every=100")
    train.add_argument("--model-option", type=parse_key_value, action="append", default=[],
                       metavar="KEY=VALUE", help="Seq2SeqConfig field, e.g. d_model=128")
    train.add_argument("--device", help="torch device (default cpu)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run_st_train_command)

    ev = sub.add_parser("eval", help="offline beam search: WER (asr) or BLEU (st)")
    _add_decode_arguments(ev)
    ev.add_argument("--beam", type=parse_positive, default=5)
    ev.add_argument("--length-penalty", type=float, default=1.0)
    ev.add_argument("--batch-size", type=parse_positive, default=16)
    ev.add_argument("--out", type=Path, help="output folder (default RUN/eval-SPLIT)")
    ev.set_defaults(func=run_st_eval_command)

    si = sub.add_parser("simul", help="simultaneous wait-k from the audio: instances.log, "
                        "scores.json (BLEU/WER, AL, LAAL, AP, DAL in ms, computation-aware)")
    _add_decode_arguments(si)
    si.add_argument("--waitk", type=parse_positive, required=True, help="test-time k")
    si.add_argument("--ratio", type=parse_positive, help="encoder states per read (default: "
                    "the run's)")
    si.add_argument("--encoder", default="incremental", choices=ENCODER_MODES,
                    help="incremental (causal, encoded once) or reencode (baseline)")
    si.add_argument("--segment-ms", type=float, help="audio per read (default 40 x ratio ms)")
    si.add_argument("--concat", type=parse_positive, default=1, metavar="N",
                    help="join every N consecutive utterances into one long input "
                    "(audio and references; --max-utterances counts joined ones)")
    si.add_argument("--no-compile-step", action="store_true",
                    help="decode with the eager modules (default: the compiled fused decoder "
                         "step, eager where compiling fails or a mechanism is not covered)")
    si.add_argument("--out", type=Path, help="output folder (default "
                    "RUN/simul-SPLIT-kK-rRATIO-ENCODER, then -cN, -sMS and -eager when "
                    "given)")
    si.set_defaults(func=run_st_simul_command)

    rep = sub.add_parser("report", help="markdown tables of 'st eval' and 'st simul' results "
                         "(WER/BLEU with bootstrap intervals, latency) and paired differences")
    rep.add_argument("--runs", type=Path, nargs="+", required=True,
                     help="folders searched for eval-*/ and simul-*/results.json")
    rep.add_argument("--out", type=Path, required=True, help="the markdown file to write")
    rep.add_argument("--paired", metavar="RUN", nargs="+", help="run folder names: each one's "
                     "WER, BLEU and computation-aware AL minus every other run's on the same "
                     "utterances, with paired intervals")
    rep.add_argument("--note", action="append", default=[], metavar="TEXT",
                     help="a bullet line for the report's header (repeatable)")
    rep.set_defaults(func=run_st_report_command)
    return st
