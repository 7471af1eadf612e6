"""Evaluation of a speech run folder (:func:`~leapformer.tasks.st.run_st_train`).

``run_st_eval(run)``: offline beam search over a split (the shared
:func:`~leapformer.models.beam_search`, on the encoded features) and word
error rate with ``jiwer`` (ASR; also on lower-cased, punctuation-free text)
or corpus BLEU with the target language's sacreBLEU tokenizer (ST; ja-mecab
for Japanese).

``run_st_simul(run, k=...)``: :class:`~leapformer.models.speech_simul.SpeechSimulAgent`
per utterance on the raw audio; ``instances.log`` + ``config.yaml`` with
delays in ms of source audio, one per target subword (latency unit ``spm``
with the run's target SentencePiece model, source type ``speech``), and
``scores.json`` (BLEU, AL, LAAL, AP, DAL and the computation-aware ``_CA``
forms from the measured compute times), which SimulEval 1.1.4's
``--score-only`` recomputes to the same latency numbers.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from leapformer._io import atomic_write_text
from leapformer.data.speech import load_audio
from leapformer.eval import (
    InstanceRecord,
    bleu_from_stats,
    check_bleu_stats,
    corpus_bleu,
    corpus_latency,
    read_instances,
    sentence_bleu_stats,
    simuleval_command,
    write_instances,
    write_scores,
    writes_without_spaces,
)
from leapformer.models.search import beam_search
from leapformer.models.simul import ENCODER_MODES
from leapformer.models.speech import SpeechSeq2Seq
from leapformer.models.speech_simul import SpeechSimulAgent
from leapformer.report.intervals import Interval, ratio_bootstrap, statistic_bootstrap
from leapformer.tasks.st.data import SAMPLE_RATE, SPLITS, STData, load_st_data, make_st_batch
from leapformer.tasks.st.run import load_st_run

__all__ = ["bleu_interval", "run_st_eval", "run_st_simul", "simul_groups", "word_error_rate"]


class _Encoded:
    """The search interface of :mod:`leapformer.models.search` over a batch already
    encoded: ``encode`` returns that encoding (the search's ``src`` is a placeholder
    of the encoder states' shape, so its length limits count encoder states)."""

    def __init__(self, model: SpeechSeq2Seq, enc):
        self.model, self.cfg, self.enc = model, model.cfg, enc

    @property
    def training(self) -> bool:
        return self.model.training

    def eval(self):
        self.model.eval()
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def encode(self, src, src_mask):  # noqa: ARG002
        return self.enc

    def new_decoder_cache(self, enc, **kw):
        return self.model.new_decoder_cache(enc, **kw)

    def decode_step(self, tokens, cache):
        return self.model.decode_step(tokens, cache)


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def word_error_rate(hyps: list[str], refs: list[str]) -> dict:
    """Corpus WER (%) with jiwer, as written and normalised (lower case, no punctuation);
    for the normalised one also the word errors and reference words of every utterance
    and a 95% bootstrap interval over utterances (``WER_normalised_interval``)."""
    try:
        import jiwer
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("WER needs jiwer (pip install 'leapformer[speech]')") from err
    if len(hyps) != len(refs) or not refs:
        raise ValueError(f"need as many hypotheses as references (> 0), got {len(hyps)} and "
                         f"{len(refs)}")
    raw = jiwer.wer(list(refs), [h if h.strip() else "<empty>" for h in hyps])
    nr, nh = [_normalise(r) or "<empty>" for r in refs], [_normalise(h) or "<empty>" for h in hyps]
    errors, words = [], []
    for r, h in zip(nr, nh):
        o = jiwer.process_words(r, h)
        errors.append(o.substitutions + o.deletions + o.insertions)
        words.append(o.substitutions + o.deletions + o.hits)
    iv = ratio_bootstrap(errors, words)
    return {"WER": 100 * raw, "WER_normalised": 100 * jiwer.wer(nr, nh),
            "WER_normalised_interval": [100 * iv.low, 100 * iv.high],
            "word_errors_per_utterance": errors, "ref_words_per_utterance": words}


def bleu_interval(stats, other=None, *, confidence: float = 0.95, resamples: int = 2000,
                  seed: int = 0) -> Interval:
    """Corpus BLEU of sentence statistics ``stats``
    (:func:`~leapformer.eval.sentence_bleu_stats`) with a percentile bootstrap that
    resamples the sentences (Koehn 2004;
    :func:`~leapformer.report.intervals.statistic_bootstrap`). With ``other`` (a second
    system's statistics on the same sentences): the BLEU difference ``stats - other``
    under the same resamples (paired)."""
    a = check_bleu_stats(stats, "stats")
    b = None if other is None else check_bleu_stats(other, "other")
    if b is not None and b.shape != a.shape:
        raise ValueError(f"other must cover the same {a.shape[0]} sentences, got {b.shape[0]}")

    def value(idx):
        v = bleu_from_stats(a[idx].sum(0))
        return v if b is None else v - bleu_from_stats(b[idx].sum(0))

    return statistic_bootstrap(a.shape[0], value, confidence, resamples, seed)


def _split(data: STData, split: str, max_utterances: int | None) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if max_utterances is not None and (isinstance(max_utterances, bool) or
                                       not isinstance(max_utterances, int) or max_utterances < 1):
        raise ValueError(f"max_utterances must be None or a positive int, got {max_utterances!r}")
    n = len(data.items[split])
    return n if max_utterances is None else min(n, max_utterances)


def _quality(config: dict, hyps: list[str], refs: list[str]) -> dict:
    if config["task"] == "asr":
        return word_error_rate(hyps, refs)
    lang = config["source"]["tgt_lang"]
    bleu = corpus_bleu(hyps, refs, lang)
    stats = sentence_bleu_stats(hyps, refs, lang)
    iv = bleu_interval(stats)
    return {"BLEU": bleu.score, "BLEU_interval": [iv.low, iv.high],
            "bleu_tokenizer": bleu.tokenizer,
            "bleu_signature": bleu.signature, "bleu_stats_per_utterance": stats.tolist()}


def run_st_eval(run: str | Path, *, split: str = "test", beam: int = 5,
                length_penalty: float = 1.0, max_len_a: float = 0.5, max_len_b: float = 10,
                max_utterances: int | None = None, batch_size: int = 16,
                checkpoint: str = "best", out: str | Path | None = None,
                device: str | torch.device = "cpu", progress=None) -> dict:
    """Offline decoding of ``split``: ``hyp.txt`` and ``results.json`` in ``out`` (default
    ``run/eval-<split>``): WER (ASR) or BLEU (ST), decoding speed. Length limit:
    ``max_len_a * encoder states + max_len_b`` tokens."""
    model, config = load_st_run(run, checkpoint=checkpoint, device=device)
    data = load_st_data(run)
    n = _split(data, split, max_utterances)
    out = Path(out) if out is not None else Path(run) / f"eval-{split}"
    feats = data.features[split]
    order = sorted(range(n), key=lambda j: feats[j].shape[0])
    hyps: list[str] = [""] * n
    t0 = time.perf_counter()
    tokens = 0
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        b = make_st_batch(data, split, rows, encoder_lengths=model.encoder_lengths)
        with torch.no_grad():
            enc = model.encode(b["src"].to(device), b["src_mask"].to(device))
        S = enc.memory.shape[1]
        mask = enc.padding_mask if enc.padding_mask is not None else \
            torch.zeros(len(rows), S, dtype=torch.bool, device=enc.memory.device)
        placeholder = torch.ones(len(rows), S, dtype=torch.long, device=enc.memory.device)
        outs = beam_search(_Encoded(model, enc), placeholder, mask, beam=beam,
                           length_penalty=length_penalty, max_len_a=max_len_a,
                           max_len_b=max_len_b)
        for j, ids in zip(rows, outs, strict=True):
            hyps[j] = data.tok.decode(ids)
            tokens += len(ids)
        if progress is not None:
            progress(len(rows))
    wall = time.perf_counter() - t0
    refs = data.refs[split][:n]
    res = {"run": str(Path(run).resolve()),
           "task": config["task"], "split": split, "checkpoint": checkpoint,
           "checkpoint_step": config.get("checkpoint_step"),
           "utterances": n, "beam": beam, "spec": config["spec"], "waitk_trained": config["waitk"],
           "causal_encoder": config["causal_encoder"], **_quality(config, hyps, refs),
           "target_tokens": tokens, "wall_s": wall, "hypotheses": str((out / "hyp.txt").resolve())}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "hyp.txt", "".join(h + "\n" for h in hyps))
    atomic_write_text(out / "results.json", json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


def simul_groups(count: int, concat: int) -> list[list[int]]:
    """Consecutive groups of ``concat`` of ``count`` utterance indices (a shorter last
    group dropped); ValueError when ``count < concat``."""
    if count < concat:
        raise ValueError(f"concat={concat} is more than the split's {count} utterances")
    return [list(range(i, i + concat)) for i in range(0, count - concat + 1, concat)]


def run_st_simul(run: str | Path, *, k: int, ratio: int | None = None, split: str = "test",
                 encoder: str = "incremental", segment_ms: float | None = None,
                 max_utterances: int | None = None, max_len_a: float = 0.5,
                 max_len_b: float = 10, checkpoint: str = "best", concat: int = 1,
                 out: str | Path | None = None, device: str | torch.device = "cpu",
                 compile_step: bool = True, progress=None) -> dict:
    """Simultaneous wait-``k`` decoding of ``split`` from the audio (one utterance at a
    time); ``ratio``: encoder states per read (default: the run's). ``compile_step``:
    the compiled fused decoder step (default; ``False``: the eager modules, and the
    folder name gets ``-eager``). ``concat``: join
    each ``concat`` consecutive utterances (audio and references) into one, for long
    inputs (``max_utterances`` counts the joined ones; :func:`simul_groups`). Writes
    ``out`` (default ``run/simul-<split>-k<k>-r<ratio>-<encoder>``, plus ``-c<concat>``
    when joined and ``-s<segment_ms>`` when given): ``instances.log``, ``config.yaml``,
    ``scores.json`` and ``results.json`` (module docstring; per-utterance AL and AL_CA
    are None for an utterance without output)."""
    if encoder not in ENCODER_MODES:
        raise ValueError(f"encoder must be one of {ENCODER_MODES}, got {encoder!r}")
    if isinstance(concat, bool) or not isinstance(concat, int) or concat < 1:
        raise ValueError(f"concat must be a positive int, got {concat!r}")
    model, config = load_st_run(run, checkpoint=checkpoint, device=device)
    data = load_st_data(run)
    ratio = config["ratio"] if ratio is None else ratio
    agent = SpeechSimulAgent(model, k, ratio=ratio, encoder=encoder, cmvn=data.cmvn,
                             sample_rate=SAMPLE_RATE, segment_ms=segment_ms,
                             max_len_a=max_len_a, max_len_b=max_len_b,
                             compile_step=compile_step)
    _split(data, split, max_utterances)  # checks both
    groups = simul_groups(len(data.items[split]), concat)[:max_utterances]
    n = len(groups)
    sep = "" if writes_without_spaces(config["source"]["tgt_lang"]) else " "
    refs = [sep.join(data.refs[split][i] for i in g) for g in groups]
    seg = "" if segment_ms is None else f"-s{segment_ms:g}"
    out = Path(out) if out is not None else Path(run) / (
        f"simul-{split}-k{k}-r{ratio}-{encoder}" + (f"-c{concat}" if concat > 1 else "") + seg
        + ("" if compile_step else "-eager"))
    agent.warm_up()  # the step's compile, untimed (no utterance's latency pays for it)
    records, hyps = [], []
    enc_s = dec_s = feat_s = 0.0
    tokens = 0
    audio_ms = 0.0
    for j, g in enumerate(groups):
        items = [data.items[split][i] for i in g]
        samples = np.concatenate([load_audio(it, sample_rate=SAMPLE_RATE)[0] for it in items])
        r = agent.translate(samples)
        hyp = data.tok.decode(r.tokens)
        hyps.append(hyp)
        enc_s, dec_s, feat_s = enc_s + r.encoder_s, dec_s + r.decoder_s, feat_s + r.feature_s
        tokens += len(r.tokens)
        audio_ms += r.source_ms
        records.append(InstanceRecord(index=j, prediction=hyp, delays=r.delays,
                                      elapsed=r.elapsed, source_length=r.source_ms,
                                      reference=refs[j], source=[str(it.audio) for it in items]))
        if progress is not None:
            progress(1)
    quality = _quality(config, hyps, refs)
    out.mkdir(parents=True, exist_ok=True)
    unit = {"latency_unit": "spm", "spm_model": (Path(run) / "spm.tgt.model").resolve()}
    write_instances(out / "instances.log", records, source_type="speech", **unit)
    scores = write_scores(out / "scores.json", records, bleu=quality.get("BLEU"), **unit)
    per = [corpus_latency([r]) if r.delays else {}  # no output: no latency (SimulEval skips it)
           for r in read_instances(out / "instances.log", **unit)]
    res = {"run": str(Path(run).resolve()),
           "task": config["task"], "split": split, "checkpoint": checkpoint,
           "checkpoint_step": config.get("checkpoint_step"),
           "utterances": n, "concat": concat, "k": k, "ratio": ratio, "encoder": encoder,
           "segment_ms": agent.segment_ms, "max_len_a": max_len_a, "max_len_b": max_len_b,
           "compile_step": compile_step,
           "decoder_compiled": bool(agent.step is not None and agent.step.compiled_once),
           "spec": config["spec"],
           "waitk_trained": config["waitk"], "causal_encoder": config["causal_encoder"],
           **quality, **scores, "latency_unit": "ms of source audio (delays); spm (|Y*|)",
           "simuleval_command": simuleval_command(
               out, **unit, sacrebleu_tokenizer=quality.get("bleu_tokenizer")),
           "target_tokens": tokens, "audio_s": audio_ms / 1000, "encoder_s": enc_s,
           "decoder_s": dec_s, "feature_s": feat_s,
           "decoder_ms_per_token": 1000 * dec_s / tokens if tokens else None,
           "AL_per_utterance": [p.get("AL") for p in per],
           "AL_CA_per_utterance": [p.get("AL_CA") for p in per],
           "instances": str((out / "instances.log").resolve()),
           "scores": str((out / "scores.json").resolve())}
    atomic_write_text(out / "results.json", json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res
