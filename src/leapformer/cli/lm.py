"""``leapformer lm train|eval|generate|bench|report``: causal language modelling."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from leapformer.cli._args import (
    CommandError,
    add_bench_common,
    add_checkpoint_seconds,
    check_writable,
    command_line,
    parse_key_value,
    parse_length,
    parse_positive,
    parse_seed,
    print_error,
)

GENERATE_STRATEGIES = ("greedy", "sample", "top-k", "top-p")


def add_lm_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``leapformer lm train``."""
    from leapformer.tasks.lm import LM_TRAIN_PRESETS
    from leapformer.train.schedule import SCHEDULES

    parser.add_argument("--attention",
                        help="causal self-attention mechanism (softmax, linear, elu, cosformer, "
                        "leap, performer, ...); required unless --hf-arch (softmax)")
    parser.add_argument("--hf-arch", choices=("gpt2", "llama"),
                        help="train a transformers GPT-2 or Llama of the model sizes instead "
                        "(a softmax teacher for 'leapformer linearize'), saved with "
                        "save_pretrained in OUT/hf")
    parser.add_argument("--hf-option", type=parse_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="field of the --hf-arch config, e.g. "
                        "num_key_value_heads=2 (repeatable)")
    parser.add_argument("--preset", default="lite", choices=sorted(LM_TRAIN_PRESETS),
                        help="model sizes and training settings (default lite)")
    parser.add_argument("--corpus", choices=("bible", "wikitext"),
                        help="bible: the embedded Bible corpus with BPE (default); wikitext: "
                        "needs --data")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="WikiText folder (wiki.{train,valid,test}.tokens): word-level LM")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder: tokenizer, tokens, checkpoints, metrics.jsonl, "
                        "config.json, results.json (a folder holding a run needs --resume "
                        "or --overwrite)")
    parser.add_argument("--steps", type=parse_positive, help="optimisation steps (the "
                        "preset's warm-up is capped at a tenth of them unless --warmup-steps "
                        "is given)")
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
    parser.add_argument("--seed", type=parse_seed, default=0, help="random seed, >= 0")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in OUT "
                        "(the tokenised data is kept)")
    add_checkpoint_seconds(parser)
    parser.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK if available, "
                        "else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_lm_train_command(args: argparse.Namespace) -> int:
    """One LM run; data-parallel over the processes when started by ``torchrun``."""
    from leapformer.tasks.lm import run_lm_train
    from leapformer.train import cleanup, init_distributed

    if args.hf_arch is None and args.attention is None:
        return print_error("lm train", "the following arguments are required: "
                                       "--attention (or --hf-arch)")
    if args.hf_arch is not None and args.attention not in (None, "softmax"):
        return print_error("lm train", f"--hf-arch trains a softmax teacher; "
                                       f"--attention {args.attention} cannot be used")
    if args.hf_option and args.hf_arch is None:
        return print_error("lm train", "--hf-option needs --hf-arch")
    attention = args.attention or "softmax"
    if args.hf_arch is not None:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # our bar is the training loop's
    if args.corpus == "wikitext" and args.data is None:
        return print_error("lm train", "--corpus wikitext needs --data DIR")
    if args.corpus == "bible" and args.data is not None:
        return print_error("lm train", "--data is a WikiText folder; it cannot be "
                                       "combined with --corpus bible")
    overrides = {k: getattr(args, k) for k in ("eval_every", "valid_tokens", "eval_window",
                                               "eval_stride", "bpe_vocab")
                 if getattr(args, k) is not None}
    try:
        dist = init_distributed(args.device)
    except (RuntimeError, ValueError) as err:
        return print_error("lm train", err)
    try:
        res = run_lm_train(
            attention, out=args.out, preset=args.preset, data=args.data, steps=args.steps,
            context=args.context, batch_size=args.batch_size, lr=args.lr,
            schedule=args.schedule, optimizer=args.optimizer, grad_accum=args.grad_accum,
            warmup_steps=args.warmup_steps, amp=args.amp, seed=args.seed, resume=args.resume,
            overwrite=args.overwrite, command=command_line(args), overrides=overrides,
            model_overrides=dict(args.model_option),
            mechanism_options=dict(args.mechanism_option), device=dist.device, dist=dist,
            progress=not args.no_progress, scale_warmup=True,
            checkpoint_seconds=args.checkpoint_seconds, hf_arch=args.hf_arch,
            hf_options=dict(args.hf_option))
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        return print_error("lm train", err)
    finally:
        cleanup()
    if dist.is_main:
        print(f"lm / {res['attention']} ({res['preset']}, seed {res['seed']}): test perplexity "
              f"{res['test_ppl']:.2f}, validation {res['valid_ppl']:.2f} (per token); "
              f"{res['steps']} steps in {res['train_wall_s']:.0f} s")
        print(f"wrote {args.out / 'results.json'}")
        if res.get("hf_dir"):
            print(f"wrote {res['hf_dir']} (transformers save_pretrained)")
    return 0


