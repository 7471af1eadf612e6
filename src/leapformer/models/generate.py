"""Batched autoregressive generation with a :class:`~leapformer.models.CausalLM`.

Prompts of different lengths are left-padded into one batch and prefilled
through the model's decoding cache in one call (constant-size running sums for
linear mechanisms, keys and values for softmax); then one token per step.
Positions are per item (1 at an item's first real token) and padded slots
never enter any attention state (see :mod:`leapformer.models.lm`), so an item
gets the tokens it would get alone (exactly, up to floating-point rounding).

cosFormer needs a length ``L`` for its re-weighting ``cos(pi/2 (i - j) / L)``;
training used the sample length. ``cosformer_length`` chooses it here:

- ``"train"``: ``L = context_length`` (the training length), fixed; an int
  gives another fixed ``L``. Constant-size state.
- ``"stepping"``: ``L = i``, the current length, for query ``i``: the weight of
  key ``j`` becomes ``cos(pi/2 (1 - j / i))``, which does not factorise, so
  every past key is kept (the MLA paper's failing baseline, for comparison;
  the model's cosFormer layers run with ``length_mode="stepping"`` for the
  duration of the call).

LeaP and the other mechanisms need no length.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from leapformer.models.fused_step import COMPILE_AFTER, FusedDecoderStep, shared_step
from leapformer.models.lm import CausalLM
from leapformer.nn.mechanisms import CosFormer

logger = logging.getLogger(__name__)

STRATEGIES = ("greedy", "sample")
COSFORMER_LENGTHS = ("train", "stepping")


@contextlib.contextmanager
def cosformer_length_mode(model: torch.nn.Module, mode: str):
    """Set ``length_mode`` (``"given"`` or ``"stepping"``) of every cosFormer layer of
    ``model`` for the duration of the block; restored afterwards."""
    mechs = [m for m in model.modules() if isinstance(m, CosFormer)]
    saved = [m.length_mode for m in mechs]
    try:
        for m in mechs:
            m.length_mode = mode
        yield
    finally:
        for m, old in zip(mechs, saved, strict=True):
            m.length_mode = old


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_arguments(model, prompts, max_new_tokens, strategy, temperature, top_k, top_p,
                     eos_id, pad_id, seed, cosformer_length, compile_step) -> list[list[int]]:
    if not isinstance(model, CausalLM):
        raise TypeError(f"model must be a CausalLM, got {type(model).__name__}")
    V = model.cfg.vocab_size
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) or not prompts:
        raise ValueError("prompts must be a non-empty list of token lists")
    out = []
    for b, p in enumerate(prompts):
        if isinstance(p, Tensor):
            p = p.tolist()
        if isinstance(p, (str, bytes)) or not isinstance(p, Sequence):
            raise TypeError(f"prompts[{b}] must be a list of token ids, got {type(p).__name__}")
        if len(p) == 0:
            raise ValueError(f"prompts[{b}] is empty; every prompt needs at least one token")
        bad = [t for t in p if not _is_int(t) or not 0 <= t < V]
        if bad:
            raise ValueError(f"prompts[{b}] holds {bad[0]!r}, not a token id in [0, {V})")
        out.append(list(p))
    if not _is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")
    if eos_id is not None and (not _is_int(eos_id) or not 0 <= eos_id < V):
        raise ValueError(f"eos_id must be None or a token id in [0, {V}), got {eos_id!r}")
    if not _is_int(pad_id) or not 0 <= pad_id < V:
        raise ValueError(f"pad_id must be a token id in [0, {V}), got {pad_id!r}")
    if seed is not None and not _is_int(seed):
        raise ValueError(f"seed must be None or an int, got {seed!r}")
    if not isinstance(compile_step, bool):
        raise TypeError(f"compile_step must be a bool, got {compile_step!r}")
    if cosformer_length not in COSFORMER_LENGTHS and \
            not (_is_int(cosformer_length) and cosformer_length >= 1):
        raise ValueError(f"cosformer_length must be one of {COSFORMER_LENGTHS} or a positive "
                         f"int, got {cosformer_length!r}")
    last = max(map(len, out)) + max_new_tokens - 1
    if model.cfg.positions == "learned" and last > model.cfg.context_length:
        raise ValueError(f"max_new_tokens={max_new_tokens} after a prompt of "
                         f"{max(map(len, out))} tokens reaches position {last}, past the learned "
                         f"positions (context_length={model.cfg.context_length})")
    return out


def choose_next(logits: Tensor, *, strategy: str = "greedy", temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Next tokens ``[B]`` from ``logits [B, V]``: the argmax (``greedy``), or a draw
    from ``softmax(logits / temperature)`` restricted to the ``top_k`` largest and
    to the smallest set of largest whose probability reaches ``top_p`` (nucleus)."""
    if strategy == "greedy":
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches top_p
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def _embed(model: CausalLM, tokens: Tensor, positions: Tensor) -> Tensor:
    """The decoder input of one step (the fused step's ``embed``)."""
    return model.dropout(model.embed_tokens(tokens, positions))


