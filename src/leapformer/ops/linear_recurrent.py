"""Recurrent linear attention: one token at a time with an explicit state.

Causal: for each position ``t``, ``s += phi(k_t)^T v1_t`` then
``out_t = phi(q_t) @ s``: the constant-size decoding step (docs/math.md §1). A
sequence split anywhere and resumed from the returned state gives the same
result as one call. Bidirectional (cross-attention): the state is extended with
all of this call's keys, then every query reads it; passing the state of
earlier keys as ``s0`` extends cross-attention sums as new source arrives
(MLA Algorithm 1) without recomputing them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def recurrent_forward(fq: Tensor, fk: Tensor, v1: Tensor, *, causal: bool,
                      s0: Tensor | None) -> tuple[Tensor, Tensor]:
    """Features ``fq [B,H,M,F]``, ``fk [B,H,N,F]``, augmented values ``v1 [B,H,N,P]``
    and state ``s0 [B,H,F,P]`` -> ``(out [B,H,M,P], final_state [B,H,F,P])``."""
    B, H, M, F = fq.shape
    P = v1.shape[-1]
    s = fq.new_zeros(B, H, F, P) if s0 is None else s0
    if not causal:
        s = s + fk.transpose(-1, -2) @ v1
        return fq @ s, s
    outs = []
    for t in range(M):
        s = s + fk[:, :, t, :, None] * v1[:, :, t, None, :]
        outs.append(fq[:, :, t, None, :] @ s)
    out = outs[0] if M == 1 else torch.cat(outs, dim=2)
    return out, s
