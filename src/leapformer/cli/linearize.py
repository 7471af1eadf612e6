"""``leapformer linearize``: turn a softmax ``transformers`` teacher into LeaP (or ReLU)
linear attention (stage 1 attention transfer, stage 2 LoRA; docs/linearize.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leapformer.cli._args import (
    CommandError,
    check_writable,
    command_line,
    parse_nonnegative,
    parse_positive,
    parse_seed,
)


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return x


def _layers(text: str):
    if text == "all":
        return "all"
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated layer indices, "
                                         f"got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="the softmax teacher: a transformers folder of 'leapformer lm "
                        "train --hf-arch gpt2|llama' (RUN/hf)")
    parser.add_argument("--mechanism", default="leap", choices=("leap", "linear"),
                        help="leap: ReLU features re-weighted by learned proportions "
                        "(default); linear: ReLU features alone")
    parser.add_argument("--feature-map", default="relu", choices=("relu", "hedgehog"),
                        help="relu (default) or a learnable Hedgehog map per head")
    parser.add_argument("--layers", type=_layers, default="all",
                        help="layers to linearise: all (default) or e.g. 0,2,3 (the others "
                        "keep softmax)")
    parser.add_argument("--data", type=Path, metavar="RUN",
                        help="LM run folder whose tokens to train on (default: the run that "
                        "trained the teacher; same tokenizer)")
    parser.add_argument("--stage1-steps", type=parse_nonnegative, default=200,
                        help="attention-transfer steps (default 200; 0 skips stage 1)")
    parser.add_argument("--stage2-steps", type=parse_nonnegative, default=200,
                        help="LoRA fine-tuning steps (default 200; 0 skips stage 2)")
    parser.add_argument("--stage1-lr", type=_positive_float, default=1e-2,
                        help="stage-1 learning rate (default 1e-2)")
    parser.add_argument("--stage2-lr", type=_positive_float, default=1e-3,
                        help="stage-2 learning rate (default 1e-3)")
    parser.add_argument("--lora-rank", type=parse_positive, default=8)
    parser.add_argument("--lora-alpha", type=_positive_float, default=16.0)
    parser.add_argument("--context", type=parse_positive,
                        help="tokens per sample (default: the teacher's training context)")
    parser.add_argument("--batch-size", type=parse_positive, default=8)
    parser.add_argument("--step-down", type=parse_positive, default=4,
                        help="LeaP hidden size = head size / step-down (default 4)")
    parser.add_argument("--valid-tokens", type=parse_nonnegative, default=32768,
                        help="validation perplexity before and after each stage on the "
                        "first N validation tokens (default 32768; 0: none)")
    parser.add_argument("--seed", type=parse_seed, default=0)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the linearised model (OUT/stage1: after stage 1, "
                        "when both stages run) and results.json")
    parser.add_argument("--overwrite", action="store_true", help="replace what OUT holds")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_out(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` must be emptied first (checked before any work)."""
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise CommandError(f"--out {out} is not empty; pass --overwrite to replace it")
        return True
    return False


