"""Exclusive prefix sum over chunk states, as an autograd function.

``torch.cumsum`` along a middle dimension is about ten times slower on CPU than
a loop of adds over the (few, large) chunk slices, and its backward adds two
flips. The chunk count is ``length / chunk_size``, so the loop is short.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ChunkScan(torch.autograd.Function):
    """``kv [B,H,n,F,P]``, ``s0 [B,H,F,P]`` -> ``(prev [B,H,n,F,P], final [B,H,F,P])`` with
    ``prev[:, :, i] = s0 + sum_{j<i} kv[:, :, j]`` and ``final = s0 + sum_j kv[:, :, j]``."""

    @staticmethod
    def forward(ctx, kv: Tensor, s0: Tensor):
        ctx.set_materialize_grads(False)
        n = kv.shape[2]
        prev = torch.empty_like(kv)
        prev[:, :, 0] = s0
        for i in range(n - 1):
            torch.add(prev[:, :, i], kv[:, :, i], out=prev[:, :, i + 1])
        final = prev[:, :, n - 1] + kv[:, :, n - 1]
        ctx.shape = kv.shape
        return prev, final

    @staticmethod
    def backward(ctx, g_prev: Tensor | None, g_final: Tensor | None):
        # g_kv[j] = g_final + sum_{i>j} g_prev[i];  g_s0 = g_final + sum_i g_prev[i]
        if g_prev is None and g_final is None:
            return None, None
        ref = g_prev if g_prev is not None else g_final
        if g_prev is None:
            g_prev = ref.new_zeros(ctx.shape)
        if g_final is None:
            g_final = ref.new_zeros(ctx.shape[:2] + ctx.shape[3:])
        n = ctx.shape[2]
        gkv = torch.empty(ctx.shape, dtype=ref.dtype, device=ref.device)
        gkv[:, :, n - 1] = g_final
        for j in range(n - 2, -1, -1):
            torch.add(gkv[:, :, j + 1], g_prev[:, :, j + 1], out=gkv[:, :, j])
        return gkv, gkv[:, :, 0] + g_prev[:, :, 0]


def chunk_states(kv: Tensor, s0: Tensor | None) -> tuple[Tensor, Tensor]:
    """States before each chunk ``[B,H,n,F,P]`` and after the last ``[B,H,F,P]``."""
    if s0 is None:
        s0 = kv.new_zeros(kv.shape[:2] + kv.shape[3:])
    return ChunkScan.apply(kv, s0)