def run_lm_eval_command(args: argparse.Namespace) -> int:
    """Perplexity of a trained run on one split (fairseq eval-lm --context-window)."""
    import json

    from tqdm import tqdm

    from leapformer.tasks.lm import LMTrainPreset, load_data, load_lm_run
    from leapformer.tasks.lm.perplexity import evaluate_perplexity

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.out is not None:  # before the evaluation, not after it
        check_writable(args.out, "--out")
    if args.hf is not None:
        return _eval_hf(args, device)
    if args.data is not None:
        return print_error("lm eval", "--data goes with --hf (a run folder has its "
                                      "own tokens)")
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
        return print_error("lm eval", err)
    res = {"run": str(Path(args.run).resolve()), "split": args.split, "checkpoint": args.checkpoint,
           "attention": config["attention"], "cosformer_length": args.cosformer_length, **res}
    text = json.dumps(res, indent=2)
    print(json.dumps(_shown(res), indent=2))
    if args.out is not None:
        from leapformer._io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
        print(f"wrote {args.out}")
    return 0


def load_hf_model(path: Path, *, device: str, context_length: int | None = None,
                  pad_id: int | None = None):
    """An :class:`~leapformer.tasks.lm.hf.HFCausalLM` of a transformers folder: a
    linearised one (``leapformer linearize``) or any causal LM."""
    from leapformer.linearize import is_linearized, load_linearized
    from leapformer.tasks.lm.hf import load_hf_lm, wrap_hf

    if not Path(path).is_dir():
        raise FileNotFoundError(f"model folder {path} does not exist")
    if is_linearized(path):
        return wrap_hf(load_linearized(path, device=device), context_length=context_length,
                       pad_id=pad_id)
    return load_hf_lm(path, device=device, context_length=context_length, pad_id=pad_id)


def _own_tokens(args: argparse.Namespace):
    """``(ids, bos, info)`` of ``--split`` of the corpus of the run ``--data``, tokenised
    by the model folder's own tokenizer (the word counts are the run's)."""
    from leapformer.tasks.lm import load_data
    from leapformer.tasks.lm.hf import TOKENIZER_FILE, corpus_text, encode_with_own_tokenizer

    if args.data is None:
        raise CommandError(f"{args.hf} has no {TOKENIZER_FILE}: pass --data RUN, an LM run "
                           "folder on the corpus to score (it gives the text and word counts)")
    _, _, data_info = load_data(args.data)
    ids, bos = encode_with_own_tokenizer(args.hf, corpus_text(data_info["source"], args.split))
    if not ids:
        raise ValueError(f"the {args.split} split is empty")
    words = {s: v["words"] for s, v in data_info["splits"].items()}
    return ids, bos, {"words": words, "run": str(args.data), "context_length": None,
                      "pad_id": None}


def _shown(res: dict) -> dict:
    """An evaluation result as printed: the per-block lists (kept in ``--out``) counted."""
    return {k: (f"[{len(v)} blocks]" if k in ("block_nll", "block_tokens") else v)
            for k, v in res.items()}


