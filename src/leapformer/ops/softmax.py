"""Softmax attention through ``scaled_dot_product_attention``, with the same
argument layout and mask semantics as the linear forms.

A query with no key to attend to (all keys padded, or causal with only padded
keys before it) gets a zero output instead of NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.ops._checks import check_mask, check_qkv


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False,
                      key_padding_mask: Tensor | None = None, scale: float | None = None,
                      dropout_p: float = 0.0) -> Tensor:
    """``softmax(q k^T * scale) v`` with ``scale = 1/sqrt(D)`` by default; ``o [B,H,M,Dv]``."""
    check_qkv(q, k, v, causal=causal)
    check_mask(key_padding_mask, k)
    if key_padding_mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale,
                                              dropout_p=dropout_p)
    keep = ~key_padding_mask[:, None, None, :]
    if causal:
        n = k.shape[2]
        keep = keep & torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=scale, dropout_p=dropout_p)
    empty = ~keep.any(-1, keepdim=True)  # [B, 1, M or 1, 1]
    return o.masked_fill(empty, 0.0)
