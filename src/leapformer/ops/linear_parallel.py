"""The quadratic oracle: materialise every weight ``w_ij`` directly.

``w_ij = phi(q_i).phi(k_j) * cos(pi/2 (p_i - p_j))`` with the cosine computed
as written (no sin/cos decomposition), causal and padding masks applied to the
matrix. O(M N) memory: for tests, small inputs and heatmaps. The fast forms in
``linear_chunk`` and ``linear_recurrent`` are tested against this one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from leapformer.ops._fused import padded_width
from leapformer.ops.proportions import HALF_PI, reweighting


def parallel_weights(fq: Tensor, fk: Tensor, q_prop: Tensor | None, k_prop: Tensor | None,
                     *, causal: bool, key_padding_mask: Tensor | None) -> Tensor:
    """Unnormalised weights ``[B, H, M, N]``."""
    w = fq @ fk.transpose(-1, -2)
    if q_prop is not None:
        w = w * torch.cos(HALF_PI * (q_prop.unsqueeze(-1) - k_prop.unsqueeze(-2)))
    if causal:
        M, N = w.shape[-2:]
        keep = torch.ones(M, N, dtype=torch.bool, device=w.device).tril()
        w = w.masked_fill(~keep, 0.0)
    if key_padding_mask is not None:
        w = w.masked_fill(key_padding_mask[:, None, None, :], 0.0)
    return w


def parallel_forward(fq: Tensor, fk: Tensor, v: Tensor, q_prop: Tensor | None,
                     k_prop: Tensor | None, *, causal: bool, key_padding_mask: Tensor | None,
                     s0: Tensor | None, want_state: bool):
    """Returns ``(num [B,H,M,Dv], den [B,H,M], final_state [B,H,G,D,P] | None, weights [B,H,M,N])``.

    ``s0 [B,H,G,D,P]`` (see ``state.py``) adds the contribution of keys seen
    before this call; the returned weights cover this call's keys only.
    """
    w = parallel_weights(fq, fk, q_prop, k_prop, causal=causal, key_padding_mask=key_padding_mask)
    num = w @ v
    den = w.sum(-1)
    B, H, M, D = fq.shape
    N, Dv = v.shape[2], v.shape[3]
    if s0 is not None:
        gq = fq.new_ones(1, 1, M, 1) if q_prop is None else reweighting(q_prop)
        contrib = torch.einsum("bhmd,bhmg,bhgde->bhme", fq, gq.expand(B, H, M, -1), s0)
        num = num + contrib[..., :Dv]
        den = den + contrib[..., Dv]
    final = None
    if want_state:
        gk = fk.new_ones(B, H, N, 1) if k_prop is None else reweighting(k_prop).expand(B, H, N, 2)
        if key_padding_mask is not None:
            gk = gk.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        v1 = torch.cat((v, torch.ones_like(v[..., :1])), dim=-1)
        final = torch.einsum("bhnd,bhng,bhne->bhgde", fk, gk, v1)
        final = torch.nn.functional.pad(final, (0, padded_width(Dv) - Dv - 1))
        if s0 is not None:
            final = final + s0
    return num, den, final, w
