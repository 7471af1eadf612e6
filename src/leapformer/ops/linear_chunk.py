"""Chunkwise-parallel linear attention: the training form.

Inputs are the expanded features and the augmented values ``[v, 1, 0..]`` of
``_fused.py``; the output holds numerator and denominator columns.

- Bidirectional: one GEMM builds the state ``s = phi(k)^T v1`` over all keys and
  one GEMM reads it, ``phi(q) @ s``. O((M + N) d) memory.
- Causal: the sequence is cut in chunks of ``C``. Inside a chunk the weights are
  a ``C x C`` lower-triangular matrix; across chunks a running state carries the
  sums of all earlier chunks (exclusive prefix sum of per-chunk states, ``_scan.py``).
  All chunks are processed at once (no Python loop over chunks); a ragged last
  chunk is handled as a chunk of its own, so no input is copied or padded.
  Memory is O(N (C + d)): no N x N tensor, forward or backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from leapformer.ops._scan import chunk_states


def _causal_chunks(fq: Tensor, fk: Tensor, v1: Tensor, s0: Tensor | None, C: int):
    """``fq [B,H,n*C,D]``, ``fk``, ``v1 [B,H,n*C,E]``, ``s0 [B,H,D,E]``; returns ``(out [B,H,n*C,E], s_final [B,H,D,E])``."""
    B, H, T, D = fq.shape
    E = v1.shape[-1]
    n = T // C
    q = fq.reshape(B, H, n, C, D)
    k = fk.reshape(B, H, n, C, D)
    vc = v1.reshape(B, H, n, C, E)
    a = torch.tril(q @ k.transpose(-1, -2))
    out = a @ vc
    kv = k.transpose(-1, -2) @ vc  # per-chunk sums [B,H,n,D,E]
    prev, final = chunk_states(kv, s0)
    out = out + q @ prev
    return out.reshape(B, H, T, E), final


def chunk_forward(fq: Tensor, fk: Tensor, v1: Tensor, *, causal: bool, s0: Tensor | None,
                  chunk_size: int) -> tuple[Tensor, Tensor]:
    """Features ``fq [B,H,M,F]``, ``fk [B,H,N,F]``, augmented values ``v1 [B,H,N,P]``
    and state ``s0 [B,H,F,P]`` -> ``(out [B,H,M,P], final_state [B,H,F,P])``."""
    if not causal:
        s = fk.transpose(-1, -2) @ v1
        if s0 is not None:
            s = s + s0
        return fq @ s, s
    T = fq.shape[2]
    C = min(chunk_size, T)
    full = (T // C) * C
    out, s = _causal_chunks(fq[:, :, :full], fk[:, :, :full], v1[:, :, :full], s0, C)
    if full < T:
        tail, s = _causal_chunks(fq[:, :, full:], fk[:, :, full:], v1[:, :, full:], s, T - full)
        out = torch.cat((out, tail), dim=2)
    return out, s
