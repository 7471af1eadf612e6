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


def _causal_chunks(fq: Tensor, fk: Tensor, v1: Tensor, s0: Tensor | None, C: int,
                   want_state: bool = True) -> tuple[Tensor, Tensor | None]:
    """``fq [B,H,n*C,D]``, ``fk``, ``v1 [B,H,n*C,E]``, ``s0 [B,H,D,E]``; returns ``(out
    [B,H,n*C,E], s_final [B,H,D,E] or None)``. Without ``s0`` the first chunk reads no
    state, and without ``want_state`` the last chunk's key sums are not formed (nothing
    reads them); the results are those of the full computation (a read of an empty
    state adds zeros)."""
    B, H, T, D = fq.shape
    E = v1.shape[-1]
    n = T // C
    q = fq.reshape(B, H, n, C, D)
    k = fk.reshape(B, H, n, C, D)
    vc = v1.reshape(B, H, n, C, E)
    out = torch.tril(q @ k.transpose(-1, -2)) @ vc
    w = n if want_state else n - 1  # chunks whose key sums someone reads
    if w == 0 and s0 is None:
        return out.reshape(B, H, T, E), None
    if w > 0:
        kv = k[:, :, :w].transpose(-1, -2) @ vc[:, :, :w]  # per-chunk sums [B,H,w,D,E]
        prev, final = chunk_states(kv, s0)
        if w < n:  # the state before the last chunk: all the sums
            prev = torch.cat((prev, final.unsqueeze(2)), dim=2)
    else:
        prev, final = s0.unsqueeze(2), s0
    first = 1 if s0 is None else 0  # nothing precedes the first chunk
    if first < n:
        read = q[:, :, first:] @ prev[:, :, first:]
        out[:, :, first:] += read  # out is a fresh product: no copy of the other rows
    return out.reshape(B, H, T, E), (final if want_state else None)


def chunk_forward(fq: Tensor, fk: Tensor, v1: Tensor, *, causal: bool, s0: Tensor | None,
                  chunk_size: int, want_state: bool = True) -> tuple[Tensor, Tensor | None]:
    """Features ``fq [B,H,M,F]``, ``fk [B,H,N,F]``, augmented values ``v1 [B,H,N,P]``
    and state ``s0 [B,H,F,P]`` -> ``(out [B,H,M,P], final_state [B,H,F,P])``; causal
    calls with ``want_state=False`` skip the work only the final state needs and return
    None for it."""
    if not causal:
        s = fk.transpose(-1, -2) @ v1
        if s0 is not None:
            s = s + s0
        return fq @ s, s
    T = fq.shape[2]
    C = min(chunk_size, T)
    full = (T // C) * C
    out, s = _causal_chunks(fq[:, :, :full], fk[:, :, :full], v1[:, :, :full], s0, C,
                            want_state or full < T)
    if full < T:
        tail, s = _causal_chunks(fq[:, :, full:], fk[:, :, full:], v1[:, :, full:], s, T - full,
                                 want_state)
        out = torch.cat((out, tail), dim=2)
    return out, s
