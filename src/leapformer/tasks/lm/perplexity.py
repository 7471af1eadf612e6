"""Perplexity of a causal LM over a token stream, fairseq ``eval-lm --context-window`` style.

:func:`evaluate_perplexity` cuts the stream with
:func:`leapformer.data.lm_corpus.sliding_windows` (``window`` tokens read per
window, ``stride`` new tokens scored per window): every token is scored exactly
once, predicted from up to ``window`` tokens just before it (the ``bos`` token
counted). ``stride == window`` is fairseq's plain ``eval-lm`` (non-overlapping
blocks: the first token of a block is predicted from the token before it
alone); ``stride = 1`` with ``window = 512`` is
docs/math.md §5.2's ``--tokens-per-sample 512 --context-window 511`` (one window per
token, every token predicted from the 512 tokens before it, fewer at the start).

The result also holds the nll and token count of up to ``blocks`` runs of
consecutive windows (``block_nll``, ``block_tokens``): the units a block
bootstrap resamples for a confidence interval of one model's perplexity, or of
the difference between two models scored on the same stream
(:func:`leapformer.report.intervals.block_bootstrap`).

Windows are batched, right-padded; padded slots are masked
(``key_padding_mask``), so that a length-dependent mechanism (cosFormer) sees
each window's own length, and they are never scored. Sums are accumulated in
float64. Under ``torchrun`` (``dist=``) every rank takes every
``world_size``-th batch and the sums are all-reduced.
"""

from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.data.lm_corpus import sliding_windows
from leapformer.models.generate import cosformer_length_mode
from leapformer.models.lm import CausalLM
from leapformer.tasks.lm.hf import HFCausalLM
from leapformer.train.distributed import DistInfo, all_reduce_sum

logger = logging.getLogger(__name__)

COSFORMER_LENGTHS = ("window", "train", "stepping")


