"""Linformer (Wang et al. 2020): keys and values projected along the length.

``softmax(q (E k)^T / sqrt d) (F v)`` with learned ``E, F [k_proj, max_length]``
shared by all heads; a sequence of length ``N <= max_length`` uses the first
``N`` columns. Padded keys and values are zeroed before the projection (their
columns then add nothing; the projected rows are not masked, as in the
original). Bidirectional self-attention only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from leapformer.nn.mechanisms._bidirectional import BidirectionalOnly
from leapformer.nn.mechanisms.base import check_option
from leapformer.nn.mechanisms.registry import register_mechanism


@register_mechanism
class Linformer(BidirectionalOnly):
    name = "linformer"

    def __init__(self, num_heads, head_dim, *, dropout: float = 0.0, k: int = 128,
                 max_length: int = 4096):
        super().__init__(num_heads, head_dim, dropout=dropout)
        check_option("k", k, "int")
        check_option("max_length", max_length, "int")
        if k < 1 or max_length < 1:
            raise ValueError(f"k and max_length must be positive, got {k}, {max_length}")
        self.k, self.max_length = k, max_length
        self.proj_k = nn.Parameter(torch.empty(k, max_length))
        self.proj_v = nn.Parameter(torch.empty(k, max_length))
        for p in (self.proj_k, self.proj_v):
            nn.init.normal_(p, std=1.0 / math.sqrt(k))

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None):
        self.check_call(q, k, causal)
        N = k.shape[2]
        if N > self.max_length:
            raise ValueError(f"linformer was built for max_length={self.max_length}, got {N} keys")
        if key_padding_mask is not None:
            drop = key_padding_mask[:, None, :, None]
            k, v = k.masked_fill(drop, 0.0), v.masked_fill(drop, 0.0)
        kp = self.proj_k[:, :N].to(k.dtype) @ k  # [B,H,k,D]
        vp = self.proj_v[:, :N].to(v.dtype) @ v
        scores = q @ kp.transpose(-1, -2) / math.sqrt(q.shape[-1])
        w = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            w = nn.functional.dropout(w, self.dropout)
        return w @ vp, (w if need_weights else None)
