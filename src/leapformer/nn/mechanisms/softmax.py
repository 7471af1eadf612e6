"""Softmax attention (the quadratic baseline) with a KV cache for decoding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.nn.mechanisms.base import Mechanism
from leapformer.nn.mechanisms.registry import register_mechanism
from leapformer.ops import prefix_softmax_attention, softmax_attention
from leapformer.ops.prefix_cross import check_prefix

MIN_CAPACITY = 64


@register_mechanism
class Softmax(Mechanism):
    """``softmax(q k^T / sqrt(d)) v`` through ``scaled_dot_product_attention``;
    dropout acts on the weights. The decoding cache holds all past keys and
    values (grown by doubling, or sized once by ``max_length``), and, once a
    padded token has been given, which slots are padding (masked ever after)."""

    name = "softmax"
    supports_prefix = True

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None, prefix=None):
        p = self.dropout if self.training else 0.0
        if prefix is not None and causal:
            raise ValueError("prefix already limits the keys each query sees; it cannot be "
                             "combined with causal=True")
        if not need_weights:
            if prefix is not None:  # wait-k: an [B, 1, M, N] mask, quadratic like softmax
                return prefix_softmax_attention(q, k, v, prefix,
                                                key_padding_mask=key_padding_mask,
                                                dropout_p=p), None
            return softmax_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                                     dropout_p=p), None
        scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
        keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device)
        if causal:
            keep = keep.tril()
        keep = keep[None, None]
        if prefix is not None:
            prefix = check_prefix(prefix, q, k)
            keep = keep & (torch.arange(k.shape[2], device=q.device) < prefix[:, None, :, None])
        if key_padding_mask is not None:
            keep = keep & ~key_padding_mask[:, None, None, :]
        weights = torch.softmax(scores.masked_fill(~keep, -math.inf), dim=-1)
        weights = torch.nan_to_num(weights, nan=0.0).to(q.dtype)  # rows with no key: zeros
        o = F.dropout(weights, p) @ v if p > 0 else weights @ v
        return o, weights

    # -- cache: keys and values in buffers with spare capacity ------------------
    def init_cache(self, cache, *, device, dtype):
        cap = cache.max_length or MIN_CAPACITY
        B, H, D = cache.batch_size, self.num_heads, self.head_dim
        cache.tensors["k"] = torch.empty(B, H, cap, D, device=device, dtype=dtype)
        cache.tensors["v"] = torch.empty(B, H, cap, D, device=device, dtype=dtype)
        if cache.kind == "cross":
            cache.tensors["pad"] = torch.zeros(B, cap, device=device, dtype=torch.bool)

    def _append(self, cache, k: Tensor, v: Tensor, pad: Tensor | None = None) -> int:
        """Write ``k``, ``v`` after the cached ones; returns the new length."""
        start, T = cache.length, k.shape[2]
        end = start + T
        cap = cache.tensors["k"].shape[2]
        if end > cap:
            new_cap = max(end, 2 * cap)
            for name, t in list(cache.tensors.items()):
                axis = 2 if t.dim() == 4 else 1  # k, v [B,H,cap,D]; pad [B,cap]
                shape = list(t.shape)
                shape[axis] = new_cap
                grown = t.new_zeros(shape)
                grown.narrow(axis, 0, start).copy_(t.narrow(axis, 0, start))
                cache.tensors[name] = grown
        cache.tensors["k"][:, :, start:end] = k
        cache.tensors["v"][:, :, start:end] = v
        if pad is not None:
            cache.tensors["pad"][:, start:end] = pad
        return end

    def self_step(self, q, k, v, cache, *, q_len=None, key_padding_mask=None):
        start, T = cache.length, q.shape[2]
        if key_padding_mask is not None and "pad" not in cache.tensors:
            # the first padded slot: from now on the cache keeps which slots are padding
            cache.tensors["pad"] = torch.zeros(cache.batch_size, cache.tensors["k"].shape[2],
                                               dtype=torch.bool, device=q.device)
        pad = key_padding_mask
        if pad is None and "pad" in cache.tensors:
            pad = torch.zeros(q.shape[0], T, dtype=torch.bool, device=q.device)
        end = self._append(cache, k, v, pad)
        keys, values = cache.tensors["k"][:, :, :end], cache.tensors["v"][:, :, :end]
        if pad is None:
            if T == 1:
                return F.scaled_dot_product_attention(q, keys, values)
            keep = torch.ones(T, end, dtype=torch.bool, device=q.device).tril(start)
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=keep)
        keep = torch.ones(T, end, dtype=torch.bool, device=q.device).tril(start) & \
            ~cache.tensors["pad"][:, None, None, :end]  # [B, 1, T, end]
        # a query after padded slots only (a padded one) sees no key: output zero
        # (its row is unmasked for SDPA, so that no NaN appears, then zeroed)
        empty = ~keep.any(-1, keepdim=True)
        o = F.scaled_dot_product_attention(q, keys, values, attn_mask=keep | empty)
        return o.masked_fill(empty, 0.0)

    def cross_extend(self, k, v, cache, *, key_padding_mask=None):
        pad = key_padding_mask
        if pad is None:
            pad = torch.zeros(k.shape[0], k.shape[2], dtype=torch.bool, device=k.device)
        self._append(cache, k, v, pad)

    def cross_read(self, q, cache, *, q_len=None):
        end = cache.length
        return softmax_attention(q, cache.tensors["k"][:, :, :end], cache.tensors["v"][:, :, :end],
                                 key_padding_mask=cache.tensors["pad"][:, :end])