def _head(model: CausalLM, hidden: Tensor) -> Tensor:
    """Logits ``[B, V]`` of the last position (the fused step's ``head``)."""
    return model.project(hidden[:, -1])


def lm_step(model: CausalLM, *, compile: bool = True,
            compile_after: int = COMPILE_AFTER) -> FusedDecoderStep:
    """A new :class:`~leapformer.models.fused_step.FusedDecoderStep` of ``model`` with
    the embedding and output head :func:`generate` uses: ``step(tokens [B, 1],
    cache.decoder, positions [B, 1], owner=model, target_length=...)`` returns the
    logits ``[B, V]`` of the next token (the caller advances ``cache.lengths``).
    ``generate`` keeps one per model (:func:`~leapformer.models.fused_step.shared_step`);
    this one is the caller's own, e.g. a benchmark's with ``compile_after=0``."""
    return FusedDecoderStep(model.decoder, embed=_embed, head=_head, compile=compile,
                            compile_after=compile_after)


def generate(model: CausalLM, prompts: list[list[int]], max_new_tokens: int, *,
             strategy: str = "greedy", temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, eos_id: int | None = None, pad_id: int = 0,
             seed: int | None = None, cosformer_length: str | int = "train",
             compile_step: bool = True) -> list[list[int]]:
    """Continue each prompt by up to ``max_new_tokens`` tokens; returns the new tokens
    per prompt (ending with ``eos_id`` where it was produced).

    ``strategy``: ``"greedy"`` or ``"sample"`` (with ``temperature``, ``top_k``,
    ``top_p``; see :func:`choose_next`); ``seed`` makes sampling reproducible (a
    generator of its own; the global RNG is untouched). ``pad_id`` only fills
    the left padding (it is masked). ``cosformer_length``: ``"train"``,
    ``"stepping"`` or an int (see the module docstring). Runs in eval mode
    under ``torch.inference_mode`` (the training mode is restored).

    ``compile_step`` (default on): decode with the model's compiled
    :class:`~leapformer.models.fused_step.FusedDecoderStep` (made once per
    model; it compiles after its first ``COMPILE_AFTER`` steps, counted over
    calls, and runs eagerly where compiling fails or a mechanism is not
    covered). The tokens are those of the eager path (up to float rounding in
    the logits). ``False``: the eager modules only.
    """
    prompts = _check_arguments(model, prompts, max_new_tokens, strategy, temperature, top_k,
                               top_p, eos_id, pad_id, seed, cosformer_length, compile_step)
    if max_new_tokens == 0:
        return [[] for _ in prompts]
    device = model.embed.weight.device
    B, P = len(prompts), max(map(len, prompts))
    tokens = torch.full((B, P), pad_id, dtype=torch.long)
    mask = torch.ones(B, P, dtype=torch.bool)
    for b, p in enumerate(prompts):
        tokens[b, P - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[b, P - len(p):] = False
    tokens, mask = tokens.to(device), mask.to(device)
    padded = any(len(p) < P for p in prompts)
    stepping = cosformer_length == "stepping"
    length = None if stepping else \
        (model.cfg.context_length if cosformer_length == "train" else cosformer_length)
    generator = None
    if seed is not None and strategy == "sample":
        generator = torch.Generator(device=device).manual_seed(seed)
    pick = dict(strategy=strategy, temperature=temperature, top_k=top_k, top_p=top_p,
                generator=generator)
    logger.debug("generate: %d prompts (longest %d), %d new tokens, %s", B, P, max_new_tokens,
                 strategy)
    step = shared_step(model, model.decoder, embed=_embed, head=_head) if compile_step else None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), \
                cosformer_length_mode(model, "stepping" if stepping else "given"):
            cache = model.new_cache(B, max_length=P + max_new_tokens)
            h = model.hidden_states(tokens, key_padding_mask=mask if padded else None,
                                    target_length=length, cache=cache)
            logits = model.project(h[:, -1])
            new = []
            done = torch.zeros(B, dtype=torch.bool, device=device)
            for i in range(max_new_tokens):
                nxt = choose_next(logits, **pick)
                new.append(nxt)
                if i == max_new_tokens - 1:
                    break
                if eos_id is not None:
                    done |= nxt == eos_id
                    if bool(done.all()):
                        break
                if step is None:
                    h = model.hidden_states(nxt[:, None], target_length=length, cache=cache)
                    logits = model.project(h[:, -1])
                else:
                    logits = step(nxt[:, None], cache.decoder, cache.lengths[:, None] + 1,
                                  owner=model, target_length=length)
                    cache.lengths = cache.lengths + 1
    finally:
        model.train(was_training)
    out = torch.stack(new, 1).tolist()
    if eos_id is not None:
        out = [row[:row.index(eos_id) + 1] if eos_id in row else row for row in out]
    return out