def evaluate_perplexity(model: CausalLM | HFCausalLM, ids, *, window: int, stride: int,
                        batch_size: int = 8, bos: int | None = None, words: int | None = None,
                        cosformer_length: str = "window", amp: bool = False,
                        dist: DistInfo | None = None, progress=None, blocks: int = 200) -> dict:
    """Next-token negative log-likelihood of the stream ``ids`` (1-D ints) under
    ``model``: a :class:`~leapformer.models.CausalLM` or a ``transformers`` model in a
    :class:`~leapformer.tasks.lm.hf.HFCausalLM`.

    ``window``: tokens the model reads per window (its context, the scored token's
    predecessor included); ``stride``: tokens scored per window (``1 <= stride <=
    window``). ``bos``: the id read before ``ids[0]`` (fairseq reads ``</s>``),
    so all ``len(ids)`` tokens are scored; without it ``ids[0]`` is context only.
    ``words``: the number of words the scored text holds, for a per-word
    perplexity (``exp(total nll / words)``). ``cosformer_length``: cosFormer's
    ``L`` — ``"window"`` (each window's own length, the default), ``"train"``
    (the model's ``context_length``) or ``"stepping"`` (``L = i`` for query
    ``i``). ``progress``: optional callable taking the number of windows done.
    ``blocks``: how many runs of consecutive windows to report (fewer when there
    are fewer windows).

    Returns ``{"nll_per_token", "ppl", "tokens", "nll_sum", "words",
    "nll_per_word", "ppl_per_word", "window", "stride", "block_nll",
    "block_tokens"}`` (nll in nats; the per-word entries are None without
    ``words``). Runs in eval mode without
    gradients; the model's mode is restored.
    """
    if not isinstance(model, (CausalLM, HFCausalLM)):
        raise TypeError(f"model must be a CausalLM or an HFCausalLM, got {type(model).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if words is not None and (not isinstance(words, int) or words < 1):
        raise ValueError(f"words must be None or a positive int, got {words!r}")
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks must be a positive int, got {blocks!r}")
    if cosformer_length not in COSFORMER_LENGTHS:
        raise ValueError(f"cosformer_length must be one of {COSFORMER_LENGTHS}, got "
                         f"{cosformer_length!r}")
    windows = sliding_windows(ids, window, stride, bos=bos)
    V = model.cfg.vocab_size
    flat = torch.as_tensor(np.asarray(ids) if not isinstance(ids, Tensor) else ids)
    for name, bad in (("ids", flat[(flat < 0) | (flat >= V)]),
                      ("bos", torch.tensor([] if bos is None or 0 <= bos < V else [bos]))):
        if len(bad):
            raise ValueError(f"{name} holds token id {int(bad[0])}, outside the model's "
                             f"vocabulary [0, {V})")
    dist = dist or DistInfo()
    device = model.embed.weight.device
    pad = model.cfg.pad_id if model.cfg.pad_id is not None else 0
    target_length = model.cfg.context_length if cosformer_length == "train" else None
    mode = cosformer_length_mode(model, "stepping") if cosformer_length == "stepping" \
        else contextlib.nullcontext()
    amp_ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp \
        else contextlib.nullcontext()
    per_window = np.zeros((2, len(windows)))  # nll, scored tokens
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), mode:
            for b, a in enumerate(range(0, len(windows), batch_size)):
                group = [windows[k] for k in range(a, min(a + batch_size, len(windows)))]
                if b % dist.world_size == dist.rank:
                    per_window[:, a:a + len(group)] = _score(model, group, pad, target_length,
                                                             device, amp_ctx)
                if progress is not None:
                    progress(len(group))
    finally:
        model.train(was_training)
    if dist.enabled:
        per_window = np.asarray(all_reduce_sum(per_window.ravel().tolist(), dist)).reshape(2, -1)
    nll_sum, count = float(per_window[0].sum()), int(per_window[1].sum())
    if count != windows.n_targets:  # every token exactly once
        raise RuntimeError(f"scored {count} tokens, expected {windows.n_targets}")
    per_token = nll_sum / count
    out = {"nll_per_token": per_token, "ppl": math.exp(per_token), "tokens": count,
           "nll_sum": nll_sum, "words": words, "nll_per_word": None, "ppl_per_word": None,
           "window": window, "stride": stride}
    groups = np.array_split(np.arange(len(windows)), min(blocks, len(windows)))
    out["block_nll"] = [round(float(per_window[0, g].sum()), 6) for g in groups]
    out["block_tokens"] = [int(per_window[1, g].sum()) for g in groups]
    if words is not None:
        out["nll_per_word"] = nll_sum / words
        out["ppl_per_word"] = math.exp(min(nll_sum / words, 700.0))
    logger.info("perplexity over %d tokens (window %d, stride %d): %.3f", count, window, stride,
                out["ppl"])
    return out


def _score(model: CausalLM | HFCausalLM, group, pad: int, target_length, device,
           amp_ctx) -> np.ndarray:
    """``[2, len(group)]``: the summed nll and the count of the scored targets of each
    window of ``group``."""
    width = max(len(w.inputs) for w in group)
    B = len(group)
    inputs = torch.full((B, width), pad, dtype=torch.int64)
    targets = torch.full((B, width), pad, dtype=torch.int64)
    padding = torch.ones((B, width), dtype=torch.bool)
    scored = torch.zeros((B, width), dtype=torch.bool)
    for i, w in enumerate(group):
        n = len(w.inputs)
        inputs[i, :n], targets[i, :n] = w.inputs, w.targets
        padding[i, :n] = False
        scored[i, w.first:n] = True
    inputs, targets, scored = inputs.to(device), targets.to(device), scored.to(device)
    mask = padding.to(device) if bool(padding.any()) else None
    with amp_ctx:
        logits = model(inputs, key_padding_mask=mask, target_length=target_length)
    nll = _token_nll(logits, targets).double().masked_fill(~scored, 0.0)
    return np.stack([nll.sum(1).cpu().numpy(), scored.sum(1).cpu().numpy()])


def _token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """``-log p(targets)`` per position, ``[B, T]`` float32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           reduction="none").view(targets.shape)