def _eval_hf(args: argparse.Namespace, device: str) -> int:
    """``lm eval --hf DIR``: perplexity of a transformers folder on its corpus' split."""
    import json

    from tqdm import tqdm

    from leapformer.tasks.lm.hf import TOKENIZER_FILE
    from leapformer.tasks.lm.run import read_hf_data
    from leapformer.tasks.lm.perplexity import evaluate_perplexity

    if args.cosformer_length != "window":
        return print_error("lm eval", "--cosformer-length applies to --run models only")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    try:
        if not (Path(args.hf) / "config.json").is_file():
            raise FileNotFoundError(f"{Path(args.hf) / 'config.json'} not found: {args.hf} is "
                                    "not a transformers model folder")
        if (Path(args.hf) / TOKENIZER_FILE).is_file():
            tok, ids, info = read_hf_data(args.hf, args.data)
            split_ids, bos, tokenizer = ids[args.split], tok.eos_id, "leapformer"
        else:  # a model with its own tokenizer: the run's corpus text, re-tokenised
            split_ids, bos, info = _own_tokens(args)
            tokenizer = "own"
        model = load_hf_model(args.hf, device=device, context_length=info["context_length"],
                              pad_id=info["pad_id"])
        window = args.window or model.cfg.context_length
        stride = args.stride or max(1, window // 2)
        stride = min(stride, window)
        n_windows = -(-len(split_ids) // stride)
        with tqdm(total=n_windows, desc=f"eval {args.split}", unit="window",
                  disable=args.no_progress, file=sys.stderr) as bar:
            res = evaluate_perplexity(model, split_ids, window=window, stride=stride,
                                      batch_size=args.batch_size, bos=bos,
                                      words=info["words"][args.split], progress=bar.update)
    except (ValueError, TypeError, FileNotFoundError, OSError) as err:
        return print_error("lm eval", err)
    res = {"hf": str(args.hf), "split": args.split, "data": info["run"],
           "tokenizer": tokenizer,
           "linearized": (Path(args.hf) / "linearize.json").is_file(), **res}
    text = json.dumps(res, indent=2)
    print(json.dumps(_shown(res), indent=2))
    if args.out is not None:
        from leapformer._io import atomic_write_text

        atomic_write_text(args.out, text + "\n")
        print(f"wrote {args.out}")
    return 0


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
                        seed=args.seed, cosformer_length=cos_len,
                        compile_step=not args.no_compile_step)
    except (ValueError, TypeError, FileNotFoundError) as err:
        return print_error("lm generate", err)
    for k, (prompt, new) in enumerate(zip(prompts, outs, strict=True)):
        if k:
            print("-" * 40)
        print(tok.decode(prompt + new))
    return 0


def add_lm_bench_arguments(parser: argparse.ArgumentParser, *, out_dir_default=None) -> None:
    """Options shared by ``leapformer lm bench`` and ``benchmarks/lm_speed.py``."""
    from leapformer.bench.lm_speed import MECHANISMS

    add_bench_common(parser, "lm-speed", "contexts 128/512 at 1k tokens per step, positions "
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
                        metavar="KEY=VALUE", help="LMConfig field overriding the small preset")
    parser.add_argument("--no-compile-step", action="store_true",
                        help="generation: time the eager modules instead of the compiled "
                        "whole-stack step that 'lm generate' runs (default compiled)")


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
    overrides = {"device": args.device, "model_overrides": dict(args.model_option),
                 "compile_step": not args.no_compile_step}
    for name in ("contexts", "tokens_per_step", "positions", "mechanisms", "modes", "rounds"):
        if getattr(args, name):
            value = getattr(args, name)
            overrides[name] = tuple(value) if isinstance(value, list) else value
    try:
        cfg = LMSpeedConfig.quick(**overrides) if args.quick else LMSpeedConfig(**overrides)
    except ValueError as err:
        return print_error("lm bench", err)
    total = (len(cfg.contexts) if "train" in cfg.modes else 0) + \
        (len(cfg.positions) if "generate" in cfg.modes else 0)
    with tqdm(total=total, desc="lm bench", unit="group", disable=args.no_progress,
              file=sys.stderr) as bar:
        result = run_lm_speed(cfg, progress=lambda msg: bar.update(1))
    command = command_line(args)
    print(render_markdown(result, command))
    if args.out_dir is not None:
        stem = f"lm-speed-{torch.device(args.device).type}" + ("-quick" if args.quick else "")
        for path in write_results(result, args.out_dir, command, stem=stem):
            print(f"wrote {path}")
    return 0


def run_lm_report_command(args: argparse.Namespace) -> int:
    """Markdown report of LM runs, extra evaluations and a speed result."""
    from leapformer._io import atomic_write_text
    from leapformer.tasks.lm.report import (
        collect_lm_results,
        load_evals,
        load_speed,
        render_lm_report,
    )

    check_writable(args.out, "--out")
    try:
        results = collect_lm_results(args.runs)
        evals = load_evals(args.evals)
        speed = load_speed(args.speed) if args.speed is not None else None
        text = render_lm_report(results, evals, speed, command=command_line(args),
                                paired=args.paired, notes=args.note)
    except (ValueError, FileNotFoundError) as err:
        return print_error("lm report", err)
    atomic_write_text(args.out, text)
    print(text, end="")
    print(f"wrote {args.out}")
    return 0


def register(commands) -> None:
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
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", type=Path, help="run folder of 'lm train'")
    which.add_argument("--hf", type=Path, metavar="DIR", help="transformers model folder of "
                       "'lm train --hf-arch' (OUT/hf) or 'leapformer linearize' (scored on "
                       "the tokens of the run that trained the teacher), or any causal LM "
                       "with its own tokenizer (needs --data)")
    ev.add_argument("--data", type=Path, metavar="RUN", help="with --hf: read the tokens of "
                    "this LM run folder (same tokenizer) instead; for a model with its own "
                    "tokenizer, the corpus text of this run, re-tokenised (per-word "
                    "perplexity comparable across tokenizers)")
    ev.add_argument("--split", default="test", choices=("valid", "test"))
    ev.add_argument("--window", type=parse_length, help="tokens read per window "
                    "(default: the run's eval window; --hf: the model's training context)")
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
    gen.add_argument("--no-compile-step", action="store_true",
                     help="decode with the eager step (default: the compiled whole-stack "
                     "step once a model has decoded 64 tokens)")
    gen.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    gen.set_defaults(func=run_lm_generate_command)

    bench = sub.add_parser("bench", help="LM speed: training tokens/s and memory per context, "
                           "generation ms/token per position, per mechanism")
    add_lm_bench_arguments(bench)
    bench.set_defaults(func=run_lm_bench)

    rep = sub.add_parser("report", help="markdown report of LM runs (perplexity table: mean "
                         "± 95%% interval over seeds and a verdict; extra evaluations, speed)")
    rep.add_argument("--runs", type=Path, nargs="+", required=True,
                     help="run folders of 'lm train' (searched for results.json); runs that "
                     "differ only in seed are grouped")
    rep.add_argument("--evals", type=Path, nargs="+", default=[], metavar="FILE.json",
                     help="JSON results of 'lm eval --out' (e.g. cosFormer with "
                     "--cosformer-length train/stepping)")
    rep.add_argument("--speed", type=Path, help="JSON of 'lm bench' / benchmarks/lm_speed.py")
    rep.add_argument("--out", type=Path, required=True, help="the markdown file to write")
    rep.add_argument("--paired", metavar="MECHANISM",
                     help="also compare this mechanism with every other one seed by seed "
                     "(mean perplexity difference ± 95%% t interval, wins, sign test)")
    rep.add_argument("--note", action="append", default=[], metavar="TEXT",
                     help="a bullet line for the report's header (repeatable)")
    rep.set_defaults(func=run_lm_report_command)

