"""Speech tasks: train a :class:`~leapformer.models.speech.SpeechSeq2Seq` for ASR
(English speech -> English text) or speech translation (-> Japanese text),
offline or wait-k on pre-decision chunks.

``run_st_train(spec, out=DIR, data=MANIFESTS, task="asr"|"st", waitk=None|k,
ratio=7, init_from=None|ASR_RUN)``:

1. **Data** (:mod:`leapformer.tasks.st.data`): the ``{train,dev,test}_{task}.tsv``
   manifests of ``data``, features + CMVN + target SentencePiece prepared once
   in the run folder.
2. **Model**: :data:`ST_PRESETS` ``[preset]`` sizes, the MLA ``spec``; a causal
   encoder and subsampler by default when ``waitk`` is set (so the agent encodes
   the stream once); SpecAugment with ``specaugment=True``.
3. **Init** (the seeds' recipe): ``init_from`` an ASR run copies its speech
   encoder (subsampler, encoder layers and norm, learned positions if any)
   into the new model; the decoder starts fresh (another vocabulary). The
   copied tensor names are in ``results.json`` (``init_from_tensors``).
4. **Training** with the shared :class:`~leapformer.train.Trainer`
   (label-smoothed cross-entropy, frame-bucketed batches, wait-k
   ``memory_prefix`` over encoder states, validation loss on ``dev``,
   ``best.pt``/``last.pt``), ``config.json`` and ``results.json``.

Evaluation (WER / BLEU offline, simultaneous latency) is in
:mod:`leapformer.tasks.st.evaluate`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from leapformer._io import atomic_write_text
from leapformer.models.seq2seq import SEQ2SEQ_PRESETS, Seq2SeqConfig
from leapformer.models.speech import SpecAugment, SpeechSeq2Seq
from leapformer.nn import AttentionSpec
from leapformer.tasks._runs import read_run
from leapformer.tasks._skeleton import capped_warmup, check_resume, runs_in_folder, write_json
from leapformer.tasks.st.data import STData, describe_st_source, make_st_batch, prepare_st_data
from leapformer.tasks.translate.data import TokenBatcher
from leapformer.train import TrainConfig, Trainer, load_checkpoint

log = logging.getLogger(__name__)

RUN_FORMAT = "leapformer-st-run"
ENCODER_PREFIXES = ("subsampler.", "encoder.", "src_pos.")

__all__ = ["ENCODER_PREFIXES", "ST_PRESETS", "STPreset", "build_st_model", "init_encoder_from",
           "load_st_run", "run_st_train", "st_validation_loss"]


@dataclass
class STPreset:
    """Training settings of a speech run: ``max_batch_frames`` padded feature frames
    per batch, ``max_frames`` longest training utterance kept, ``tgt_vocab``
    SentencePiece size, ``conv_channels`` the subsampler width, ``model`` the
    :data:`SEQ2SEQ_PRESETS` entry plus overrides."""

    steps: int
    max_batch_frames: int
    lr: float = 2e-3
    schedule: str = "inverse_sqrt"
    warmup_steps: int = 10000
    weight_decay: float = 0.0
    grad_clip: float | None = 10.0
    eval_every: int = 1000
    log_every: int = 50
    valid_utterances: int | None = 200
    tgt_vocab: int = 1000
    max_frames: int = 3000
    conv_channels: int = 1024
    model: str = "lite"
    model_overrides: dict | None = None

    def __post_init__(self):
        for name in ("steps", "max_batch_frames", "log_every", "tgt_vocab", "max_frames",
                     "conv_channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")


#: ``lite``: a 3+3-layer, 256-wide model for a shared CPU (minutes per hundred steps);
#: ``paper``: the MLA/LeaPformer SimulST size (6+6 layers, 256 wide, FFN 1024, conv 1024;
#: see the SEQ2SEQ_PRESETS note) with fairseq's S2T schedule (lr 2e-3, 10k warm-up).
ST_PRESETS: dict[str, STPreset] = {
    "lite": STPreset(steps=2000, max_batch_frames=12000, lr=1e-3, warmup_steps=400,
                     eval_every=250, log_every=25, valid_utterances=100, tgt_vocab=1000,
                     max_frames=2000, conv_channels=512, model="lite"),
    "paper": STPreset(steps=100_000, max_batch_frames=40000, lr=2e-3, warmup_steps=10000,
                      eval_every=2000, valid_utterances=None, tgt_vocab=8000, max_frames=3000,
                      conv_channels=1024, model="lite",
                      model_overrides={"num_encoder_layers": 6, "num_decoder_layers": 6,
                                       "nhead": 8, "max_positions": 4096}),
}


def build_st_model(config: dict) -> SpeechSeq2Seq:
    """The model a run ``config`` describes (untrained)."""
    cfg = Seq2SeqConfig(**config["model"])
    sa = SpecAugment(**config["specaugment"]) if config.get("specaugment") else None
    fe = config["frontend"]
    return SpeechSeq2Seq(cfg, config["spec"], config["length_predictor"],
                         causal_encoder=config["causal_encoder"], input_dim=fe["input_dim"],
                         conv_channels=fe["conv_channels"], kernel_sizes=tuple(fe["kernel_sizes"]),
                         causal_subsampler=fe["causal_subsampler"], specaugment=sa)


def init_encoder_from(model: SpeechSeq2Seq, run: str | Path, *, checkpoint: str = "best"
                      ) -> list[str]:
    """Copy the speech encoder of the run folder ``run`` (an ASR run) into ``model``:
    every tensor whose name starts with one of :data:`ENCODER_PREFIXES`. Shapes must
    match (same front-end, width and encoder depth); returns the copied names."""
    _, config, ck = read_run(run, checkpoint, fmt=RUN_FORMAT, what="a speech",
                             command="leapformer st train")
    state = load_checkpoint(ck)["model"]
    own = model.state_dict()
    names = [n for n in own if n.startswith(ENCODER_PREFIXES)]
    missing = [n for n in names if n not in state]
    if missing:
        raise ValueError(f"init_from {run}: its model has no {missing[0]} (encoder of spec "
                         f"{config['spec']!r} and front-end {config['frontend']})")
    for n in names:
        if state[n].shape != own[n].shape:
            raise ValueError(f"init_from {run}: {n} has shape {list(state[n].shape)} there, "
                             f"{list(own[n].shape)} here (sizes must match)")
    model.load_state_dict({n: state[n] for n in names}, strict=False)
    log.info("initialised %d encoder tensors from %s", len(names), run)
    return names


def _loss(model, b: dict) -> dict:
    return model.loss(b["src"], b["src_mask"], b["tgt_in"], b["tgt_out"], b["tgt_mask"],
                      b["prefix"])


def _to(b: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}


@torch.no_grad()
def st_validation_loss(model: SpeechSeq2Seq, data: STData, *, utterances: int | None,
                       max_batch_frames: int, waitk, ratio: int, device) -> dict:
    """Label-smoothed loss and NLL per target token over the first ``utterances`` of ``dev``."""
    feats = data.features["dev"]
    n = len(feats) if utterances is None else min(utterances, len(feats))
    order = sorted(range(n), key=lambda j: feats[j].shape[0])
    loss = nll = tokens = 0.0
    start = 0
    while start < n:
        rows = [order[start]]
        while start + len(rows) < n and \
                (len(rows) + 1) * feats[order[start + len(rows)]].shape[0] <= max_batch_frames:
            rows.append(order[start + len(rows)])
        start += len(rows)
        b = _to(make_st_batch(data, "dev", rows, encoder_lengths=model.encoder_lengths,
                              waitk=waitk, ratio=ratio), device)
        r = _loss(model, b)
        c = float(r["tokens"])
        loss, nll, tokens = loss + float(r["loss"]) * c, nll + float(r["nll"]) * c, tokens + c
    return {"loss": loss / tokens, "nll": nll / tokens, "ppl": math.exp(min(nll / tokens, 50))}


_RESUME_KEYS = ("model", "spec", "waitk", "ratio", "causal_encoder", "frontend", "train",
                "specaugment", "length_predictor", "seed", "init_from")


def _check_st_resume(out: Path, config: dict) -> None:
    """ValueError (one line) unless ``config`` matches the saved run in ``out`` in
    :data:`_RESUME_KEYS`; ``train.steps`` may grow (a resumed run may go on longer)."""
    path = Path(out) / "config.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())

    def comparable(c: dict) -> dict:
        train = c.get("train")
        if isinstance(train, dict):
            train = {k: v for k, v in train.items() if k != "steps"}
        return {**c, "train": train}

    check_resume(out, comparable(config), _RESUME_KEYS, saved=comparable(saved))


@runs_in_folder(outputs=("eval-*", "simul-*"))
def run_st_train(spec="enc=leap,dec=leap,cross=leap", *, out: str | Path, data: str | Path,
                 task: str = "st", tgt_lang: str = "ja", waitk: int | None = None,
                 ratio: int = 7, preset: str = "lite", init_from: str | Path | None = None,
                 causal_encoder: bool | None = None, length_predictor: str | None = None,
                 specaugment: bool = False, steps: int | None = None,
                 max_batch_frames: int | None = None, lr: float | None = None,
                 warmup_steps: int | None = None, seed: int = 0, resume: bool = False,
                 overrides: dict | None = None, model_overrides: dict | None = None,
                 device: str | torch.device | None = None, dist=None, progress: bool = True,
                 command: str | None = None, checkpoint_seconds: float = 60.0) -> dict:
    """Train one speech model; writes and returns ``out/results.json`` (module docstring).
    ``overrides``: :class:`STPreset` fields; ``model_overrides``: :class:`Seq2SeqConfig`
    fields (e.g. ``{"d_model": 64}``)."""
    if waitk is not None and (isinstance(waitk, bool) or not isinstance(waitk, int) or waitk < 1):
        raise ValueError(f"waitk must be None or a positive int, got {waitk!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
        raise ValueError(f"ratio must be a positive int (encoder states per read), got {ratio!r}")
    try:
        spec_obj = AttentionSpec.parse(spec) if isinstance(spec, str) else spec
    except ValueError as err:
        raise ValueError(f"bad attention spec {spec!r}: {err}") from None
    if preset not in ST_PRESETS:
        raise ValueError(f"preset must be one of {sorted(ST_PRESETS)}, got {preset!r}")
    named = {"steps": steps, "max_batch_frames": max_batch_frames, "lr": lr,
             "warmup_steps": warmup_steps}
    changes = {k: v for k, v in named.items() if v is not None}
    if overrides:
        unknown = set(overrides) - {f.name for f in fields(STPreset)}
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        changes.update(overrides)
    p = replace(ST_PRESETS[preset], **changes)
    if steps is not None and "warmup_steps" not in changes:
        p = replace(p, warmup_steps=capped_warmup(p.warmup_steps, p.steps))
    if steps is not None and p.eval_every > p.steps:
        p = replace(p, eval_every=0)
    if causal_encoder is None:
        causal_encoder = waitk is not None
    source = describe_st_source(data, task=task, tgt_lang=tgt_lang, tgt_vocab=p.tgt_vocab,
                                max_frames=p.max_frames)
    if resume:
        check_resume(out, {"source": source}, ("source",))
    d = prepare_st_data(out, source)
    device = torch.device(device or "cpu")
    mo = {**SEQ2SEQ_PRESETS[p.model], **(p.model_overrides or {}), **(model_overrides or {})}
    bad = set(mo) & {"src_vocab_size", "tgt_vocab_size"}
    if bad:
        raise ValueError(f"model_overrides cannot set {sorted(bad)} (set by the run)")
    cfg = Seq2SeqConfig(src_vocab_size=4, tgt_vocab_size=d.tok.vocab_size, **mo)
    config = {"format": RUN_FORMAT, "version": 1, "task": task, "spec": str(spec_obj),
              "waitk": waitk, "ratio": ratio, "causal_encoder": causal_encoder,
              "length_predictor": length_predictor, "preset": preset, "seed": seed,
              "model": asdict(cfg), "train": asdict(p),
              "frontend": {"input_dim": 80, "conv_channels": p.conv_channels,
                           "kernel_sizes": [5, 5], "causal_subsampler": causal_encoder},
              "specaugment": asdict_specaugment() if specaugment else None,
              "init_from": None if init_from is None else str(Path(init_from).resolve()),
              "source": source}
    if resume:
        _check_st_resume(out, config)
    torch.manual_seed(seed)
    model = build_st_model(config)
    copied: list[str] = []
    if init_from is not None and not resume:
        copied = init_encoder_from(model, init_from)
    model = model.to(device)
    if not resume:  # a resumed run keeps the config it was started with
        atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    keep = [j for j, f in enumerate(d.features["train"]) if f.shape[0] <= p.max_frames]
    if not keep:
        raise ValueError(f"no training utterance has <= max_frames={p.max_frames} frames")
    frames = [int(d.features["train"][j].shape[0]) for j in keep]
    batcher = TokenBatcher(frames, [len(d.ids["train"][j]) for j in keep], p.max_batch_frames,
                           seed=seed)
    log.info("st run %s (%s): %s, waitk=%s ratio=%d, %d parameters, %d utterances", out, task,
             config["spec"], waitk, ratio, sum(x.numel() for x in model.parameters()), len(keep))

    def get_batch(i: int) -> dict:
        rows = [keep[j] for j in batcher.batch(i).tolist()]
        return make_st_batch(d, "train", rows, encoder_lengths=model.encoder_lengths,
                             waitk=waitk, ratio=ratio)

    def loss_fn(m, batch):
        r = _loss(m, _to(batch, device))
        return r["loss"], {"examples": int(batch["src"].shape[0]), "tokens": int(r["tokens"])}

    def evaluate(m):
        return st_validation_loss(m, d, utterances=p.valid_utterances,
                                  max_batch_frames=p.max_batch_frames, waitk=waitk, ratio=ratio,
                                  device=device)

    train = TrainConfig(steps=p.steps, lr=p.lr, weight_decay=p.weight_decay,
                        schedule=p.schedule, warmup_steps=p.warmup_steps, grad_clip=p.grad_clip,
                        eval_every=p.eval_every, log_every=p.log_every, seed=seed,
                        checkpoint_seconds=checkpoint_seconds, metric="loss", mode="min")
    trainer = Trainer(model, train, get_batch=get_batch, loss_fn=loss_fn, evaluate=evaluate,
                      out_dir=out, progress=progress,
                      meta={"task": f"st-{task}", "spec": config["spec"], "waitk": waitk})
    result = trainer.fit(resume=resume)
    summary = {"task": task, "spec": config["spec"], "waitk": waitk, "ratio": ratio,
               "causal_encoder": causal_encoder, "preset": preset, "seed": seed,
               "steps": result.steps, "train_loss": result.train_loss,
               "train_wall_s": result.wall_s, "train_steps_per_s": result.steps_per_s,
               "best_valid_loss": result.best["loss"] if result.best else None,
               "best_step": result.best["step"] if result.best else None,
               "last_valid": result.last_eval, "parameters": result.parameters,
               "train_utterances": len(keep), "init_from": config["init_from"],
               "init_from_tensors": len(copied), "device": str(device), "command": command}
    write_json(out / "results.json", summary)
    return summary


def asdict_specaugment() -> dict:
    """The SpecAugment settings a run uses with ``specaugment=True`` (fairseq's LB policy)."""
    return {"freq_masks": 1, "freq_width": 27, "time_masks": 1, "time_width": 100,
            "time_ratio": 1.0}


def load_st_run(run: str | Path, *, checkpoint: str = "best",
                device: str | torch.device = "cpu") -> tuple[SpeechSeq2Seq, dict]:
    """``(model in eval mode, config)`` of a run folder of :func:`run_st_train`."""
    _, config, ck = read_run(run, checkpoint, fmt=RUN_FORMAT, what="a speech",
                             command="leapformer st train")
    model = build_st_model(config)
    state = load_checkpoint(ck)
    model.load_state_dict(state["model"])
    # which training step the evaluated weights are from (evals record it)
    return model.to(device).eval(), {**config, "checkpoint_step": state.get("step")}
