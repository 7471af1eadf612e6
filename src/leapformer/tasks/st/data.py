"""Data of the speech tasks (ASR and speech translation): manifests turned into
normalised filterbank features and target ids, prepared once per run folder.

**Source**: a folder of generic manifests (docs/speech.md) named
``{train,dev,test}_{task}.tsv`` -- the layout ``leapformer data spoken-bible``
writes (``_asr``: English speech -> English text, ``_st``: -> Japanese text);
a MuST-C split becomes such a file with ``write_manifest(read_mustc(...))``.

**Prepared** (:func:`prepare_st_data`, in the run folder): 80-bin Kaldi
filterbanks of every utterance (:func:`~leapformer.data.speech.kaldi_fbank`),
global CMVN statistics of the training split (``cmvn.npz``, fairseq's
``gcmvn.npz`` layout) applied to every split, the normalised features
(``data/<split>.features.pt``), a SentencePiece model of the training targets
(``spm.tgt.model``) and ``data/data.json`` (written last: what was read).
A resumed run and ``st eval`` / ``st simul`` read them back
(:func:`load_st_data`) and never recompute them.

**Batches**: :class:`~leapformer.tasks.translate.data.TokenBatcher` over feature
frames (``max_batch_frames`` padded frames per batch); wait-k training gives
decoder position ``t`` the first ``min((k + t - 1) * ratio, |h|)`` encoder
states (:func:`leapformer.ops.waitk_prefix` with the pre-decision ``ratio``),
what :class:`~leapformer.models.speech_simul.SpeechSimulAgent` reads.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from leapformer._io import atomic_open, atomic_write_text
from leapformer.data.speech import (
    GlobalCMVN,
    SpeechItem,
    compute_cmvn,
    kaldi_fbank,
    load_audio,
    read_manifest,
)
from leapformer.data.spm import SpmTokenizer, train_spm
from leapformer.ops import waitk_prefix

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
TASKS = ("asr", "st")
DATA_FORMAT = "leapformer-st-data"
SAMPLE_RATE = 16000

__all__ = ["SPLITS", "STData", "TASKS", "describe_st_source", "load_st_data", "make_st_batch",
           "prepare_st_data"]


def describe_st_source(data: str | Path, *, task: str = "st", tgt_lang: str = "ja",
                       tgt_vocab: int = 1000, max_frames: int = 3000) -> dict:
    """What a run reads (kept in ``data.json``; the prepared data is reused only for an
    equal description). Raises naming the argument or the missing manifest."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    for name, v in (("tgt_vocab", tgt_vocab), ("max_frames", max_frames)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 5:
            raise ValueError(f"{name} must be an int >= 5, got {v!r}")
    if data is None:
        raise ValueError("data must be a folder of {train,dev,test}_{asr,st}.tsv manifests "
                         "(e.g. from 'leapformer data spoken-bible')")
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    manifests = {}
    for split in SPLITS:
        path = root / f"{split}_{task}.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"no manifest {path} (expected {split}_{task}.tsv in {root})")
        manifests[split] = str(path.resolve())
    return {"task": task, "manifests": manifests, "tgt_lang": "en" if task == "asr" else tgt_lang,
            "tgt_vocab": tgt_vocab, "max_frames": max_frames, "sample_rate": SAMPLE_RATE}


@dataclass
class STData:
    """Prepared speech data: per split the manifest ``items``, normalised ``features``
    (``[frames, 80]`` float32 each), target ``ids`` and reference texts ``refs``;
    the target tokenizer ``tok`` and the ``cmvn`` statistics."""

    source: dict
    items: dict[str, list[SpeechItem]]
    features: dict[str, list[Tensor]]
    ids: dict[str, list[list[int]]]
    refs: dict[str, list[str]]
    tok: SpmTokenizer
    cmvn: GlobalCMVN


def _save_tensors(path: Path, tensors: list[Tensor]) -> None:
    with atomic_open(path) as fh:
        torch.save(tensors, fh)


def _target_spm(texts: list[str], source: dict):
    """The target SentencePiece model; a clear error when ``tgt_vocab`` cannot hold the
    characters of a CJK target (SentencePiece keeps every character it covers)."""
    cjk = source["tgt_lang"].lower().split("-")[0] in ("ja", "jpn", "zh", "ko")
    try:
        return train_spm(texts, source["tgt_vocab"], hard_vocab_limit=False,
                         character_coverage=0.9995 if cjk else 1.0)
    except ValueError as err:
        found = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(err))
        if found is None:
            raise
        raise ValueError(f"tgt_vocab={source['tgt_vocab']} is below the {found.group(1)} "
                         f"pieces the {source['tgt_lang']} target text needs for its "
                         f"characters; raise it, e.g. --train-option "
                         f"tgt_vocab={max(4000, int(found.group(1)) + 500)}") from None


