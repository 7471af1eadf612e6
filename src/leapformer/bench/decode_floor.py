"""The floor of a decoding step: the same stack without its attention.

At batch 1 a decoding step is bound by reading the weights (the q/k/v and output
projections and the feed-forward of every layer), work that any mechanism does.
:func:`floor_step` runs exactly that work for one new token: every layer's
norms, packed q/k/v projection, output projection, residuals and feed-forward,
with the attention replaced by its value vector (no state read or written), then
the final norm. A mechanism's step time over the floor's is what its attention
costs; issue 19's target is LeaP within 25% of it.

The floor takes the weights of a given :class:`~leapformer.nn.Decoder` (the
projections are the same shape for every mechanism) and, like the fused step,
is compiled with ``torch.compile`` (inductor's CPU backend) unless asked not to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = ["FLOOR", "floor_step"]

#: the row name of the floor in the decode benchmark
FLOOR = "floor"


def _values_only(mha, h: Tensor) -> Tensor:
    """``out_proj(v)`` after the q/k/v projections: the attention replaced by v."""
    if mha.packed:  # one GEMM for q, k and v, as the real step; only v is kept
        v = F.linear(h, mha.in_proj.weight, mha.in_proj.bias)[..., 2 * mha.embed_dim:]
    else:  # separate projections (not a self-attention layout): v only, a lower floor
        v = mha.v_proj(h)
    return mha.out_proj(v)


def floor_step(decoder, *, compile: bool = True) -> tuple[Callable[[Tensor], Tensor], str]:
    """``(step, how)``: ``step(x [B, 1, E]) -> [B, 1, E]`` through ``decoder``'s layers
    without attention (see the module docstring); ``how`` is ``"compiled"`` or
    ``"eager"`` (compiling failed, or ``compile=False``). Self-attention only: a
    decoder with cross-attention is refused."""
    if any(layer.cross_attn is not None for layer in decoder.layers):
        raise ValueError("floor_step: the decoder has cross-attention; the floor covers "
                         "decoder-only stacks")

    def step(x: Tensor) -> Tensor:
        for layer in decoder.layers:
            mha = layer.self_attn
            x = layer.sub_self(x, lambda h, mha=mha: _values_only(mha, h))
            x = layer.sub_ffn(x, layer.ffn)
        return x if decoder.norm is None else decoder.norm(x)

    if not compile:
        return step, "eager"
    from leapformer.models.fused_step import DEFAULT_OPTIONS, _compile_errors

    compiled = torch.compile(step, fullgraph=True, options=dict(DEFAULT_OPTIONS))
    state = {"fn": compiled, "how": "compiled"}

    def guarded(x: Tensor) -> Tensor:
        # a new batch size compiles again; if that fails, time the eager floor from then on
        try:
            return state["fn"](x)
        except _compile_errors() as exc:
            if state["fn"] is step:
                raise
            logger.warning("floor step: torch.compile failed (%s); timing it eagerly",
                           type(exc).__name__)
            state["fn"], state["how"] = step, "eager"
            return step(x)

    probe = torch.zeros(1, 1, decoder.layers[0].self_attn.embed_dim,
                        device=next(decoder.parameters()).device)
    with torch.no_grad():
        guarded(probe)
    return guarded, state["how"]
