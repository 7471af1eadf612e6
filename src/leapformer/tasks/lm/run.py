"""Language-modelling harness (docs/math.md §5.2): train a :class:`~leapformer.models.CausalLM`
with a chosen causal self-attention mechanism, evaluate its perplexity, and
rebuild it for evaluation and generation.

``run_lm_train(attention, out=DIR, ...)``:

1. **Data.** The embedded Bible corpus split by book
   (:func:`~leapformer.data.lm_corpus.bible_lm_corpus`) with a byte-level BPE
   trained on its training split, or WikiText (``data=DIR``, the tokenised
   ``wiki.{train,valid,test}.tokens``) with its word vocabulary. The tokenizer
   is saved as ``DIR/tokenizer.json`` and every split's ids as
   ``DIR/tokens/<split>.npy`` (with ``DIR/data.json``: what was read, tokens
   and words per split), so a resumed run, ``lm eval`` and ``lm generate``
   never tokenise again.
2. **Batches.** fairseq ``--sample-break-mode none``: the training split is one
   token stream cut into ``context``-token samples
   (:class:`~leapformer.data.lm_corpus.StreamBatcher`, shuffled windows drawn
   from ``(seed, epoch)``). Micro-batch ``i`` is a function of ``i`` alone, so
   a resumed run sees exactly the batches an uninterrupted one would: with the
   checkpointed model, optimizer, schedule and RNG state (the shared
   :class:`~leapformer.train.Trainer`), resuming is exact.
3. **Training** with the shared loop (AdamW or NAG, warm-up and decay, clipping,
   accumulation, bfloat16 autocast, ``last.pt``/``best.pt``, ``metrics.jsonl``,
   DDP under ``torchrun``), validating every ``eval_every`` steps on the
   validation split (non-overlapping ``context``-token windows, optionally only
   its first ``valid_tokens`` tokens); ``best.pt`` has the lowest validation loss.
4. **Results.** The best checkpoint is evaluated on the validation and test
   splits with fairseq ``eval-lm --context-window`` semantics
   (:func:`~leapformer.tasks.lm.perplexity.evaluate_perplexity`, ``eval_window`` /
   ``eval_stride``) and ``DIR/results.json`` is written: perplexity per token
   and per word, steps, wall time, training tokens/s, peak memory, parameter
   count and the settings. ``DIR/config.json`` holds what
   :func:`load_lm_run` needs to rebuild the model.

Presets (:data:`LM_TRAIN_PRESETS`, the model sizes are
:data:`~leapformer.models.LM_PRESETS` of the same name): ``lite`` trains the
2-layer, 128-wide model for 2000 steps of 8 x 256 tokens (about 15 minutes on
one CPU thread, so that mechanisms are compared over seeds); ``small`` the
4-layer, 256-wide one (about 1.5 hours); ``wikitext103`` is the official LeaPformer
fairseq script (``adaptive_lm_train.sh``; docs/lm.md, "Settings"): NAG
(momentum 0.99), lr 1.0, fairseq's cosine schedule (8000 warm-up updates from
1e-7, floor 1e-4, period 270k, t-mult 2, shrink 0.75), clip-norm 0.1, 250k
updates of 16 x 512-token samples (4096 tokens x update-freq 2), LeaP with
``q_scale`` (q x head_dim^-1/2), evaluated with ``--context-window 511``.
``mechanism_options`` of a preset are per mechanism name; explicit options win.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from leapformer._io import atomic_write_text
from leapformer.data.lm_corpus import SPLITS, StreamBatcher
from leapformer.data.lm_tokenizer import LMTokenizer
from leapformer.models.lm import LM_PRESETS, CausalLM, LMConfig
from leapformer.tasks._runs import read_run
from leapformer.tasks._skeleton import (
    capped_warmup,
    check_resume,
    peak_memory,
    runs_in_folder,
    write_json,
)
from leapformer.tasks.lm.perplexity import evaluate_perplexity
from leapformer.train import DistInfo, TrainConfig, Trainer, load_checkpoint
from leapformer.train.distributed import barrier

log = logging.getLogger(__name__)

RUN_FORMAT = "leapformer-lm-run"
CORPORA = ("bible", "wikitext")


@dataclass
class LMTrainPreset:
    """Training and evaluation settings of an LM run (a preset, then overrides).

    ``batch_size`` samples of ``context`` tokens per micro-batch (the global
    batch under ``torchrun``), ``grad_accum`` micro-batches per step.
    ``context`` None: the model preset's ``context_length``. Validation during
    training: every ``eval_every`` steps (0: at the end only; ``last.pt`` is
    also written every ``checkpoint_every`` steps), non-overlapping
    ``context``-token windows over the first ``valid_tokens`` tokens of the
    validation split (None: all). Final evaluation: ``eval_window`` (None:
    ``context``) tokens read per window, ``eval_stride`` scored (None: half the
    window). ``bpe_vocab``: BPE vocabulary size (Bible corpus).
    """

    steps: int
    batch_size: int
    context: int | None = None
    lr: float = 5e-4
    optimizer: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    amp: bool = False
    eval_every: int = 0
    checkpoint_every: int = 0
    valid_tokens: int | None = None
    eval_window: int | None = None
    eval_stride: int | None = None
    eval_batch_size: int = 8
    log_every: int = 10
    bpe_vocab: int = 8192
    schedule_options: dict = field(default_factory=dict)  # leapformer.train.schedule
    mechanism_options: dict = field(default_factory=dict)  # mechanism name -> options

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "eval_batch_size", "log_every",
                     "bpe_vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("context", "valid_tokens", "eval_window", "eval_stride"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive int, got {value!r}")
        for name in ("eval_every", "checkpoint_every", "warmup_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        self.betas = tuple(self.betas)

    def windows(self, context: int) -> tuple[int, int]:
        """``(eval_window, eval_stride)`` for a run of ``context``-token samples."""
        window = self.eval_window or context
        stride = self.eval_stride or max(1, window // 2)
        if stride > window:
            raise ValueError(f"eval_stride must be <= eval_window, got stride {stride} > "
                             f"window {window}")
        return window, stride


#: Training presets (see the module docstring); the model sizes are ``LM_PRESETS``.
LM_TRAIN_PRESETS: dict[str, LMTrainPreset] = {
    "lite": LMTrainPreset(steps=2000, batch_size=8, lr=1e-3, schedule="cosine",
                          warmup_steps=100, min_lr_ratio=0.1, eval_every=250,
                          valid_tokens=16384, bpe_vocab=8192),
    "small": LMTrainPreset(steps=2000, batch_size=8, lr=5e-4, schedule="cosine",
                           warmup_steps=100, min_lr_ratio=0.1, eval_every=250, bpe_vocab=8192),
    "wikitext103": LMTrainPreset(steps=250_000, batch_size=8, grad_accum=2, lr=1.0,
                                 optimizer="nag", weight_decay=0.0, schedule="fairseq_cosine",
                                 warmup_steps=8000, min_lr_ratio=1e-4, grad_clip=0.1,
                                 schedule_options={"warmup_init": 1e-7, "period": 270_000,
                                                   "t_mult": 2.0, "shrink": 0.75},
                                 mechanism_options={"leap": {"q_scale": True}},
                                 eval_every=2000, eval_window=512, eval_stride=1),
}


def get_preset(preset: str) -> LMTrainPreset:
    if preset not in LM_TRAIN_PRESETS:
        raise ValueError(f"preset must be one of {sorted(LM_TRAIN_PRESETS)}, got {preset!r}")
    return LM_TRAIN_PRESETS[preset]


# --------------------------------------------------------------------------- data


def _count_words(text: str) -> int:
    """Words as fairseq's word-level data counts them: whitespace-separated words
    plus one ``</s>`` per line break."""
    return len(text.split()) + text.count("\n")


def _describe_source(data: str | Path | None, bpe_vocab: int) -> dict:
    if data is None:
        return {"corpus": "bible", "tokenizer": "bpe", "bpe_vocab": bpe_vocab}
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"data {path} does not exist (a WikiText folder holding "
                                "wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens)")
    return {"corpus": "wikitext", "tokenizer": "word", "path": str(path.resolve())}


def _build_data(source: dict) -> tuple[LMTokenizer, dict[str, np.ndarray], dict[str, int]]:
    """Tokenizer, split -> ids, split -> words, read and tokenised from scratch."""
    if source["corpus"] == "bible":
        from leapformer.data.lm_corpus import bible_lm_corpus
        from leapformer.data.lm_tokenizer import train_bpe

        texts = bible_lm_corpus()
        tok = train_bpe(texts["train"], source["bpe_vocab"])
        ids = {s: tok.encode_array(texts[s]) for s in SPLITS}
        words = {s: _count_words(texts[s]) for s in SPLITS}
        return tok, ids, words
    from leapformer.data.lm_tokenizer import WordTokenizer
    from leapformer.data.wikitext import load_wikitext

    vocab, ids = load_wikitext(source["path"])
    return WordTokenizer(vocab), ids, {s: len(v) for s, v in ids.items()}


def prepare_data(out: Path, source: dict, *, dist: DistInfo | None = None
                 ) -> tuple[LMTokenizer, dict[str, np.ndarray], dict]:
    """The run's tokenizer and token ids: read from ``out`` when a previous call
    saved them for the same ``source``, else built and saved (by rank 0; the
    other ranks wait and read them). Returns ``(tokenizer, ids, data_info)``."""
    dist = dist or DistInfo()
    info_path = out / "data.json"

    def cached() -> dict | None:
        if not info_path.is_file():
            return None
        info = json.loads(info_path.read_text())
        return info if info.get("source") == source else None

    if dist.is_main and cached() is None:
        t0 = time.perf_counter()
        tok, ids, words = _build_data(source)
        (out / "tokens").mkdir(parents=True, exist_ok=True)
        for s, v in ids.items():
            np.save(out / "tokens" / f"{s}.npy", v.astype(np.int32 if tok.vocab_size < 2**31
                                                          else np.int64))
        tok.save(out / "tokenizer.json")
        info = {"source": source, "vocab_size": tok.vocab_size,
                "splits": {s: {"tokens": len(ids[s]), "words": words[s]} for s in SPLITS}}
        atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")  # last: marks complete
        log.info("tokenised %s in %.1f s: %s", source["corpus"], time.perf_counter() - t0,
                 info["splits"])
    barrier(dist)
    info = cached()
    if info is None:
        raise RuntimeError(f"{info_path} was not written for {source}")
    return load_data(out)[0:2] + (info,)


def load_data(out: str | Path) -> tuple[LMTokenizer, dict[str, np.ndarray], dict]:
    """``(tokenizer, split -> ids, data_info)`` saved in a run folder."""
    out = Path(out)
    info_path = out / "data.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} not found: {out} is not an LM run folder "
                                "(made by 'leapformer lm train')")
    info = json.loads(info_path.read_text())
    tok = LMTokenizer.load(out / "tokenizer.json")
    ids = {s: np.load(out / "tokens" / f"{s}.npy").astype(np.int64) for s in SPLITS}
    return tok, ids, info


def read_hf_data(path: str | Path, data: str | Path | None = None
                 ) -> tuple[LMTokenizer, dict[str, np.ndarray], dict]:
    """``(tokenizer, split -> ids, info)`` of a model folder written by
    :func:`leapformer.tasks.lm.hf.save_hf_dir` or ``leapformer linearize``; ``data``:
    another LM run folder with the same tokenizer to read the tokens from. ``info`` has
    ``words`` per split, the ``context_length``, ``pad_id`` and the ``run`` read."""
    from leapformer.tasks.lm.hf import DATA_FILE, TOKENIZER_FILE

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path / 'config.json'} not found: {path} is not a "
                                "transformers model folder")
    for name in (TOKENIZER_FILE, DATA_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} not found: {path} was not saved by "
                                    "'leapformer lm train --hf-arch' or 'leapformer linearize'")
    tok = LMTokenizer.load(path / TOKENIZER_FILE)
    info = json.loads((path / DATA_FILE).read_text())
    run = Path(data) if data is not None else Path(info["run"])
    run_tok, ids, data_info = load_data(run)
    if run_tok.to_dict() != tok.to_dict():
        raise ValueError(f"the tokens in {run} were made with another tokenizer than "
                         f"{path / TOKENIZER_FILE}")
    words = {s: v["words"] for s, v in data_info["splits"].items()}
    return tok, ids, {**info, "words": words, "run": str(run)}


# --------------------------------------------------------------------------- runs


@runs_in_folder(outputs=("hf",))
def run_lm_train(attention: str, *, out: str | Path, preset: str = "lite",
                 data: str | Path | None = None, steps: int | None = None,
                 context: int | None = None, batch_size: int | None = None,
                 lr: float | None = None, schedule: str | None = None,
                 optimizer: str | None = None, grad_accum: int | None = None,
                 warmup_steps: int | None = None, amp: bool | None = None, seed: int = 0,
                 resume: bool = False, overrides: dict | None = None,
                 model_overrides: dict | None = None, mechanism_options: dict | None = None,
                 device: str | torch.device | None = None, dist: DistInfo | None = None,
                 progress: bool = True, command: str | None = None,
                 scale_warmup: bool = False, checkpoint_seconds: float = 60.0,
                 hf_arch: str | None = None, hf_options: dict | None = None) -> dict:
    """Train one causal LM and write ``out/results.json`` (returned); see the module docstring.

    ``data``: a WikiText folder (default: the embedded Bible corpus with BPE).
    The named settings and ``overrides`` (any :class:`LMTrainPreset` field)
    replace the preset's; ``model_overrides``: :class:`~leapformer.models.LMConfig`
    fields (e.g. ``{"num_layers": 2, "d_model": 64}``); ``mechanism_options``:
    options of the attention mechanism (e.g. ``{"step_down": 4}`` for LeaP).
    ``resume``: continue ``out/last.pt`` (the model and data must match; ``steps``
    may grow); ``overwrite=True`` replaces a run in ``out`` (the run-folder rules of
    :mod:`leapformer.tasks._skeleton`). ``dist``: :func:`leapformer.train.init_distributed`.
    ``command``: the command line, recorded in the results. ``scale_warmup`` (the CLI's
    choice): with ``steps`` given and no explicit warm-up, the preset's warm-up is cut
    to a tenth of the steps (:func:`~leapformer.tasks._skeleton.capped_warmup`, as
    ``lra`` does); off, the preset's stays. ``checkpoint_seconds``: also write
    ``last.pt`` after this much training time (0: never). ``hf_arch``: ``"gpt2"`` or
    ``"llama"`` trains that ``transformers`` architecture (softmax attention, the sizes
    of the model settings; ``hf_options``: further fields of its config) instead of
    :class:`~leapformer.models.CausalLM`, and saves the best checkpoint with
    ``save_pretrained`` in ``out/hf`` (:mod:`leapformer.tasks.lm.hf`).
    """
    dist = dist or DistInfo()
    p = get_preset(preset)
    named = {"steps": steps, "context": context, "batch_size": batch_size, "lr": lr, "schedule": schedule,
                 "optimizer": optimizer, "grad_accum": grad_accum, "warmup_steps": warmup_steps, "amp": amp}
    changes = {k: v for k, v in named.items() if v is not None}
    if overrides:
        unknown = set(overrides) - {f.name for f in fields(LMTrainPreset)}
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: "
                             f"{sorted(f.name for f in fields(LMTrainPreset))}")
        changes.update(overrides)
    if changes.get("schedule", p.schedule) != p.schedule and "schedule_options" not in changes:
        changes["schedule_options"] = {}  # the preset's options belong to its own schedule
    p = replace(p, **changes)
    if steps is not None and p.eval_every > steps:
        p = replace(p, eval_every=0)
    if scale_warmup and steps is not None and "warmup_steps" not in changes:
        p = replace(p, warmup_steps=capped_warmup(p.warmup_steps, p.steps))
    model_overrides = dict(model_overrides or {})
    bad = set(model_overrides) & {"vocab_size", "attention", "mechanism_options", "pad_id"}
    if bad:
        raise ValueError(f"model_overrides cannot set {sorted(bad)} (set by the run)")
    if preset not in LM_PRESETS:
        raise ValueError(f"preset {preset!r} has no model sizes in LM_PRESETS")
    ctx = p.context or model_overrides.get("context_length") or LM_PRESETS[preset]["context_length"]
    model_overrides["context_length"] = ctx
    p = replace(p, context=ctx)
    eval_window, eval_stride = p.windows(ctx)
    if device is None:
        device = dist.device if dist.enabled else "cpu"
    device = torch.device(device)
    source = _describe_source(data, p.bpe_vocab)
    if resume:  # before the data: a different source would re-tokenise into this folder
        check_resume(out, {"attention": attention, "source": source}, ("attention", "source"))
    tok, ids, data_info = prepare_data(out, source, dist=dist)
    torch.manual_seed(seed)
    cfg = LMConfig.preset(preset, tok.vocab_size, attention=attention,
                          mechanism_options={**p.mechanism_options.get(attention, {}),
                                             **(mechanism_options or {})}, pad_id=tok.pad_id,
                          **model_overrides)
    config = {"format": RUN_FORMAT, "version": 1, "attention": attention, "preset": preset,
              "seed": seed, "model": asdict(cfg), "train": asdict(p), "source": source}
    if hf_arch is not None:
        config.update(hf_arch=hf_arch, hf_options=dict(hf_options or {}))
        model = _build_hf(config, bos_id=tok.eos_id)  # checks the settings before the resume
    elif hf_options:
        raise ValueError("hf_options need hf_arch")
    else:
        model = CausalLM(cfg)
    if resume:
        check_resume(out, config, ("model",) + (("hf_arch", "hf_options") if hf_arch else ()))
    if dist.is_main:
        atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    model = model.to(device)
    batcher = StreamBatcher(ids["train"], p.batch_size, ctx, shuffle=True, seed=seed)
    log.info("LM run %s: %s, %d parameters, %d train tokens, %d batches of %dx%d per epoch",
             out, attention, sum(x.numel() for x in model.parameters()), len(ids["train"]),
             len(batcher), p.batch_size, ctx)

    def get_batch(i: int):
        epoch, step = divmod(i, len(batcher))
        return batcher.batch(epoch, step)

    V = cfg.vocab_size

    def loss_fn(m, batch):
        inputs, targets = (t.to(device, non_blocking=True) for t in batch)
        logits = m(inputs)
        loss = F.cross_entropy(logits.float().reshape(-1, V), targets.reshape(-1))
        return loss, {"examples": inputs.shape[0], "tokens": inputs.numel()}

    valid = ids["valid"] if p.valid_tokens is None else ids["valid"][:p.valid_tokens]

    def evaluate(m):
        r = evaluate_perplexity(m, valid, window=ctx, stride=ctx, batch_size=p.eval_batch_size,
                                bos=tok.eos_id, amp=p.amp, dist=dist)
        return {"loss": r["nll_per_token"], "ppl": r["ppl"]}

    train = TrainConfig(steps=p.steps, lr=p.lr, weight_decay=p.weight_decay, betas=p.betas,
                        optimizer=p.optimizer, schedule=p.schedule,
                        schedule_options=p.schedule_options,
                        warmup_steps=p.warmup_steps, min_lr_ratio=p.min_lr_ratio,
                        grad_clip=p.grad_clip, grad_accum=p.grad_accum, eval_every=p.eval_every,
                        checkpoint_every=p.checkpoint_every, log_every=p.log_every,
                        checkpoint_seconds=checkpoint_seconds, seed=seed, amp=p.amp,
                        metric="loss", mode="min")
    trainer = Trainer(model, train, get_batch=get_batch, loss_fn=loss_fn, evaluate=evaluate,
                      out_dir=out, progress=progress, dist=dist,
                      meta={"task": "lm", "attention": attention, "preset": preset,
                            "model": asdict(cfg)})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = trainer.fit(resume=resume)
    memory = peak_memory(device)

    best = load_checkpoint(out / "best.pt")
    model.load_state_dict(best["model"])
    final = {}
    for split in ("valid", "test"):
        final[split] = evaluate_perplexity(
            model, ids[split], window=eval_window, stride=eval_stride,
            batch_size=p.eval_batch_size, bos=tok.eos_id,
            words=data_info["splits"][split]["words"], amp=p.amp, dist=dist)
    summary = {
        "task": "lm", "attention": attention, "preset": preset, "seed": seed,
        "corpus": source["corpus"],
        "valid_ppl": final["valid"]["ppl"], "valid_ppl_per_word": final["valid"]["ppl_per_word"],
        "test_ppl": final["test"]["ppl"], "test_ppl_per_word": final["test"]["ppl_per_word"],
        "valid_nll_per_token": final["valid"]["nll_per_token"],
        "test_nll_per_token": final["test"]["nll_per_token"],
        "eval_window": eval_window, "eval_stride": eval_stride,
        "eval_tokens": {s: final[s]["tokens"] for s in final},
        # the test stream in runs of windows, for a block-bootstrap interval of one run
        "test_blocks": {"nll": final["test"]["block_nll"],
                        "tokens": final["test"]["block_tokens"]},
        "eval_words": {s: final[s]["words"] for s in final},
        "best_valid_loss": result.best["loss"] if result.best else None,
        "best_step": result.best["step"] if result.best else None,
        "steps": result.steps, "train_loss": result.train_loss, "train_wall_s": result.wall_s,
        "train_steps_per_s": result.steps_per_s, "train_tokens_per_s": result.tokens_per_s,
        **memory, "parameters": result.parameters, "vocab_size": cfg.vocab_size,
        "world_size": dist.world_size, "device": str(device),
        "train_tokens": data_info["splits"]["train"]["tokens"],
        "config": config, "command": command,
    }
    if hf_arch is not None and dist.is_main:
        from leapformer.tasks.lm.hf import save_hf_dir

        summary["hf_dir"] = str(save_hf_dir(model, out / "hf", source=source, run=out,
                                            tokenizer_file=out / "tokenizer.json"))
    if dist.is_main:
        write_json(out / "results.json", summary)
    return summary


def _build_hf(config: dict, bos_id: int | None):
    """The :class:`~leapformer.tasks.lm.hf.HFCausalLM` of a run config with ``hf_arch``."""
    from leapformer.tasks.lm.hf import build_hf_lm

    return build_hf_lm(config["hf_arch"], LMConfig(**config["model"]), bos_id=bos_id,
                       hf_options=config.get("hf_options"))


# --------------------------------------------------------------------------- loading runs


def load_lm_run(run: str | Path, *, checkpoint: str = "best", device: str | torch.device = "cpu"
                ) -> tuple[CausalLM, LMTokenizer, dict]:
    """``(model in eval mode, tokenizer, config)`` of a run folder of :func:`run_lm_train`;
    ``checkpoint``: ``"best"`` or ``"last"``."""
    run, config, ck_path = read_run(run, checkpoint, fmt=RUN_FORMAT, what="an LM",
                                    command="leapformer lm train")
    tok = LMTokenizer.load(run / "tokenizer.json")
    if config.get("hf_arch"):
        model = _build_hf(config, bos_id=tok.eos_id)
    else:
        model = CausalLM(LMConfig(**config["model"]))
    model.load_state_dict(load_checkpoint(ck_path)["model"])
    return model.to(device).eval(), tok, config
