"""One causal decoding step on an explicit fused state, without validation.

For modules that decode token by token (``leapformer.nn``): they check shapes
once when the cache is made, then call this on every token, where the
validation of the public entry points would cost more than the arithmetic.
The result equals ``mode="recurrent"`` of :func:`leapformer.ops.leap_attention`
(tested in ``tests/ops/test_step.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.ops.proportions import HALF_PI


def group_weights(prop: Tensor) -> Tensor:
    """``prop [...]`` -> ``[..., 2] = [sin, cos](pi/2 prop)``."""
    angle = prop.unsqueeze(-1) * HALF_PI
    return torch.cat((angle.sin(), angle.cos()), dim=-1)


def step_(fq: Tensor, fk: Tensor, v: Tensor, s: Tensor, q_prop: Tensor | None = None,
          k_prop: Tensor | None = None, *, normalize: str = "clamp", eps: float = 0.1) -> Tensor:
    """Add one key to the state ``s`` (in place) and read it with one query.

    ``fq``, ``fk [B,H,1,F]`` are features (after the feature map), ``v [B,H,1,Dv]``,
    ``s [B,H,G,F,P]`` the fused state of :class:`~leapformer.ops.LinearAttentionState`
    (same dtype as the features), ``q_prop``, ``k_prop [B,H,1]`` the proportions
    (G = 2) or None (G = 1). Returns ``o [B,H,1,Dv]`` (numerator only for
    ``normalize="none"``).
    """
    B, H, G, Fd, P = s.shape
    Dv = v.shape[-1]
    if G == 2:
        w = group_weights(torch.stack((q_prop, k_prop), dim=-1))  # [B,H,1,2(q,k),2(sin,cos)]
        fq = (w[..., 0, :, None] * fq.unsqueeze(-2)).flatten(-2)  # [B,H,1,2F]
        fk = (w[..., 1, :, None] * fk.unsqueeze(-2)).flatten(-2)
    v1 = F.pad(v.to(s.dtype), (0, P - Dv))
    v1[..., Dv] = 1.0
    flat = s.view(B, H, G * Fd, P)
    flat.addcmul_(fk.transpose(-1, -2), v1)
    out = fq @ flat  # [B,H,1,P]
    num = out[..., :Dv]
    if normalize == "clamp":
        return num / out[..., Dv:Dv + 1].clamp_min(eps)
    if normalize == "eps":
        return num / (out[..., Dv:Dv + 1] + eps)
    return num
