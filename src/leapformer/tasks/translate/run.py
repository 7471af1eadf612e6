"""Text translation task (docs/math.md §2-§4, §6): train a :class:`~leapformer.models.Seq2Seq`
(offline or wait-k), evaluate it offline (beam search, BLEU) and simultaneously
(wait-k agent, BLEU + SimulEval latency).

``run_translate_train(spec, out=DIR, waitk=None | k | "multi", data=None | DIR)``:

1. **Data** (:mod:`leapformer.tasks.translate.data`): the embedded en-ja Bible
   (split by book) or a folder of ``{train,valid,test}.{src_lang,tgt_lang}``
   files; SentencePiece models trained on the training split, ids cached in
   the run folder.
2. **Model**: :data:`~leapformer.models.SEQ2SEQ_PRESETS` ``[preset]`` with the
   MLA ``spec`` (``"enc=leap,dec=leap,cross=leap"``); a causal
   (unidirectional) encoder by default when ``waitk`` is set, so the agent can
   encode a streamed source once (``causal_encoder`` overrides). cosFormer in
   a decoder block needs a target length: a ``ratio`` length predictor
   (fitted on the training pairs) is used unless another is named.
3. **Training** with the shared :class:`~leapformer.train.Trainer`:
   label-smoothed cross-entropy, token-bucketed batches, wait-k
   ``memory_prefix`` (fixed ``k``, or ``"multi"``: ``k`` drawn per batch),
   validation loss every ``eval_every`` steps on the first ``valid_pairs``
   validation pairs (wait-k with the training ``k``; ``valid_k`` for multi),
   ``best.pt`` / ``last.pt``, ``metrics.jsonl``, exact ``resume``.
4. ``out/config.json`` (what :func:`load_translate_run` needs) and
   ``out/results.json``: steps, wall time, steps/s, training tokens/s
   (target tokens), parameters, best validation loss.

Evaluation of a run folder, offline (``run_translate_eval``) and simultaneous
(``run_translate_simul``), is in :mod:`leapformer.tasks.translate.evaluate`.

Presets (:data:`TRANSLATE_PRESETS`): ``lite`` (the 3+3-layer, 256-wide model,
4k-token vocabularies, a CPU run of minutes) and ``paper`` (Transformer base,
fairseq's recipe: inverse-sqrt schedule, 4000 warm-up steps, lr 5e-4).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from leapformer._io import atomic_write_text
from leapformer.models import Seq2Seq, Seq2SeqConfig
from leapformer.models.seq2seq import SEQ2SEQ_PRESETS, label_smoothed_nll
from leapformer.nn import MECHANISMS, AttentionSpec
from leapformer.tasks._runs import read_run
from leapformer.tasks._skeleton import capped_warmup, check_resume, runs_in_folder, write_json
from leapformer.tasks.translate.data import (
    TokenBatcher,
    TranslationData,
    describe_source,
    load_translation_data,
    make_batch,
    prepare_translation_data,
)
from leapformer.train import DistInfo, TrainConfig, Trainer, load_checkpoint

log = logging.getLogger(__name__)

RUN_FORMAT = "leapformer-translate-run"

__all__ = ["EVAL_LENGTHS", "TRANSLATE_PRESETS", "TranslatePreset", "fit_length_on_train",
           "load_translate_run", "run_translate_train", "validation_loss"]


@dataclass
class TranslatePreset:
    """Training settings of a translation run (a preset, then overrides).

    ``max_batch_tokens``: padded tokens per batch (token bucketing);
    ``src_vocab``/``tgt_vocab``: SentencePiece sizes; ``max_tokens``: longest
    training pair kept (tokens per side); ``max_chars``: drop longer training
    pairs before tokenising; ``valid_pairs``: validation pairs used for the
    periodic loss (None: all); ``valid_k``: wait-k of the validation loss of a
    multi-k run.
    """

    steps: int
    max_batch_tokens: int
    lr: float = 5e-4
    schedule: str = "inverse_sqrt"
    warmup_steps: int = 4000
    weight_decay: float = 0.0001
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    eval_every: int = 1000
    log_every: int = 50
    valid_pairs: int | None = 500
    valid_k: int = 5
    src_vocab: int = 8000
    tgt_vocab: int = 8000
    max_tokens: int = 200
    max_chars: int | None = None
    amp: bool = False
    # mechanism name -> options; explicit mechanism_options win (per option)
    mechanism_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("steps", "max_batch_tokens", "grad_accum", "log_every", "valid_k",
                     "src_vocab", "tgt_vocab", "max_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("eval_every", "warmup_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        if self.valid_pairs is not None and (not isinstance(self.valid_pairs, int)
                                             or self.valid_pairs < 1):
            raise ValueError(f"valid_pairs must be None or a positive int, got "
                             f"{self.valid_pairs!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")


#: ``lite``: sized for a shared CPU (see docs/simul.md for measured step times);
#: ``paper``: fairseq's Transformer-base recipe (4096 tokens x 8 GPUs there).
TRANSLATE_PRESETS: dict[str, TranslatePreset] = {
    "lite": TranslatePreset(steps=1500, max_batch_tokens=2048, lr=1e-3, warmup_steps=300,
                            eval_every=250, log_every=25, valid_pairs=300, src_vocab=4000,
                            tgt_vocab=4000, max_tokens=128),
    "paper": TranslatePreset(steps=100_000, max_batch_tokens=4096, lr=5e-4, warmup_steps=4000,
                             eval_every=2000, valid_pairs=None, src_vocab=8000,
                             tgt_vocab=8000, max_tokens=256,
                             mechanism_options={"leap": {"q_scale": True}}),  # fairseq LeaP
}


def _check_mechanism_options(options: dict) -> dict:
    """``{mechanism name: {option: value}}``: a known name and a dict per entry (the
    options themselves are checked by the mechanism that takes them)."""
    if not isinstance(options, dict):
        raise TypeError(f"mechanism_options must be a dict of mechanism name -> options, got "
                        f"{options!r}")
    for name, opts in options.items():
        if name not in MECHANISMS:
            raise ValueError(f"mechanism_options names an unknown mechanism {name!r}; known: "
                             f"{sorted(MECHANISMS)}")
        if not isinstance(opts, dict):
            raise TypeError(f"mechanism_options[{name!r}] must be a dict of options (e.g. "
                            f"--mechanism-option '{name}={{\"hidden\": 16}}'), got {opts!r}")
    return options


def _parse_waitk(waitk) -> int | str | None:
    if waitk is None or waitk == "multi":
        return waitk
    if isinstance(waitk, str) and waitk.isdigit():
        waitk = int(waitk)
    if isinstance(waitk, bool) or not isinstance(waitk, int) or waitk < 1:
        raise ValueError(f"waitk must be None, a positive int or 'multi', got {waitk!r}")
    return waitk


def _parse_spec(spec) -> AttentionSpec:
    if isinstance(spec, AttentionSpec):
        return spec
    try:
        return AttentionSpec.parse(spec)
    except (ValueError, TypeError) as err:
        raise ValueError(f"bad attention spec {spec!r}: {err}") from None


def _build_model(config: dict, data: TranslationData | None = None) -> Seq2Seq:
    cfg = Seq2SeqConfig(**config["model"])
    model = Seq2Seq(cfg, config["spec"], config["length_predictor"],
                    causal_encoder=config["causal_encoder"])
    if data is not None and config["length_predictor"] in ("ratio", "lookup"):
        fit_length_on_train(model, data)
    return model


def fit_length_on_train(model: Seq2Seq, data: TranslationData) -> None:
    """Fit the model's ratio/lookup length predictor on the training pairs (decoder
    positions = target tokens + 1; sources with their EOS, as the encoder sees them)."""
    src, tgt = data.ids["train"]
    eos = model.cfg.eos_id
    model.fit_length_predictor([s + [eos] for s in src], [len(t) + 1 for t in tgt])


#: offline-evaluation target lengths of a cosFormer decoder: the run's own predictor,
#: one fitted now on the training pairs, or the reference length (an oracle). Used by
#: :mod:`leapformer.tasks.translate.evaluate`; defined here, next to the run settings.
EVAL_LENGTHS = ("trained", "ratio", "lookup", "conv", "oracle")


def _batch_to(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _loss(model, batch: dict) -> dict:
    return model.loss(batch["src"], batch["src_mask"], batch["tgt_in"], batch["tgt_out"],
                      batch["tgt_mask"], batch["prefix"])


@torch.no_grad()
def validation_loss(model: Seq2Seq, data: TranslationData, *, pairs: int | None,
                    max_batch_tokens: int, waitk, device) -> dict:
    """Label-smoothed loss and NLL per target token over the first ``pairs`` validation pairs."""
    n = len(data.ids["valid"][0]) if pairs is None else min(pairs, len(data.ids["valid"][0]))
    src, tgt = data.ids["valid"]
    order = sorted(range(n), key=lambda j: max(len(src[j]), len(tgt[j])))
    loss = nll = tokens = 0.0
    start = 0
    while start < n:
        rows = [order[start]]
        while start + len(rows) < n:
            j = order[start + len(rows)]
            if (len(rows) + 1) * (max(len(src[j]), len(tgt[j])) + 1) > max_batch_tokens:
                break
            rows.append(j)
        start += len(rows)
        b = _batch_to(make_batch(data, "valid", rows, waitk=waitk), device)
        r = _loss(model, b)
        c = float(r["tokens"])
        loss += float(r["loss"]) * c
        nll += float(r["nll"]) * c
        tokens += c
    return {"loss": loss / tokens, "nll": nll / tokens, "ppl": math.exp(min(nll / tokens, 50))}


@runs_in_folder(outputs=("eval-*", "simul-*"))
def run_translate_train(spec="enc=leap,dec=leap,cross=leap", *, out: str | Path,
                        waitk: int | str | None = None, data: str | Path | None = None,
                        src_lang: str = "en", tgt_lang: str = "ja", preset: str = "lite",
                        causal_encoder: bool | None = None, length_predictor: str | None = None,
                        steps: int | None = None, max_batch_tokens: int | None = None,
                        lr: float | None = None, schedule: str | None = None,
                        warmup_steps: int | None = None, seed: int = 0, resume: bool = False,
                        overrides: dict | None = None, model_overrides: dict | None = None,
                        mechanism_options: dict | None = None,
                        device: str | torch.device | None = None,
                        dist: DistInfo | None = None, progress: bool = True,
                        command: str | None = None, scale_warmup: bool = False,
                        checkpoint_seconds: float = 60.0) -> dict:
    """Train one translation model; writes and returns ``out/results.json`` (module docstring).

    ``overrides``: :class:`TranslatePreset` fields; ``model_overrides``:
    :class:`~leapformer.models.Seq2SeqConfig` fields (e.g. ``{"d_model": 64}``).
    ``overwrite=True`` replaces a run in ``out`` (its evaluations too; the run-folder
    rules of :mod:`leapformer.tasks._skeleton`); ``command`` is recorded in the results.
    ``scale_warmup`` (the CLI's choice): with ``steps`` given and no explicit warm-up, the
    preset's warm-up is cut to a tenth of the steps
    (:func:`~leapformer.tasks._skeleton.capped_warmup`, as ``lra`` does).
    ``checkpoint_seconds``: also write ``last.pt`` after this much training time (0: never).
    """
    dist = dist or DistInfo()
    waitk = _parse_waitk(waitk)
    spec_obj = _parse_spec(spec)
    given = _check_mechanism_options(mechanism_options or {})
    if preset not in TRANSLATE_PRESETS or preset not in SEQ2SEQ_PRESETS:
        raise ValueError(f"preset must be one of {sorted(TRANSLATE_PRESETS)}, got {preset!r}")
    named = {"steps": steps, "max_batch_tokens": max_batch_tokens, "lr": lr,
             "schedule": schedule, "warmup_steps": warmup_steps}
    changes = {k: v for k, v in named.items() if v is not None}
    known = {f.name for f in fields(TranslatePreset)}
    if overrides:
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")
        changes.update(overrides)
    p = replace(TRANSLATE_PRESETS[preset], **changes)
    if steps is not None and p.eval_every > p.steps:
        p = replace(p, eval_every=0)
    if scale_warmup and steps is not None and "warmup_steps" not in changes:
        p = replace(p, warmup_steps=capped_warmup(p.warmup_steps, p.steps))
    if causal_encoder is None:
        causal_encoder = waitk is not None
    model_overrides = dict(model_overrides or {})
    bad = set(model_overrides) & {"src_vocab_size", "tgt_vocab_size", "mechanism_options"}
    if bad:
        raise ValueError(f"model_overrides cannot set {sorted(bad)} (set by the run)")
    source = describe_source(data, src_lang=src_lang, tgt_lang=tgt_lang, src_vocab=p.src_vocab,
                             tgt_vocab=p.tgt_vocab, max_tokens=p.max_tokens,
                             max_chars=p.max_chars)
    device = torch.device(device or (dist.device if dist.enabled else "cpu"))
    if resume:
        check_resume(out, {"source": source}, ("source",))
    d = prepare_translation_data(out, source)
    torch.manual_seed(seed)
    cfg = Seq2SeqConfig.preset(preset, d.src_tok.vocab_size, d.tgt_tok.vocab_size,
                               mechanism_options={
                                   m: {**p.mechanism_options.get(m, {}), **given.get(m, {})}
                                   for m in sorted({*p.mechanism_options, *given})},
                               **model_overrides)
    if dist.enabled and length_predictor == "conv":
        raise ValueError("length_predictor='conv' is trained inside Seq2Seq.loss, which a "
                         "data-parallel run cannot call; use 'ratio' or 'lookup' with dist")
    probe = Seq2Seq(cfg, spec_obj, causal_encoder=causal_encoder)
    if probe.needs_target_length and length_predictor is None:
        length_predictor = "ratio"
        log.info("a cosFormer decoder block needs a target length: using a ratio predictor")
    del probe
    config = {"format": RUN_FORMAT, "version": 1, "spec": str(spec_obj), "waitk": waitk,
              "causal_encoder": causal_encoder, "length_predictor": length_predictor,
              "preset": preset, "seed": seed, "model": asdict(cfg), "train": asdict(p),
              "source": source}
    if resume:
        check_resume(out, config, ("model", "spec", "waitk", "causal_encoder",
                                    "length_predictor"))
    torch.manual_seed(seed)
    model = _build_model(config, d).to(device)
    if dist.is_main:
        atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    src_ids, tgt_ids = d.ids["train"]
    batcher = TokenBatcher([len(s) for s in src_ids], [len(t) for t in tgt_ids],
                           p.max_batch_tokens, seed=seed)
    log.info("translate run %s: %s, waitk=%s, %d parameters, %d training pairs, %d batches "
             "per epoch", out, config["spec"], waitk,
             sum(x.numel() for x in model.parameters()), len(src_ids),
             batcher.batches_per_epoch())

    def get_batch(i: int) -> dict:
        return make_batch(d, "train", batcher.batch(i).tolist(), waitk=waitk, seed=seed, i=i)

    def loss_fn(m, batch):
        b = _batch_to(batch, device)
        if isinstance(m, Seq2Seq):
            r = _loss(m, b)
            loss, tokens = r["loss"], int(r["tokens"])
        else:  # DDP-wrapped: the forward must go through the wrapper (gradient sync)
            logits = m(b["src"], b["src_mask"], b["tgt_in"], b["tgt_mask"], b["prefix"])
            loss, _ = label_smoothed_nll(logits, b["tgt_out"], epsilon=cfg.label_smoothing,
                                         ignore_index=cfg.pad_id)
            tokens = int((b["tgt_out"] != cfg.pad_id).sum())
        return loss, {"examples": int(b["src"].shape[0]), "tokens": tokens}

    valid_k = p.valid_k if waitk == "multi" else waitk

    def evaluate(m):
        return validation_loss(m, d, pairs=p.valid_pairs, max_batch_tokens=p.max_batch_tokens,
                               waitk=valid_k, device=device)

    train = TrainConfig(steps=p.steps, lr=p.lr, weight_decay=p.weight_decay, betas=p.betas,
                        schedule=p.schedule, warmup_steps=p.warmup_steps,
                        grad_clip=p.grad_clip, grad_accum=p.grad_accum,
                        eval_every=p.eval_every, log_every=p.log_every, seed=seed, amp=p.amp,
                        checkpoint_seconds=checkpoint_seconds, metric="loss", mode="min")
    trainer = Trainer(model, train, get_batch=get_batch, loss_fn=loss_fn, evaluate=evaluate,
                      out_dir=out, progress=progress, dist=dist,
                      meta={"task": "translate", "spec": config["spec"], "waitk": waitk})
    result = trainer.fit(resume=resume)
    summary = {
        "task": "translate", "spec": config["spec"], "waitk": waitk,
        "causal_encoder": causal_encoder, "length_predictor": length_predictor,
        "preset": preset, "seed": seed, "corpus": source["corpus"],
        "src_lang": src_lang, "tgt_lang": tgt_lang,
        "steps": result.steps, "train_loss": result.train_loss,
        "train_wall_s": result.wall_s, "train_steps_per_s": result.steps_per_s,
        "train_tokens_per_s": result.tokens_per_s,
        "best_valid_loss": result.best["loss"] if result.best else None,
        "best_step": result.best["step"] if result.best else None,
        "last_valid": result.last_eval, "parameters": result.parameters,
        "train_pairs": len(src_ids), "device": str(device), "world_size": dist.world_size,
        "command": command,
    }
    if dist.is_main:
        write_json(out / "results.json", summary)
    return summary


# ----------------------------------------------------------------------------- runs


def check_translate_run(run: str | Path, checkpoint: str = "best") -> None:
    """Raise the one-line error of :func:`load_translate_run` for a folder that is not a
    finished translation run (missing, another command's run, no checkpoint), without
    loading anything."""
    read_run(run, checkpoint, fmt=RUN_FORMAT, what="a translation",
             command="leapformer translate train")


def load_translate_run(run: str | Path, *, checkpoint: str = "best",
                       device: str | torch.device = "cpu"
                       ) -> tuple[Seq2Seq, TranslationData, dict]:
    """``(model in eval mode, data, config)`` of a run folder of :func:`run_translate_train`;
    ``config["checkpoint_step"]`` is the training step of the loaded checkpoint."""
    run, config, ck_path = read_run(run, checkpoint, fmt=RUN_FORMAT, what="a translation",
                                    command="leapformer translate train")
    data = load_translation_data(run)
    model = _build_model(config)
    ck = load_checkpoint(ck_path)
    model.load_state_dict(ck["model"])
    # which training step the evaluated weights are from (evals record it)
    return model.to(device).eval(), data, {**config, "checkpoint_step": ck.get("step")}
