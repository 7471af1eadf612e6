"""Evaluation of a translation run folder (:func:`~leapformer.tasks.translate.run_translate_train`).

``run_translate_eval(run)`` (offline beam search on a split, sacreBLEU with the
target language's tokenizer, hypotheses file, ``results.json``) and
``run_translate_simul(run, k=...)`` (:class:`~leapformer.models.SimulAgent`
per sentence; ``instances.log`` and ``scores.json`` in SimulEval's formats;
decoder throughput) read a run folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from leapformer._io import atomic_write_text
from leapformer.eval import (
    InstanceRecord,
    corpus_bleu,
    simuleval_command,
    write_instances,
    write_scores,
)
from leapformer.models import Seq2Seq, SimulAgent, beam_search, translate_batch
from leapformer.models.simul import ENCODER_MODES
from leapformer.models.simul_batch import serves_batches
from leapformer.tasks.translate.data import TranslationData
from leapformer.tasks.translate.run import EVAL_LENGTHS, fit_length_on_train, load_translate_run

__all__ = ["run_translate_eval", "run_translate_simul"]


def _eval_length_mode(model: Seq2Seq, data: TranslationData, config: dict, mode: str) -> str:
    """Set up ``mode`` of :data:`EVAL_LENGTHS` on ``model``; returns the predictor used."""
    if mode not in EVAL_LENGTHS:
        raise ValueError(f"length_predictor must be one of {EVAL_LENGTHS}, got {mode!r}")
    trained = config["length_predictor"]
    if mode != "trained" and not model.needs_target_length:
        raise ValueError(f"length_predictor={mode!r} needs a cosFormer decoder or cross block; "
                         f"spec {config['spec']!r} uses no target length")
    if mode == "trained" or mode == trained:
        return trained
    if mode == "conv":
        raise ValueError(f"length_predictor='conv' is trained with the model; this run was "
                         f"trained with {trained!r}")
    if mode in ("ratio", "lookup"):
        model.set_length_predictor(mode)
        fit_length_on_train(model, data)
    return mode


def _split_pairs(data: TranslationData, split: str, max_sentences: int | None):
    if split not in data.ids:
        raise ValueError(f"split must be one of {sorted(data.ids)}, got {split!r}")
    if max_sentences is not None and (isinstance(max_sentences, bool) or
                                      not isinstance(max_sentences, int) or max_sentences < 1):
        raise ValueError(f"max_sentences must be None or a positive int, got {max_sentences!r}")
    src, _ = data.ids[split]
    n = len(src) if max_sentences is None else min(max_sentences, len(src))
    return n, src[:n], data.texts[split][0][:n], data.texts[split][1][:n]


def run_translate_eval(run: str | Path, *, split: str = "test", beam: int = 5,
                       length_penalty: float = 1.0, max_len_a: float = 1.5,
                       max_len_b: float = 10, max_sentences: int | None = None,
                       batch_size: int = 32, checkpoint: str = "best",
                       length_predictor: str = "trained",
                       out: str | Path | None = None, device: str | torch.device = "cpu",
                       progress=None) -> dict:
    """Offline translation of ``split`` with beam search (``beam=1``: greedy is the
    same search with one beam) and corpus BLEU. Writes ``out`` (default
    ``run/eval-<split>``, ``run/eval-<split>-<length_predictor>`` for another
    predictor): ``hyp.txt`` (one detokenised hypothesis per line) and
    ``results.json``; returns the results. ``progress``: called with the
    number of sentences done after each batch.

    ``length_predictor`` (models with a cosFormer decoder or cross block, see
    :data:`EVAL_LENGTHS`): the run's own, a ``ratio``/``lookup`` predictor
    fitted now on the training pairs, or ``oracle`` (the reference length).
    The results then carry ``length_mae`` and ``length_ratio``: the mean
    absolute error and the mean of predicted / true decoder positions."""
    model, data, config = load_translate_run(run, checkpoint=checkpoint, device=device)
    used = _eval_length_mode(model, data, config, length_predictor)
    n, src, _, refs = _split_pairs(data, split, max_sentences)
    tgt = data.ids[split][1][:n]
    suffix = "" if length_predictor == "trained" else f"-{length_predictor}"
    out = Path(out) if out is not None else Path(run) / f"eval-{split}{suffix}"
    eos = model.cfg.eos_id
    order = sorted(range(n), key=lambda j: len(src[j]))
    hyps: list[str | None] = [None] * n
    t0 = time.perf_counter()
    tokens = 0
    length_err = length_ratio = 0.0
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        S = max(len(src[j]) for j in rows) + 1
        x = torch.zeros(len(rows), S, dtype=torch.long)
        for r, j in enumerate(rows):
            x[r, :len(src[j]) + 1] = torch.tensor(src[j] + [eos])
        x = x.to(device)
        mask = x == model.cfg.pad_id
        true_m = torch.tensor([len(tgt[j]) + 1 for j in rows], device=device)
        target_length = None
        if model.needs_target_length:
            if used == "oracle":
                target_length = true_m
            else:
                with torch.no_grad():
                    target_length = model.predict_target_length(model.encode(x, mask))
            length_err += float((target_length - true_m).abs().sum())
            length_ratio += float((target_length / true_m).sum())
        out_ids = beam_search(model, x, mask, beam=beam, length_penalty=length_penalty,
                              max_len_a=max_len_a, max_len_b=max_len_b,
                              target_length=target_length)
        for j, ids in zip(rows, out_ids):
            hyps[j] = data.tgt_tok.decode(ids)
            tokens += len(ids)
        if progress is not None:
            progress(len(rows))
    wall = time.perf_counter() - t0
    tgt_lang = config["source"]["tgt_lang"]
    bleu = corpus_bleu(hyps, refs, tgt_lang)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "hyp.txt", "".join(h + "\n" for h in hyps))
    res = {"run": str(Path(run).resolve()),
           "split": split, "checkpoint": checkpoint,
           "checkpoint_step": config.get("checkpoint_step"), "sentences": n,
           "beam": beam, "length_penalty": length_penalty, "max_len_a": max_len_a,
           "max_len_b": max_len_b, "spec": config["spec"], "waitk_trained": config["waitk"],
           "causal_encoder": config["causal_encoder"],
           "length_predictor": used if model.needs_target_length else None,
           "length_mae": length_err / n if model.needs_target_length else None,
           "length_ratio": length_ratio / n if model.needs_target_length else None,
           "BLEU": bleu.score, "bleu_tokenizer": bleu.tokenizer,
           "bleu_signature": bleu.signature, "bleu_bp": bleu.bp,
           "bleu_precisions": list(bleu.precisions), "target_tokens": tokens,
           "wall_s": wall, "target_tokens_per_s": tokens / wall if wall > 0 else None,
           "hypotheses": str((out / "hyp.txt").resolve())}
    atomic_write_text(out / "results.json", json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res


def run_translate_simul(run: str | Path, *, k: int, split: str = "test",
                        encoder: str = "incremental", max_sentences: int | None = None,
                        max_len_a: float = 1.5, max_len_b: float = 10,
                        source_ms_per_token: float = 300.0, checkpoint: str = "best",
                        out: str | Path | None = None, device: str | torch.device = "cpu",
                        batch_size: int = 1, compile_step: bool = True,
                        progress=None) -> dict:
    """Simultaneous wait-``k`` translation of ``split``, ``batch_size`` sentences at a
    time (:func:`~leapformer.models.translate_batch`: each sentence has its own
    policy and state, and gets the tokens it gets alone; its compute times are
    the batch's, as a server's client would see them). ``compile_step``: the
    compiled fused decoder step (see :class:`~leapformer.models.SimulAgent`).

    Writes ``out`` (default ``run/simul-<split>-k<k>-<encoder>``):
    ``instances.log`` (SimulEval JSON lines: delays in source subword tokens,
    one per target subword; ``elapsed`` = delays x ``source_ms_per_token`` +
    compute ms, ``source_duration_ms`` = |X| x ``source_ms_per_token``) and
    its ``config.yaml`` (latency unit ``spm`` with the run's target
    SentencePiece model, so the reference length is counted in target
    subwords), ``scores.json`` (BLEU, AL, LAAL, AP, DAL and the
    computation-aware ``_CA`` scores) and ``results.json`` (the scores plus BLEU
    tokenizer, decoder throughput in target tokens/s, the oracles the agent
    used, and ``simuleval_command``: the SimulEval 1.1.4 command that rescores
    ``out`` to the same AL, LAAL, AP and DAL); returns the results.
    ``progress``: called with the number of sentences done after each batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if encoder not in ENCODER_MODES:
        raise ValueError(f"encoder must be one of {ENCODER_MODES}, got {encoder!r}")
    if not source_ms_per_token > 0:
        raise ValueError(f"source_ms_per_token must be positive, got {source_ms_per_token!r}")
    model, data, config = load_translate_run(run, checkpoint=checkpoint, device=device)
    agent = SimulAgent(model, k, max_len_a=max_len_a, max_len_b=max_len_b, encoder=encoder,
                       compile_step=compile_step)
    n, src, _, refs = _split_pairs(data, split, max_sentences)
    out = Path(out) if out is not None else Path(run) / f"simul-{split}-k{k}-{encoder}"
    records, hyps = [], []
    dec_s = enc_s = 0.0
    tokens = steps = 0
    oracle: set[str] = set()
    r = float(source_ms_per_token)
    agent.warm_up()  # the step's compile, untimed (no sentence's latency pays for it)
    results = []
    for start in range(0, n, batch_size):
        rows = list(range(start, min(start + batch_size, n)))
        done = [agent.translate(src[rows[0]])] if len(rows) == 1 else \
            translate_batch(agent, [src[j] for j in rows])
        # a batch's sentences share its compute: each reports the batch's time so far,
        # so the batch's total is their largest (their sum when served one at a time)
        total = max if serves_batches(agent) else sum
        dec_s += total(res.decoder_s for res in done)
        enc_s += total(res.encoder_s for res in done)
        results += done
        if progress is not None:
            progress(len(rows))
    for j, res in enumerate(results):
        hyp = data.tgt_tok.decode(res.tokens)
        hyps.append(hyp)
        tokens += len(res.tokens)
        steps += res.decoder_steps
        oracle.update(res.oracle)
        records.append(InstanceRecord(
            index=j, prediction=hyp, delays=res.delays,
            elapsed=[d * r + e for d, e in zip(res.delays, res.elapsed)],
            source_length=res.source_length, reference=refs[j],
            source=" ".join(data.src_tok.id_to_piece(t) for t in src[j]),
            reference_length=len(data.tgt_tok.encode(refs[j])),
            source_duration_ms=res.source_length * r))
    tgt_lang = config["source"]["tgt_lang"]
    bleu = corpus_bleu(hyps, refs, tgt_lang)
    out.mkdir(parents=True, exist_ok=True)
    # one delay per target subword: SimulEval must count the reference in the same pieces
    unit = {"latency_unit": "spm", "spm_model": (Path(run) / "spm.tgt.model").resolve()}
    write_instances(out / "instances.log", records, **unit)
    scores = write_scores(out / "scores.json", records, bleu=bleu.score, **unit)
    res = {"run": str(Path(run).resolve()),
           "split": split, "checkpoint": checkpoint,
           "checkpoint_step": config.get("checkpoint_step"), "sentences": n, "k": k,
           "encoder": encoder, "batch_size": batch_size, "compile_step": compile_step,
           "spec": config["spec"], "waitk_trained": config["waitk"],
           "causal_encoder": config["causal_encoder"], **scores,
           "bleu_tokenizer": bleu.tokenizer, "bleu_signature": bleu.signature,
           "latency_unit": "source subword tokens", "source_ms_per_token": r,
           "simuleval_command": simuleval_command(out, **unit, sacrebleu_tokenizer=bleu.tokenizer),
           "oracle": sorted(oracle), "target_tokens": tokens, "decoder_steps": steps,
           "decoder_s": dec_s, "encoder_s": enc_s,
           "decoder_tokens_per_s": tokens / dec_s if dec_s > 0 else None,
           "instances": str((out / "instances.log").resolve()),
           "scores": str((out / "scores.json").resolve())}
    atomic_write_text(out / "results.json", json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    return res
