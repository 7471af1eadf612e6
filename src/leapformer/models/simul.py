"""Simultaneous wait-k decoding of a :class:`~leapformer.models.Seq2Seq` (docs/math.md §2, §4).

:func:`simultaneous_greedy` translates one sentence while it is being read,
one source token at a time, with the wait-k policy (Ma et al. 2019): target
token ``t`` (1-based) is written after ``g(t) = min(k + t - 1, |x|)`` source
tokens have been read. ``k`` at test time may differ from the ``k`` used in
training. When the last source token is read the source is finished: the
source EOS is read with it, and the agent writes until it predicts EOS or
reaches its maximum length ``floor(max_len_a * (|x| + 1) + max_len_b)``
tokens (``|x| + 1`` counts the source EOS, as :func:`~leapformer.models.greedy`
does). While the source is not finished EOS cannot be written (the agent is
forced to write a token: the schedule stays wait-k; the usual choice of
wait-k test-time decoding, STACL).

Units (SimulEval semantics for text): ``|x|`` counts source tokens without
the EOS; ``delays[i]`` is the number of source tokens read when target
token ``i + 1`` was written (``min(k + i, |x|)``); ``elapsed[i]`` the
cumulative compute time in milliseconds (encoding and decoding since the
start of the sentence) at that write, the computation part of SimulEval's
computation-aware latency.

:func:`~leapformer.models.translate_batch` (:mod:`leapformer.models.simul_batch`)
serves several sentences at once with the same policy per sentence and the
same results. Decoder steps run the compiled fused step by default
(``compile_step``; :mod:`leapformer.models.fused_step`).

Two ways to handle the growing source (``encoder=``):

- ``"incremental"`` (MLA Algorithm 1): the model must have a causal encoder
  (``Seq2Seq(..., causal_encoder=True)``). Each newly read token is encoded
  once, after the cached ones (``Encoder.new_cache`` / ``Encoder(chunk,
  cache=...)``), and its encoder output is *added* to every decoder layer's
  cross-attention state (``Decoder.extend_memory``): running sums for the
  linear family, appended keys and values for softmax. Nothing is recomputed.
- ``"reencode"`` (the baseline): after each read the whole prefix is encoded
  again with the model's encoder (bidirectional or causal) and every layer's
  cross-attention state is rebuilt from it.

In both, the decoder self-attention state carries over from write to write:
earlier target positions keep the hidden states computed with the source
they had read then (exactly what wait-k training with ``memory_prefix``
computes).

Lengths. LeaP, linear and softmax need none. cosFormer weighs positions by
lengths that docs/math.md §1.1-§1.2 define only for a complete source:
``incremental`` uses the **full** source length (EOS included) for its
encoder (``j / N``) and cross-attention key proportions -- an *oracle* a
real streaming system does not have -- and ``reencode`` uses the length of
the prefix read so far (nothing is reused, so the proportions may change).
A cosFormer *decoder* block (``dec`` or ``cross``) also needs the target
length ``M``, which must stay fixed while the decoder self-attention state
carries over: it is predicted once by the model's length predictor from the
full source (or given as ``target_length``) -- again an oracle. Which oracle
a run used is listed in :attr:`SimulResult.oracle`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.models.fused_step import FusedDecoderStep, shared_step, warm_up_step
from leapformer.models.lm import sinusoidal_embedding
from leapformer.models.search import max_lengths
from leapformer.models.seq2seq import Seq2Seq, Seq2SeqCache
from leapformer.nn.mechanisms import CosFormer

logger = logging.getLogger(__name__)

__all__ = ["ENCODER_MODES", "SimulAgent", "SimulResult", "decode_next", "decoder_step",
           "simultaneous_greedy"]

ENCODER_MODES = ("incremental", "reencode")


@dataclass
class SimulResult:
    """The output of one simultaneous translation.

    ``tokens``: written target ids (no BOS/EOS); ``delays[i]``: source tokens
    read when ``tokens[i]`` was written; ``elapsed[i]``: cumulative compute ms
    at that write; ``source_length``: ``|x|`` (tokens, no EOS); ``finished``:
    whether EOS ended the output (else the length limit); ``encoder_s`` /
    ``decoder_s``: seconds spent encoding (and updating the cross-attention
    state) and in decoder steps; ``decoder_steps``: decoder calls (tokens +
    the final EOS step); ``oracle``: lengths taken from the complete source
    (empty for LeaP / linear / softmax; see the module docstring);
    ``logits``: per decoder step ``[V]`` (float64 copy) with ``return_logits``.
    """

    tokens: list[int]
    delays: list[int]
    elapsed: list[float]
    source_length: int
    finished: bool
    encoder_s: float = 0.0
    decoder_s: float = 0.0
    decoder_steps: int = 0
    oracle: list[str] = field(default_factory=list)
    logits: list[Tensor] | None = None


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (wait-k lag in source tokens), got {k!r}")
    return k


def _cosformer_in(module) -> bool:
    return any(isinstance(m, CosFormer) for m in module.modules())


def embed_at(model: Seq2Seq, tokens: Tensor, positions: Tensor, *,
             source: bool = False) -> Tensor:
    """Encoder (``source=True``) or decoder input of ``tokens [B, T]`` at per-item
    1-based ``positions [B, T]`` (long): what :meth:`Seq2Seq.embed_source` and
    :meth:`Seq2Seq.decode_step` compute for positions shared by the batch."""
    emb, table = (model.src_embed, model.src_pos) if source else (model.tgt_embed, model.tgt_pos)
    x = emb(tokens) * model.embed_scale
    if table is not None:
        x = x + table(positions - 1)
    else:
        x = x + sinusoidal_embedding(positions, model.cfg.d_model).to(x.dtype)
    return model.dropout(x)


def _embed_target(model: Seq2Seq, tokens: Tensor, positions: Tensor) -> Tensor:
    return embed_at(model, tokens, positions)


def _last_logits(model: Seq2Seq, hidden: Tensor) -> Tensor:
    return model.project(hidden[:, -1])


def decoder_step(model: Seq2Seq, compile_step: bool) -> FusedDecoderStep | None:
    """The model's shared compiled decoder step (:func:`~leapformer.models.fused_step.
    shared_step`, target embedding and last-position logits traced in), or None for
    ``compile_step=False`` (eager only)."""
    if not isinstance(compile_step, bool):
        raise TypeError(f"compile_step must be a bool, got {compile_step!r}")
    return shared_step(model, model.decoder, embed=_embed_target, head=_last_logits) \
        if compile_step else None


def decode_next(model: Seq2Seq, step: FusedDecoderStep | None, last: Tensor,
                cache: Seq2SeqCache) -> Tensor:
    """Logits ``[B, V]`` of one decoder step on ``last [B, 1]`` (``cache`` updated in
    place), through ``step`` (:func:`decoder_step`) or, for None, the model's own
    :meth:`~Seq2Seq.decode_step`. The text and speech agents' decoder call."""
    if step is None:
        return model.decode_step(last, cache)[:, -1]
    position = cache.length + 1
    if model.tgt_pos is not None and position > model.cfg.max_positions:
        raise ValueError(f"position {position} is past the learned position table "
                         f"(max_positions={model.cfg.max_positions})")
    positions = torch.full_like(last, position)
    return step(last, cache.decoder, positions, owner=model, target_length=cache.target_length)


def _dummy_ids(cfg, n: int) -> list[int]:
    special = {cfg.pad_id, cfg.bos_id, cfg.eos_id}
    ids = [t for t in range(min(cfg.src_vocab_size, 64)) if t not in special]
    return [ids[i % len(ids)] for i in range(n)]


class SimulAgent:
    """A wait-k agent around a :class:`Seq2Seq` (see the module docstring).

    ``agent.translate(src_ids)`` translates one sentence (``src_ids``: source
    token ids without EOS, a list or 1-D tensor). ``k``: the wait-k lag;
    ``max_len_a``/``max_len_b``: length limit as in greedy search;
    ``encoder``: ``"incremental"`` or ``"reencode"``. ``compile_step`` (default
    on): decoder steps run the model's compiled
    :class:`~leapformer.models.fused_step.FusedDecoderStep` (made once per model,
    compiled after its first ``COMPILE_AFTER`` steps over all sentences; eager
    where compiling fails or a mechanism is not covered); ``False``: eager only.
    """

    def __init__(self, model: Seq2Seq, k: int, *, max_len_a: float = 1.5,
                 max_len_b: float = 10, encoder: str = "incremental",
                 compile_step: bool = True):
        if not isinstance(model, Seq2Seq):
            raise TypeError(f"model must be a Seq2Seq, got {type(model).__name__}")
        self.k = _check_k(k)
        if encoder not in ENCODER_MODES:
            raise ValueError(f"encoder must be one of {ENCODER_MODES}, got {encoder!r}")
        if encoder == "incremental" and not model.encoder.causal:
            raise ValueError("encoder='incremental' needs a model with a causal encoder "
                             "(Seq2Seq(..., causal_encoder=True)); use encoder='reencode' "
                             "(--encoder reencode) for a bidirectional encoder")
        for name, v in (("max_len_a", max_len_a), ("max_len_b", max_len_b)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if max_len_a < 0:
            raise ValueError(f"max_len_a must be >= 0, got {max_len_a!r}")
        self.step = decoder_step(model, compile_step)
        self.model, self.encoder = model, encoder
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.cos_source = _cosformer_in(model.encoder) or any(
            _cosformer_in(layer.cross_attn) for layer in model.decoder.layers
            if layer.cross_attn is not None)

    def warm_up(self, tokens: int = 12) -> bool:
        """Compile the decoder step now, on an untimed dummy translation of ``tokens``
        source tokens, so that no timed sentence pays for the compile (evaluations call
        it before their loop). Returns whether the step is compiled; a no-op without
        ``compile_step`` or once compiled."""
        return warm_up_step(self.step, lambda: self.translate(_dummy_ids(self.model.cfg, tokens)))

    # -- pieces ------------------------------------------------------------------
    def _source(self, src_ids) -> Tensor:
        cfg = self.model.cfg
        device = self.model.src_embed.weight.device
        if isinstance(src_ids, Tensor):
            if src_ids.dim() != 1 or src_ids.is_floating_point():
                raise ValueError(f"src_ids must be a 1-D integer tensor or a list of ints, got "
                                 f"{src_ids.dtype} {list(src_ids.shape)}")
            ids = src_ids.tolist()
        else:
            ids = list(src_ids)
        if not ids:
            raise ValueError("src_ids is empty: a source needs at least one token")
        for i, t in enumerate(ids):
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < cfg.src_vocab_size:
                raise ValueError(f"src_ids[{i}] = {t!r} is not a token id in "
                                 f"[0, {cfg.src_vocab_size})")
            if t in (cfg.pad_id, cfg.bos_id, cfg.eos_id):
                raise ValueError(f"src_ids[{i}] = {t} is a pad/bos/eos id; give the plain "
                                 f"source tokens (the agent adds EOS)")
        return torch.tensor([ids + [cfg.eos_id]], dtype=torch.long, device=device)

    def _target_length(self, full: Tensor, target_length, oracle: list[str]) -> Tensor | None:
        model = self.model
        if target_length is None and not model.needs_target_length:
            return None
        if target_length is None:
            oracle.append("target_length")
        enc = model.encode(full)
        return model._target_length(enc, target_length)

    def _new_cross(self, cache: Seq2SeqCache) -> None:
        """Fresh (empty) cross-attention caches; the target positions read so far kept."""
        for layer, lc in zip(self.model.decoder.layers, cache.decoder.layers, strict=True):
            queries = lc.cross_attn.queries
            lc.cross_attn = layer.cross_attn.new_cache(cache.batch_size, cross=True)
            lc.cross_attn.queries = queries

    def decode(self, last: Tensor, cache: Seq2SeqCache) -> Tensor:
        """Logits ``[B, V]`` of one decoder step on ``last [B, 1]`` (cache updated)."""
        return decode_next(self.model, self.step, last, cache)

    # -- the policy ----------------------------------------------------------------
    @torch.no_grad()
    def translate(self, src_ids, *, target_length: int | None = None,
                  return_logits: bool = False) -> SimulResult:
        """Translate one sentence simultaneously (see the module docstring)."""
        model = self.model
        was_training = model.training
        model.eval()
        try:
            return self._translate(self._source(src_ids), target_length, return_logits)
        finally:
            model.train(was_training)

    def _translate(self, full: Tensor, target_length, return_logits) -> SimulResult:
        model, cfg, k = self.model, self.model.cfg, self.k
        n = full.shape[1] - 1  # source tokens, EOS not counted
        limit = int(max_lengths(full, None, self.max_len_a, self.max_len_b)[0])
        oracle: list[str] = []
        M = self._target_length(full, target_length, oracle)
        incremental = self.encoder == "incremental"
        if incremental and self.cos_source:
            oracle.insert(0, "source_length")
        banned = [cfg.bos_id, cfg.pad_id]

        clock = time.perf_counter
        t_start = clock()
        enc_s = dec_s = 0.0
        dec = model.decoder.new_cache(1, max_length=limit + 1)
        cache = Seq2SeqCache(dec, M, 1)
        enc_cache = model.encoder.new_cache(1) if incremental else None
        read = 0  # source positions encoded (EOS included once finished)
        tokens: list[int] = []
        delays: list[int] = []
        elapsed: list[float] = []
        logits_out: list[Tensor] | None = [] if return_logits else None
        last = torch.full((1, 1), cfg.bos_id, dtype=torch.long, device=full.device)
        finished, steps = False, 0

        def read_to(count: int) -> None:
            """Read source tokens up to ``count`` (plus EOS when the source is done)."""
            nonlocal read, enc_s
            want = n + 1 if count >= n else count
            if want <= read:
                return
            t0 = clock()
            if incremental:
                # one token at a time, as a stream arrives (the EOS with the last token)
                for pos in range(read, want):
                    chunk = full[:, pos:pos + 1]
                    x = model.embed_source(chunk, start=pos)
                    mem = model.encoder(x, cache=enc_cache, length=n + 1 if self.cos_source
                                        else None)
                    model.decoder.extend_memory(cache.decoder, mem,
                                                source_length=n + 1 if self.cos_source else None)
            else:
                enc = model.encode(full[:, :want])
                self._new_cross(cache)
                model.decoder.extend_memory(cache.decoder, enc.memory,
                                            source_length=enc.src_lengths)
            read = want
            enc_s += clock() - t0

        while True:
            t = len(tokens) + 1
            read_to(min(k + t - 1, n))
            t0 = clock()
            logits = self.decode(last, cache)
            lp = F.log_softmax(logits.double(), dim=-1)
            lp[:, banned] = -math.inf
            source_done = read > n
            if not source_done:
                lp[:, cfg.eos_id] = -math.inf
            tok = int(lp.argmax(-1))
            dec_s += clock() - t0
            steps += 1
            if logits_out is not None:
                logits_out.append(logits[0].double().clone())
            if tok == cfg.eos_id:
                finished = True
                break
            tokens.append(tok)
            delays.append(min(read, n))
            elapsed.append((clock() - t_start) * 1e3)
            if len(tokens) >= limit:
                break
            last = torch.tensor([[tok]], dtype=torch.long, device=full.device)
        logger.debug("simul wait-%d (%s): %d source tokens, %d target tokens", k,
                     self.encoder, n, len(tokens))
        return SimulResult(tokens, delays, elapsed, n, finished, encoder_s=enc_s,
                           decoder_s=dec_s, decoder_steps=steps, oracle=oracle,
                           logits=logits_out)


def simultaneous_greedy(model: Seq2Seq, src_ids, k: int, *, max_len_a: float = 1.5,
                        max_len_b: float = 10, encoder: str = "incremental",
                        target_length: int | None = None, return_logits: bool = False,
                        compile_step: bool = True) -> SimulResult:
    """Wait-``k`` simultaneous greedy translation of one sentence (``src_ids``: source
    token ids without EOS); see :class:`SimulAgent` and the module docstring."""
    agent = SimulAgent(model, k, max_len_a=max_len_a, max_len_b=max_len_b, encoder=encoder,
                       compile_step=compile_step)
    return agent.translate(src_ids, target_length=target_length, return_logits=return_logits)
