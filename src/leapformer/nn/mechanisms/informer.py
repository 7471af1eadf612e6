"""Informer (Zhou et al. 2021, "Informer: Beyond Efficient Transformer for Long
Sequence Time-Series Forecasting", AAAI 2021): ProbSparse self-attention, as in
Informer's encoder.

Only ``u = min(N, factor * ceil(ln N))`` "active" queries (at least one) get
softmax attention; the others ("lazy") output the mean of the values::

    o_i = sum_j softmax_j(q_i . k_j / sqrt d) v_j    i active
    o_i = mean_j v_j                                 i lazy

over the non-padded keys ``j`` (``0`` when there are none). The active queries
are the ``u`` with the largest sparsity measurement

    M(q_i, K) = max_j (q_i . k_j / sqrt d) - mean_j (q_i . k_j / sqrt d)

estimated, as in Informer, on ``U = u`` keys sampled uniformly with replacement
for each query (:meth:`sampled_keys`; only non-padded keys are sampled, so the
max and the mean are over valid keys; the mean is over the sample, where the
official code divides the sum by ``N``). Padded queries are selected only when
fewer than ``u`` valid ones exist. The sample is drawn from
``torch.Generator().manual_seed(seed)`` once per length (Informer redraws it at
every call), so the selection is deterministic given ``seed``;
:meth:`active_queries` returns it. The selection is not differentiable; the
gradient flows through the attention and the mean. Scores exist only for the
active queries (``[u, N]``). When ``u >= N`` every query is active and it equals
softmax attention. Half-precision inputs are computed in float32. Bidirectional
self-attention only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from leapformer.nn.mechanisms._bidirectional import BidirectionalOnly
from leapformer.nn.mechanisms.base import check_option
from leapformer.nn.mechanisms.bigbird import masked_softmax
from leapformer.nn.mechanisms.registry import register_mechanism

SAMPLE_CHUNK = 8  # sampled keys scored at a time (bounds the gathered keys' memory)


@register_mechanism
class Informer(BidirectionalOnly):
    name = "informer"

    def __init__(self, num_heads, head_dim, *, dropout: float = 0.0, factor: int = 5,
                 seed: int = 0):
        super().__init__(num_heads, head_dim, dropout=dropout)
        check_option("factor", factor, "int")
        check_option("seed", seed, "int")
        if factor < 1:
            raise ValueError(f"factor must be positive, got {factor}")
        self.factor, self.seed = factor, seed
        self._uniform: dict = {}  # (N, device) -> [N, U] in [0, 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}, seed={self.seed}"

    def num_active(self, n: int) -> int:
        """``u = min(n, max(1, factor * ceil(ln n)))`` (also the sample size ``U``)."""
        return min(n, max(1, self.factor * math.ceil(math.log(n))))

    def _draws(self, n: int, device):
        key = (n, torch.device(device))
        r = self._uniform.get(key)
        if r is None:
            gen = torch.Generator().manual_seed(self.seed)
            r = torch.rand(n, self.num_active(n), generator=gen, dtype=torch.float64)
            self._uniform[key] = r = r.to(device)
        return r

    def sampled_keys(self, num_tokens: int, key_padding_mask=None, *, batch_size: int = 1,
                     device=None):
        """Keys sampled for each query: ``LongTensor [B, N, U]`` of non-padded key
        positions (any position of an item with no valid key)."""
        n = num_tokens
        if key_padding_mask is None:
            device = device or "cpu"
            keep = torch.ones(batch_size, n, dtype=torch.bool, device=device)
        else:
            keep = ~key_padding_mask
            device = keep.device
        B = keep.shape[0]
        r = self._draws(n, device)  # [N,U]
        count = keep.sum(-1).clamp(min=1)[:, None, None]  # [B,1,1]
        rank = (r * count).long().clamp(max=count - 1)  # the rank-th valid key
        order = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)  # valid ones first
        return order.gather(1, rank.view(B, -1)).view(B, n, -1)

    @torch.no_grad()
    def active_queries(self, q, k, key_padding_mask=None):
        """The ``u`` active queries per item and head: ``LongTensor [B, H, u]``."""
        B, H, N, D = q.shape
        q, k = q.detach(), k.detach()
        idx = self.sampled_keys(N, key_padding_mask, batch_size=B, device=q.device)
        U = idx.shape[-1]
        scale = D ** -0.5
        top = torch.full((B, H, N), float("-inf"), dtype=q.dtype, device=q.device)
        total = torch.zeros(B, H, N, dtype=q.dtype, device=q.device)
        for s in range(0, U, SAMPLE_CHUNK):
            c = min(SAMPLE_CHUNK, U - s)
            flat = idx[:, :, s:s + c].reshape(B, 1, N * c, 1).expand(B, H, N * c, D)
            ks = k.gather(2, flat).view(B, H, N, c, D)
            dots = (q[:, :, :, None, :] * ks).sum(-1) * scale  # [B,H,N,c]
            top = torch.maximum(top, dots.amax(-1))
            total += dots.sum(-1)
        measure = top - total / U
        if key_padding_mask is not None:
            measure = measure.masked_fill(key_padding_mask[:, None, :], float("-inf"))
        return measure.topk(self.num_active(N), dim=-1).indices

    def _drop(self, p):
        return F.dropout(p, self.dropout) if self.training and self.dropout > 0 else p

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None):
        self.check_call(q, k, causal)
        B, H, N, D = q.shape
        Dv, out_dtype = v.shape[-1], v.dtype
        wdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        q, k, v = q.to(wdtype), k.to(wdtype), v.to(wdtype)
        keep = torch.ones(B, N, dtype=torch.bool, device=q.device)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.to(q.device)
            keep = ~key_padding_mask
        active = self.active_queries(q, k, key_padding_mask)  # [B,H,u]
        u = active.shape[-1]
        qa = q.gather(2, active[..., None].expand(B, H, u, D))
        scores = qa @ k.transpose(-1, -2) * D ** -0.5  # [B,H,u,N]
        p = self._drop(masked_softmax(scores, keep[:, None, None, :]))
        count = keep.sum(-1).clamp(min=1).to(wdtype)[:, None, None, None]
        mean = (v * keep[:, None, :, None]).sum(2, keepdim=True) / count  # [B,H,1,Dv]
        o = mean.expand(B, H, N, Dv).contiguous()
        o = o.scatter(2, active[..., None].expand(B, H, u, Dv), p @ v)
        weights = None
        if need_weights:  # dense [B,H,N,N], only on request
            w = (keep[:, None, None, :] / count).expand(B, H, N, N).contiguous()
            w = w.scatter(2, active[..., None].expand(B, H, u, N), p)
            weights = w.to(out_dtype)
        return o.to(out_dtype), weights
