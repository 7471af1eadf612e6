"""Batched simultaneous wait-k decoding: one :class:`~leapformer.models.SimulAgent`
serving several sentences at once (what a translation server runs).

:func:`translate_batch` runs the agent's policy (module docstring of
:mod:`leapformer.models.simul`) for ``B`` sentences together:

- each sentence keeps its own policy: target token ``t`` of sentence ``b`` is
  written after ``g_b(t) = min(k + t - 1, |x_b|)`` of its source tokens are
  read (with its EOS once its source is finished), and each sentence stops on
  its own (EOS, or its own length limit);
- per-item states: one decoder cache and one encoder cache with ``B`` rows.
  Under wait-k every sentence writes its ``t``-th token in round ``t``, so one
  batched decoder step per round serves all of them, every row at target
  position ``t``. A finished row keeps stepping on a dummy token (static
  shapes for the compiled step); its outputs are dropped, and rows never mix;
- reading, ``incremental``: the newly read source is encoded one position at a
  time, each row that reads at that sub-step giving its next token and the
  others a padded slot (``key_padding_mask``). A padded slot adds nothing to
  the encoder's causal state nor to the cross-attention state and takes no
  position, so every row sees exactly its own prefix. ``reencode``: the
  prefixes read so far are encoded again as one right-padded batch.

So the results equal those of one sentence at a time: the same tokens and
delays, logits up to float rounding (tested).

Times: the sentences of a batch share the computation. A sentence's
``elapsed[i]`` is the batch's clock at its ``i``-th write, and its
``encoder_s``/``decoder_s`` the batch's compute up to its last step (the
latency a sentence served in a batch sees; throughput is the batch's).

cosFormer in a source block (encoder or cross-attention) weighs keys by their
positions, and a cosFormer decoder by a per-sentence target length: models
with either are translated one sentence at a time here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.models.search import max_lengths
from leapformer.models.seq2seq import Seq2SeqCache
from leapformer.models.simul import SimulAgent, SimulResult, embed_at

__all__ = ["serves_batches", "translate_batch"]


def serves_batches(agent: SimulAgent) -> bool:
    """Whether :func:`translate_batch` runs ``agent``'s sentences together (False: one
    at a time, for cosFormer source blocks or target lengths)."""
    return not (agent.cos_source or agent.model.needs_target_length)


def translate_batch(agent: SimulAgent, sources: Sequence, *,
                    return_logits: bool = False) -> list[SimulResult]:
    """Translate ``sources`` (each a list or 1-D tensor of source ids without EOS)
    together with ``agent``'s policy; one :class:`SimulResult` per source, in order
    (see the module docstring)."""
    if not isinstance(agent, SimulAgent):
        raise TypeError(f"agent must be a SimulAgent, got {type(agent).__name__}")
    if isinstance(sources, (str, bytes, Tensor)) or not isinstance(sources, Sequence) \
            or not sources:
        raise ValueError("sources must be a non-empty list of source token lists")
    model = agent.model
    if not serves_batches(agent):
        return [agent.translate(s, return_logits=return_logits) for s in sources]
    fulls = [agent._source(s) for s in sources]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _translate(agent, fulls, return_logits)
    finally:
        model.train(was_training)


class _Reader:
    """The source side of a batch: what each row has read, encoded as it arrives."""

    def __init__(self, agent: SimulAgent, fulls: list[Tensor], cache: Seq2SeqCache):
        self.agent, self.model, self.cache = agent, agent.model, cache
        cfg = self.model.cfg
        self.n = [f.shape[1] - 1 for f in fulls]
        B, S = len(fulls), max(self.n) + 1
        self.src = torch.full((B, S), cfg.pad_id, dtype=torch.long, device=fulls[0].device)
        for b, f in enumerate(fulls):
            self.src[b, :f.shape[1]] = f[0]
        self.read = [0] * B
        self.incremental = agent.encoder == "incremental"
        self.enc_cache = self.model.encoder.new_cache(B) if self.incremental else None

    def read_to(self, want: list[int]) -> None:
        """Read row ``b`` up to ``want[b]`` source positions (EOS counted)."""
        if all(w <= r for w, r in zip(want, self.read)):
            return
        if self.incremental:
            self._stream(want)
        else:
            self._reencode(want)

    def _stream(self, want: list[int]) -> None:
        model, src, pad_id = self.model, self.src, self.model.cfg.pad_id
        device = src.device
        while True:
            reading = [r < w for r, w in zip(self.read, want)]
            if not any(reading):
                return
            at = torch.tensor(self.read, device=device).clamp_max(src.shape[1] - 1)[:, None]
            mask = ~torch.tensor(reading, device=device)[:, None]  # [B, 1], True = no token
            chunk = src.gather(1, at).masked_fill(mask, pad_id)
            x = embed_at(model, chunk, at + 1, source=True)
            mask = mask if not all(reading) else None
            mem = model.encoder(x, cache=self.enc_cache, key_padding_mask=mask)
            model.decoder.extend_memory(self.cache.decoder, mem, key_padding_mask=mask)
            self.read = [r + int(go) for r, go in zip(self.read, reading)]

    def _reencode(self, want: list[int]) -> None:
        model, device = self.model, self.src.device
        length = max(want)
        mask = torch.arange(length, device=device)[None, :] >= \
            torch.tensor(want, device=device)[:, None]
        x = self.src[:, :length].masked_fill(mask, model.cfg.pad_id)
        enc = model.encode(x, mask)
        self.agent._new_cross(self.cache)
        model.decoder.extend_memory(self.cache.decoder, enc.memory,
                                    key_padding_mask=enc.padding_mask,
                                    source_length=enc.src_lengths)
        self.read = list(want)


def _translate(agent: SimulAgent, fulls: list[Tensor], return_logits: bool) -> list[SimulResult]:
    model, cfg, k = agent.model, agent.model.cfg, agent.k
    B, device = len(fulls), fulls[0].device
    limits = [int(max_lengths(f, None, agent.max_len_a, agent.max_len_b)[0]) for f in fulls]
    clock = time.perf_counter
    t_start = clock()
    enc_s = dec_s = 0.0
    cache = Seq2SeqCache(model.decoder.new_cache(B, max_length=max(limits) + 1), None, B)
    reader = _Reader(agent, fulls, cache)
    n = reader.n
    tokens: list[list[int]] = [[] for _ in range(B)]
    delays: list[list[int]] = [[] for _ in range(B)]
    elapsed: list[list[float]] = [[] for _ in range(B)]
    logits_out: list[list[Tensor]] = [[] for _ in range(B)]
    finished, steps = [False] * B, [0] * B
    times: list[tuple[float, float]] = [(0.0, 0.0)] * B
    active = [True] * B
    last = torch.full((B, 1), cfg.bos_id, dtype=torch.long, device=device)
    banned = [cfg.bos_id, cfg.pad_id]
    t = 0
    while any(active):
        t += 1
        want = [(n[b] + 1 if min(k + t - 1, n[b]) >= n[b] else k + t - 1) if active[b]
                else reader.read[b] for b in range(B)]
        t0 = clock()
        reader.read_to(want)
        enc_s += clock() - t0
        t0 = clock()
        logits = agent.decode(last, cache)
        lp = F.log_softmax(logits.double(), dim=-1)
        lp[:, banned] = -math.inf
        reading = torch.tensor([r <= m for r, m in zip(reader.read, n)], device=lp.device)
        lp[:, cfg.eos_id] = lp[:, cfg.eos_id].masked_fill(reading, -math.inf)
        chosen = lp.argmax(-1)
        tok = chosen.tolist()
        dec_s += clock() - t0
        now = (clock() - t_start) * 1e3
        for b in range(B):
            if not active[b]:
                continue
            steps[b] += 1
            if return_logits:
                logits_out[b].append(logits[b].double().clone())
            if tok[b] == cfg.eos_id:
                finished[b], active[b] = True, False
            else:
                tokens[b].append(tok[b])
                delays[b].append(min(reader.read[b], n[b]))
                elapsed[b].append(now)
                active[b] = len(tokens[b]) < limits[b]
            if not active[b]:
                times[b] = (enc_s, dec_s)
        last = chosen[:, None].to(device)
    return [SimulResult(tokens[b], delays[b], elapsed[b], n[b], finished[b],
                        encoder_s=times[b][0], decoder_s=times[b][1], decoder_steps=steps[b],
                        logits=logits_out[b] if return_logits else None)
            for b in range(B)]
