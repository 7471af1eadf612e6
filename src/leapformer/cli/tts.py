"""``leapformer tts train|synth|eval|report``: TransformerTTS with an MLA spec (docs/tts.md)::

    leapformer tts train  --data data/spoken-bible --spec leap --out runs/tts-leap
    leapformer tts synth  --run runs/tts-leap --text "In the beginning" --out sample.wav
    leapformer tts eval   --run runs/tts-leap --split test --max-items 20
    leapformer tts report --runs runs/ --out docs/results/tts-cpu.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leapformer.cli._args import command_line, parse_key_value, parse_positive, parse_seed

__all__ = ["register"]


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return x


def _threads(n: int | None) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


def run_tts_train_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.tts import run_tts_train

    _threads(args.threads)
    lp = None if args.length_predictor == "none" else args.length_predictor
    bars: dict = {}

    def feature_progress(split: str, done: int, total: int) -> None:
        if args.no_progress:
            return
        if split not in bars:
            from tqdm import tqdm

            bars[split] = tqdm(total=total, desc=f"mels {split}", unit="utt", file=sys.stderr)
        bars[split].update(done - bars[split].n)
        if done == total:
            bars[split].close()

    try:
        res = run_tts_train(data=args.data, fmt=args.format, spec=args.spec, out=args.out,
                            preset=args.preset, front_end=args.front_end, loss=args.loss,
                            length_predictor=lp, steps=args.steps,
                            batch_frames=args.batch_frames, lr=args.lr,
                            eval_every=args.eval_every, max_items=args.max_items,
                            max_dev=args.max_dev, seed=args.seed,
                            overrides=dict(args.model_option), resume=args.resume,
                            overwrite=args.overwrite, progress=not args.no_progress,
                            feature_progress=feature_progress, command=command_line(args))
    finally:
        for bar in bars.values():
            bar.close()
    print(f"tts / {res['spec']}: {res['steps']} steps in {res['train_wall_s']:.0f} s, best dev "
          f"loss {res['best_dev_loss']:.4f}; wrote {args.out / 'results.json'}")
    return 0


def run_tts_synth_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.tts import run_tts_synth

    _threads(args.threads)
    res = run_tts_synth(args.run, args.text, args.out, length_predictor=args.length_predictor,
                        max_seconds=args.max_seconds, stop_threshold=args.stop_threshold,
                        griffin_lim_iters=args.griffin_lim_iters, seed=args.seed)
    print(f"tts synth: {res['frames']} frames, {res['seconds']:.2f} s of audio (decoder "
          f"{res['decode_s']:.2f} s); wrote {res['out']}")
    return 0


def run_tts_eval_command(args: argparse.Namespace) -> int:
    from leapformer.tasks.tts import run_tts_eval

    _threads(args.threads)
    res = run_tts_eval(args.run, split=args.split, max_items=args.max_items, data=args.data,
                       predictors=tuple(args.length_predictors or ()) or None,
                       rtf_seconds=tuple(args.rtf_seconds), rtf_repeats=args.rtf_repeats,
                       max_seconds=args.max_seconds,
                       griffin_lim_iters=args.griffin_lim_iters, save_wavs=args.save_wavs,
                       out=args.out, seed=args.seed, compile_step=not args.no_compile_step)
    mcd = ", ".join(f"{k} {v:.2f}" for k, v in res["mcd"].items())
    err = ", ".join(f"{k} {100 * v['rel']:.1f}%" for k, v in res["length_error"].items())
    print(f"tts eval {res['spec']} ({res['utterances']} {res['split']} utterances): MCD dB "
          f"{mcd}; length error {err}; decoder RTF {res['decoder_rtf']:.3f}")
    return 0


def run_tts_report_command(args: argparse.Namespace) -> int:
    from leapformer._io import atomic_write_text
    from leapformer.tasks.tts import run_tts_report
    from leapformer.tasks.tts.evaluate import find_tts_evals

    files = find_tts_evals(args.runs)
    text = run_tts_report(files)
    if args.out is None:
        print(text, end="")
    else:
        atomic_write_text(args.out, text)
        print(f"tts report: {len(files)} evaluations; wrote {args.out}")
    return 0


def register(commands) -> None:
    from leapformer.models.tts import TTS_LOSSES, TTS_PRESETS
    from leapformer.tasks.tts import TTS_DEFAULTS as D
    from leapformer.tasks.tts.data import DATA_FORMATS, FRONT_ENDS

    tts = commands.add_parser("tts", help="text-to-speech (TransformerTTS, MLA spec): train, "
                              "synth, eval, report")
    sub = tts.add_subparsers(dest="tts_command", required=True)

    p = sub.add_parser("train", help="train one model")
    p.add_argument("--data", type=Path, required=True,
                   help="spoken-Bible folder ({split}_asr.tsv) or LJ Speech folder")
    p.add_argument("--format", choices=DATA_FORMATS, default="spoken-bible",
                   help="layout of --data (default spoken-bible)")
    p.add_argument("--spec", required=True,
                   help="attention per block, e.g. leap or enc=leap,dec=linear,cross=cosformer")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--preset", choices=sorted(TTS_PRESETS), default=D["preset"],
                   help=f"model sizes (default {D['preset']})")
    p.add_argument("--front-end", choices=FRONT_ENDS, default="chars",
                   help="characters or espeak-ng phonemes (default chars)")
    p.add_argument("--loss", choices=TTS_LOSSES, default="l1", help="mel loss (default l1)")
    p.add_argument("--length-predictor", choices=("none", "ratio", "lookup", "conv"),
                   default="conv", help="the model's target-length predictor (default conv, "
                   "trained jointly; eval also fits ratio and lookup)")
    p.add_argument("--steps", type=parse_positive, default=D["steps"],
                   help=f"training steps (default {D['steps']})")
    p.add_argument("--batch-frames", type=parse_positive, default=D["batch_frames"],
                   help=f"padded mel frames per batch (default {D['batch_frames']})")
    p.add_argument("--lr", type=_positive_float, default=D["lr"],
                   help=f"peak learning rate (default {D['lr']:g})")
    p.add_argument("--eval-every", type=parse_positive, default=D["eval_every"],
                   help=f"dev loss and checkpoint every N steps (default {D['eval_every']})")
    p.add_argument("--max-items", type=parse_positive, help="first N training utterances")
    p.add_argument("--max-dev", type=parse_positive, default=D["max_dev"],
                   help=f"dev utterances (default {D['max_dev']})")
    p.add_argument("--model-option", type=parse_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="override a TTSConfig field (repeatable)")
    p.add_argument("--seed", type=parse_seed, default=0, help="seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace the run in OUT")
    p.add_argument("--threads", type=parse_positive, help="torch threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_tts_train_command)

    p = sub.add_parser("synth", help="synthesise a text to .wav (Griffin-Lim)")
    p.add_argument("--run", type=Path, required=True, help="run folder of tts train")
    p.add_argument("--text", required=True, help="text to speak")
    p.add_argument("--out", type=Path, required=True, help=".wav file to write")
    p.add_argument("--length-predictor", choices=("ratio", "lookup"),
                   help="cosFormer's M from this predictor (default: the run's own)")
    p.add_argument("--max-seconds", type=_positive_float, default=30.0,
                   help="stop after this much audio if the stop token never fires (default 30)")
    p.add_argument("--stop-threshold", type=float, default=0.5,
                   help="stop when sigmoid(stop logit) exceeds this (default 0.5)")
    p.add_argument("--griffin-lim-iters", type=parse_positive, default=32,
                   help="Griffin-Lim iterations (default 32)")
    p.add_argument("--seed", type=parse_seed, default=0, help="seed of the pre-net dropout")
    p.add_argument("--threads", type=parse_positive, help="torch threads")
    p.set_defaults(func=run_tts_synth_command)

    p = sub.add_parser("eval", help="MCD, length error per predictor, real-time factor")
    p.add_argument("--run", type=Path, required=True, help="run folder of tts train")
    p.add_argument("--split", choices=("dev", "test"), default="test", help="default test")
    p.add_argument("--data", type=Path, help="data folder (default: the run's)")
    p.add_argument("--max-items", type=parse_positive, default=20,
                   help="utterances (default 20)")
    p.add_argument("--length-predictors", nargs="+", choices=("ratio", "lookup", "conv"),
                   help="default: ratio, lookup and the run's conv if it has one")
    p.add_argument("--rtf-seconds", nargs="*", type=_positive_float, default=[1.0, 5.0, 20.0],
                   metavar="S", help="forced output lengths for the RTF (default 1 5 20)")
    p.add_argument("--rtf-repeats", type=parse_positive, default=1,
                   help="best of N timings (default 1)")
    p.add_argument("--no-compile-step", action="store_true",
                   help="synthesise with the eager modules (default: the compiled fused decoder "
                        "step, eager for cosFormer or where compiling fails)")
    p.add_argument("--max-seconds", type=_positive_float, default=30.0,
                   help="stop after this much audio if the stop token never fires (default 30)")
    p.add_argument("--griffin-lim-iters", type=parse_positive, default=32,
                   help="Griffin-Lim iterations (default 32)")
    p.add_argument("--save-wavs", type=int, default=2,
                   help="write the first N syntheses and references to RUN/synth (default 2)")
    p.add_argument("--out", type=Path, help="JSON result (default RUN/eval_SPLIT.json)")
    p.add_argument("--seed", type=parse_seed, default=0, help="seed of the pre-net dropout")
    p.add_argument("--threads", type=parse_positive, help="torch threads")
    p.set_defaults(func=run_tts_eval_command)

    p = sub.add_parser("report", help="markdown tables over tts eval results")
    p.add_argument("--runs", type=Path, nargs="+", required=True,
                   help="tts eval result files, or folders searched for them")
    p.add_argument("--out", type=Path, help="markdown file (default: print it)")
    p.set_defaults(func=run_tts_report_command)
