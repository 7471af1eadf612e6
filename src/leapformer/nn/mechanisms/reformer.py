"""Reformer (Kitaev et al. 2020, "Reformer: The Efficient Transformer", ICLR 2020):
LSH attention with shared queries and keys.

The keys are the queries normalised to unit length, ``k^_j = q_j / ||q_j||``
(the ``k`` argument is ignored), and a query scores ``q_i . k^_j`` (no further
scaling, as in Reformer). Each of ``num_hashes`` rounds hashes every position by
a random rotation ``R [D, b/2]`` into ``b = num_buckets`` buckets,
``h(x) = argmax([x R; -x R])`` (default ``b``: about ``2N / bucket_size``, even),
sorts the positions by (bucket, position), cuts the sorted sequence into chunks
of ``c = min(bucket_size, N)`` (the sequence padded internally to a multiple of
``c``) and lets each chunk attend to itself and the chunk before it (the rounds
are concatenated, so the first chunk looks back at the last; with a single chunk
there is no look-back). Within a round ``r`` query ``i`` gets
``o_i^r = sum_j softmax_j(q_i . k^_j) v_j`` over its window, and the rounds are
combined by their log-sum-exps ``L_i^r``: ``o_i = sum_r softmax_r(L_i^r) o_i^r``
(keys met in several rounds count in each, as in Reformer).

Self rule: a query never attends to its own position unless no other non-padded
key is in its window; then it attends to itself only (a score of ``-1e5`` on the
diagonal, below any real score, above the ``-1e9`` of padded keys, as in
Reformer). Padded positions are sorted after all valid ones within each round,
so neither their keys nor their values change the outputs at valid positions
(nor their bucket assignment the chunks of valid ones). The rotations (one per
head and round) are drawn from ``torch.Generator().manual_seed(seed)`` for each
bucket count, so the hashing is deterministic given ``seed`` (Reformer redraws
them at every call); :meth:`buckets` returns the assignment. Half-precision
inputs are computed in float32. Bidirectional self-attention only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from leapformer.nn.mechanisms._bidirectional import BidirectionalOnly
from leapformer.nn.mechanisms.base import check_option
from leapformer.nn.mechanisms.registry import register_mechanism

PAD_SCORE = -1e9
SELF_SCORE = -1e5


@register_mechanism
class Reformer(BidirectionalOnly):
    name = "reformer"

    def __init__(self, num_heads, head_dim, *, dropout: float = 0.0, num_hashes: int = 2,
                 bucket_size: int = 32, num_buckets: int | None = None, seed: int = 0):
        super().__init__(num_heads, head_dim, dropout=dropout)
        for name, value in (("num_hashes", num_hashes), ("bucket_size", bucket_size),
                            ("seed", seed)):
            check_option(name, value, "int")
        check_option("num_buckets", num_buckets, "int", optional=True)
        if num_hashes < 1 or bucket_size < 1:
            raise ValueError(f"num_hashes and bucket_size must be positive, got {num_hashes}, "
                             f"{bucket_size}")
        if num_buckets is not None and (num_buckets < 2 or num_buckets % 2):
            raise ValueError(f"num_buckets must be even and at least 2, got {num_buckets}")
        self.num_hashes, self.bucket_size = num_hashes, bucket_size
        self.num_buckets, self.seed = num_buckets, seed
        self._rotations: dict = {}  # (heads, buckets, device, dtype) -> [H, D, R, b/2]

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_hashes={self.num_hashes}, "
                f"bucket_size={self.bucket_size}, num_buckets={self.num_buckets}, seed={self.seed}")

    def buckets_for(self, n: int) -> int:
        """Number of buckets for ``n`` tokens: ``num_buckets``, or ``2 ceil(n / bucket_size)``."""
        if self.num_buckets is not None:
            return self.num_buckets
        return max(2, 2 * -(-n // self.bucket_size))

    def rotations(self, heads: int, num_buckets: int, device, dtype):
        key = (heads, num_buckets, torch.device(device), dtype)
        rot = self._rotations.get(key)
        if rot is None:
            gen = torch.Generator().manual_seed(self.seed)
            rot = torch.randn(heads, self.head_dim, self.num_hashes, num_buckets // 2,
                              generator=gen).to(device=device, dtype=dtype)
            self._rotations[key] = rot
        return rot

    def _hash(self, x, num_buckets: int):
        rot = self.rotations(x.shape[1], num_buckets, x.device, x.dtype)
        with torch.no_grad():
            r = torch.einsum("bhnd,hdrk->bhrnk", x.detach(), rot)
            return torch.cat((r, -r), -1).argmax(-1)

    def buckets(self, x):
        """Bucket of every position per round: ``LongTensor [B, H, num_hashes, N]``."""
        return self._hash(x, self.buckets_for(x.shape[2]))

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None):
        self.check_call(q, k, causal)
        B, H, N, D = q.shape
        Dv, R = v.shape[-1], self.num_hashes
        out_dtype = v.dtype
        wdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        x, v = q.to(wdtype), v.to(wdtype)
        nb = self.buckets_for(N)
        c = min(self.bucket_size, N)
        Np = -(-N // c) * c
        valid = torch.ones(B, N, dtype=torch.bool, device=q.device)
        if key_padding_mask is not None:
            valid = ~key_padding_mask
        if Np > N:
            x, v = F.pad(x, (0, 0, 0, Np - N)), F.pad(v, (0, 0, 0, Np - N))
            valid = F.pad(valid, (0, Np - N), value=False)
        buckets = self._hash(x, nb)  # [B,H,R,Np]
        buckets = buckets.masked_fill(~valid[:, None, None, :], nb)  # padding sorts last
        pos = torch.arange(Np, device=q.device)
        rounds = torch.arange(R, device=q.device)[:, None]
        ticker = ((rounds * (nb + 1) + buckets) * Np + pos).flatten(2)  # [B,H,R*Np]
        order = ticker.argsort(-1)
        spos = order % Np  # sorted positions
        gi = spos[..., None]
        sq = x.gather(2, gi.expand(-1, -1, -1, D))
        sv = v.gather(2, gi.expand(-1, -1, -1, Dv))
        sk = F.normalize(sq, dim=-1, eps=1e-12)
        svalid = valid[:, None, :].expand(B, H, Np).gather(2, spos)
        C = R * Np // c

        def chunks(t):
            return t.reshape(B, H, C, c, *t.shape[3:])

        cq, ck, cv, cpos, cvalid = map(chunks, (sq, sk, sv, spos, svalid))
        qpos = cpos
        if C > 1:  # each chunk attends to itself and the one before
            ck, cv, cpos, cvalid = (torch.cat((t.roll(1, dims=2), t), dim=3)
                                    for t in (ck, cv, cpos, cvalid))
        dots = cq @ ck.transpose(-1, -2)  # [B,H,C,c,w]
        dots = dots.masked_fill(~cvalid[..., None, :], PAD_SCORE)
        dots = dots.masked_fill(qpos[..., :, None] == cpos[..., None, :], SELF_SCORE)
        lse = dots.logsumexp(-1)
        p = torch.softmax(dots, dim=-1)  # not exp(dots - lse): lse is coarse near -1e5
        if self.training and self.dropout > 0:
            p = F.dropout(p, self.dropout)
        o = (p @ cv).reshape(B, H, R * Np, Dv)
        undo = order.argsort(-1)
        o = o.gather(2, undo[..., None].expand(-1, -1, -1, Dv)).view(B, H, R, Np, Dv)
        lse = lse.reshape(B, H, R * Np).gather(2, undo).view(B, H, R, Np)
        mix = torch.softmax(lse, dim=2)  # [B,H,R,Np]
        out = (mix[..., None] * o).sum(2)[:, :, :N]
        weights = None
        if need_weights:  # dense [B,H,N,N], only on request
            sorted_mix = mix.flatten(2).gather(2, order)  # round weight of each sorted query
            wq = p * chunks(sorted_mix)[..., None]
            flat = (qpos[..., :, None] * Np + cpos[..., None, :]).flatten(2)
            weights = torch.zeros(B, H, Np * Np, dtype=wdtype, device=q.device)
            weights = weights.scatter_add(2, flat, wq.flatten(2)).view(B, H, Np, Np)
            weights = weights[:, :, :N, :N].to(out_dtype)
        return out.to(out_dtype), weights