def run_linearize(args: argparse.Namespace) -> int:
    """Linearise, train stage 1 and stage 2, save, report validation perplexity."""
    import json
    import time

    import torch
    from tqdm import tqdm

    from leapformer._io import atomic_write_text
    from leapformer.cli.lm import load_hf_model
    from leapformer.data.lm_corpus import StreamBatcher
    from leapformer.linearize import (
        attention_transfer,
        finetune_lora,
        linearize,
        new_parameters,
        save_linearized,
    )
    from leapformer.tasks.lm.hf import copy_hf_data
    from leapformer.tasks.lm.run import read_hf_data
    from leapformer.tasks.lm.perplexity import evaluate_perplexity

    if args.stage1_steps == 0 and args.stage2_steps == 0:
        raise CommandError("--stage1-steps and --stage2-steps are both 0: nothing to train")
    if args.model.resolve() == args.out.resolve():
        raise CommandError("--out must differ from --model")
    if not args.model.is_dir():
        raise CommandError(f"--model {args.model} does not exist (a folder of 'leapformer lm "
                           "train --hf-arch', RUN/hf)")
    clear = _check_out(args.out, args.overwrite)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    tok, ids, info = read_hf_data(args.model, args.data)
    wrapped = load_hf_model(args.model, device=device, context_length=info["context_length"],
                            pad_id=info["pad_id"])
    if wrapped.cfg.vocab_size < tok.vocab_size:
        raise CommandError(f"the model's vocabulary ({wrapped.cfg.vocab_size}) is smaller "
                           f"than the tokenizer's ({tok.vocab_size})")
    context = args.context or info["context_length"]
    valid = ids["valid"][:args.valid_tokens]

    def valid_ppl() -> float | None:
        if not args.valid_tokens:
            return None
        return evaluate_perplexity(wrapped, valid, window=context, stride=context,
                                   bos=tok.eos_id)["ppl"]

    summary = {"command": command_line(args), "teacher": str(args.model),
               "mechanism": args.mechanism, "feature_map": args.feature_map,
               "data": info["run"], "context": context, "batch_size": args.batch_size,
               "valid_tokens": len(valid) if args.valid_tokens else 0,
               "valid_ppl": {"teacher": valid_ppl()}}
    torch.manual_seed(args.seed)
    model = linearize(wrapped.hf, args.mechanism, args.layers, args.feature_map,
                      step_down=args.step_down)
    summary["new_parameters"] = sum(p.numel() for p in new_parameters(model))
    summary["valid_ppl"]["linearized"] = valid_ppl()
    batcher = StreamBatcher(ids["train"], args.batch_size, context, shuffle=True,
                            seed=args.seed)

    def batches(offset: int):
        def get(i: int):
            epoch, step = divmod(i + offset, len(batcher))
            return batcher.batch(epoch, step)
        return get

    total = args.stage1_steps + args.stage2_steps
    with tqdm(total=total, desc="linearize", unit="step", disable=args.no_progress,
              file=sys.stderr) as bar:
        def progress(stage):
            def update(step, loss):
                bar.set_postfix_str(f"stage {stage} loss {loss:.4g}", refresh=False)
                bar.update(1)
            return update

        if clear:  # the teacher and its data loaded: replace what OUT holds
            import shutil

            shutil.rmtree(args.out)
        t0 = time.perf_counter()
        s1 = attention_transfer(model, batches(0), args.stage1_steps, lr=args.stage1_lr,
                                progress=progress(1))
        bar.update(args.stage1_steps - s1["steps"])  # skipped: no parameters to train
        summary["stage1"] = {"steps": s1["steps"], "wall_s": time.perf_counter() - t0,
                             "mse_first": s1["losses"][0] if s1["losses"] else None,
                             "mse_last": s1["losses"][-1] if s1["losses"] else None}
        summary["valid_ppl"]["stage1"] = valid_ppl()
        if args.stage2_steps:
            save_linearized(model, args.out / "stage1", extra={"results": summary})
            copy_hf_data(args.model, args.out / "stage1")
            t0 = time.perf_counter()
            model, s2 = finetune_lora(model, batches(args.stage1_steps), args.stage2_steps,
                                      lr=args.stage2_lr, rank=args.lora_rank,
                                      alpha=args.lora_alpha, progress=progress(2))
            wrapped.hf = model
            summary["stage2"] = {"steps": s2["steps"], "wall_s": time.perf_counter() - t0,
                                 "lora_parameters": s2["trainable"],
                                 "loss_first": s2["losses"][0], "loss_last": s2["losses"][-1]}
            summary["valid_ppl"]["stage2"] = valid_ppl()
    summary["train_tokens"] = total * args.batch_size * context
    save_linearized(model, args.out, extra={"results": summary})
    copy_hf_data(args.model, args.out)
    atomic_write_text(args.out / "results.json", json.dumps(summary, indent=2) + "\n")
    ppl = summary["valid_ppl"]
    if args.valid_tokens:
        parts = [f"{k} {v:.2f}" for k, v in ppl.items() if v is not None]
        print(f"linearize / {args.mechanism}: validation perplexity " + ", ".join(parts))
    print(f"wrote {args.out} (evaluate with: leapformer lm eval --hf {args.out})")
    return 0


def _labelled(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")  # a path may hold "=", a label may not
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=FILE.json, got {text!r}")
    return label, Path(path)


def run_linearize_report(args: argparse.Namespace) -> int:
    """Markdown table of 'lm eval --out' results with bootstrap and paired intervals."""
    from leapformer._io import atomic_write_text
    from leapformer.linearize.report import load_evals, render_linearize_report

    if args.out is not None:
        check_writable(args.out, "--out")
    evals = load_evals(args.evals)
    labels = [label for label, _ in evals]
    if args.reference is not None and args.reference not in labels:
        raise CommandError(f"--reference must be one of the labels ({', '.join(labels)}), "
                           f"got {args.reference!r}")
    text = render_linearize_report(evals, reference=args.reference,
                                   command=command_line(args), notes=args.note)
    print(text, end="")
    if args.out is not None:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    return 0


def register(commands) -> None:
    """``leapformer linearize`` and ``linearize-report``."""
    parser = commands.add_parser("linearize", help="convert a softmax transformers LM into "
                                 "LeaP / ReLU linear attention (attention transfer, then LoRA)")
    add_arguments(parser)
    parser.set_defaults(func=run_linearize)
    report = commands.add_parser("linearize-report", help="perplexities of a teacher and its "
                                 "conversions with bootstrap and paired intervals (markdown)")
    report.add_argument("--evals", type=_labelled, nargs="+", required=True,
                        metavar="LABEL=FILE.json", help="'leapformer lm eval --out' results, "
                        "each with a label (e.g. teacher=eval-teacher.json)")
    report.add_argument("--reference", metavar="LABEL",
                        help="the row the others are divided by (e.g. teacher)")
    report.add_argument("--note", action="append", default=[],
                        help="a line added under the command (repeatable)")
    report.add_argument("--out", type=Path, help="markdown file to write (default: print only)")
    report.set_defaults(func=run_linearize_report)