def prepare_st_data(out: str | Path, source: dict) -> STData:
    """Compute the prepared data of ``source`` in run folder ``out``, or reuse it when
    ``data/data.json`` records the same source (a resumed or overwritten run)."""
    out = Path(out)
    meta = out / "data" / "data.json"
    if meta.is_file():
        saved = json.loads(meta.read_text())
        if saved.get("source") == source:
            return load_st_data(out)
        log.info("%s holds data prepared from another source: preparing it again", out)
    items = {s: read_manifest(source["manifests"][s]) for s in SPLITS}
    for s in SPLITS:
        if not items[s]:
            raise ValueError(f"manifest {source['manifests'][s]} has no utterance")
    refs = {s: [it.tgt_text for it in items[s]] for s in SPLITS}
    tok = _target_spm(refs["train"], source)  # before the features: fails in seconds
    raw: dict[str, list[Tensor]] = {}
    for s in SPLITS:
        feats = []
        for it in items[s]:
            samples, _ = load_audio(it, sample_rate=source["sample_rate"])
            f = kaldi_fbank(samples, source["sample_rate"])
            if f.shape[0] == 0:
                raise ValueError(f"{source['manifests'][s]}: utterance {it.id!r} is shorter than "
                                 f"one 25 ms window")
            feats.append(f)
        raw[s] = feats
    cmvn = compute_cmvn(raw["train"])
    feats = {s: [cmvn(f) for f in raw[s]] for s in SPLITS}
    (out / "data").mkdir(parents=True, exist_ok=True)
    tok.save(out / "spm.tgt.model")
    cmvn.save(out / "cmvn.npz")
    for s in SPLITS:
        _save_tensors(out / "data" / f"{s}.features.pt", feats[s])
    frames = {s: sum(int(f.shape[0]) for f in feats[s]) for s in SPLITS}
    atomic_write_text(meta, json.dumps({"format": DATA_FORMAT, "source": source,
                                        "utterances": {s: len(items[s]) for s in SPLITS},
                                        "frames": frames, "vocab": tok.vocab_size},
                                       indent=2) + "\n")
    log.info("prepared speech data in %s: %s utterances", out,
             {s: len(items[s]) for s in SPLITS})
    return load_st_data(out)


def load_st_data(out: str | Path) -> STData:
    """The data :func:`prepare_st_data` wrote in ``out``."""
    out = Path(out)
    meta = out / "data" / "data.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} not found: {out} holds no prepared speech data")
    info = json.loads(meta.read_text())
    if info.get("format") != DATA_FORMAT:
        raise ValueError(f"{meta} is not prepared speech data (format {info.get('format')!r})")
    source = info["source"]
    items = {s: read_manifest(source["manifests"][s]) for s in SPLITS}
    tok = SpmTokenizer.load(out / "spm.tgt.model")
    features = {s: torch.load(out / "data" / f"{s}.features.pt", weights_only=True)
                for s in SPLITS}
    for s in SPLITS:
        if len(features[s]) != len(items[s]):
            raise ValueError(f"{out / 'data' / f'{s}.features.pt'} holds {len(features[s])} "
                             f"utterances but {source['manifests'][s]} {len(items[s])}")
    refs = {s: [it.tgt_text for it in items[s]] for s in SPLITS}
    ids = {s: [tok.encode(t) for t in refs[s]] for s in SPLITS}
    return STData(source, items, features, ids, refs, tok, GlobalCMVN.load(out / "cmvn.npz"))


def make_st_batch(data: STData, split: str, idx, *, encoder_lengths, waitk: int | None = None,
                  ratio: int = 7, bos: int = 2, eos: int = 3, pad: int = 0) -> dict:
    """A batch dict: ``src [B, T, 80]`` (zero-padded), ``src_mask [B, T]`` (True =
    padding), ``tgt_in`` / ``tgt_out`` / ``tgt_mask`` and ``prefix`` (wait-k
    ``memory_prefix`` over encoder states, or None); ``encoder_lengths``: frames
    -> encoder states (the model's :meth:`encoder_lengths`)."""
    feats = [data.features[split][j] for j in idx]
    tgts = [data.ids[split][j] for j in idx]
    B, T = len(feats), max(int(f.shape[0]) for f in feats)
    src = torch.zeros(B, T, feats[0].shape[1])
    src_mask = torch.ones(B, T, dtype=torch.bool)
    for r, f in enumerate(feats):
        src[r, :f.shape[0]] = f
        src_mask[r, :f.shape[0]] = False
    M = max(len(t) for t in tgts) + 1
    tgt_in = torch.full((B, M), pad, dtype=torch.long)
    tgt_out = torch.full((B, M), pad, dtype=torch.long)
    for r, t in enumerate(tgts):
        tgt_in[r, :len(t) + 1] = torch.tensor([bos] + t)
        tgt_out[r, :len(t) + 1] = torch.tensor(t + [eos])
    prefix = None
    if waitk is not None:
        n = encoder_lengths((~src_mask).sum(1))
        prefix = waitk_prefix(waitk, M, n, ratio=ratio)
    return {"src": src, "src_mask": src_mask, "tgt_in": tgt_in, "tgt_out": tgt_out,
            "tgt_mask": tgt_in == pad, "prefix": prefix, "k": waitk}
