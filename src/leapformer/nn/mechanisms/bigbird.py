"""BigBird (Zaheer et al. 2020, "Big Bird: Transformers for Longer Sequences",
NeurIPS 2020): block-sparse attention, ITC variant (global tokens taken from the
sequence itself).

The sequence is cut into ``nb = ceil(N / b)`` blocks of ``b = min(block_size, N)``
tokens (padded internally to ``nb * b``; the padding is masked). Query block
``i`` attends to the key blocks ``S(i)``:

- global blocks, the first and the last (``num_global = 2``): they attend to every
  block, ``S(0) = S(nb - 1) = {0 .. nb - 1}``, and every block attends to them;
- every other block ``0 < i < nb - 1``: the sliding window ``{i - 1, i, i + 1}``,
  the global blocks ``{0, nb - 1}`` and ``R(i)``, ``num_random_blocks`` blocks
  drawn without replacement among the remaining ones (all of them when fewer
  remain), independently per head.

For a token ``t`` of query block ``i``::

    o_t = sum_{j in blocks S(i)} softmax_j(q_t . k_j / sqrt d) v_j

over the non-padded keys ``j`` (a query with no such key gets ``0``). It is
computed block-sparsely: the global rows against all keys, the other rows
against their gathered key blocks (``[nb - 2, |S| * b]`` scores, no ``N x N``
tensor unless ``need_weights``). When every ``S(i)`` is every block (``nb <= 3``,
or ``nb <= 5`` with random blocks) it equals softmax attention. The random
blocks are drawn from ``torch.Generator().manual_seed(seed)`` once per block
count, so the pattern is deterministic given ``seed`` (BigBird redraws them);
:meth:`block_pattern` returns it. Half-precision inputs are computed in float32.
Bidirectional self-attention only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from leapformer.nn.mechanisms._bidirectional import BidirectionalOnly
from leapformer.nn.mechanisms.base import check_option
from leapformer.nn.mechanisms.registry import register_mechanism


def masked_softmax(scores, keep):
    """Softmax over the last dim of the kept entries; rows with none kept are ``0``."""
    scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * keep


@register_mechanism
class BigBird(BidirectionalOnly):
    name = "bigbird"
    num_global = 2  # the first and the last block
    window = 3  # the block itself and its left and right neighbours

    def __init__(self, num_heads, head_dim, *, dropout: float = 0.0, block_size: int = 64,
                 num_random_blocks: int = 3, seed: int = 0):
        super().__init__(num_heads, head_dim, dropout=dropout)
        for name, value in (("block_size", block_size), ("num_random_blocks", num_random_blocks),
                            ("seed", seed)):
            check_option(name, value, "int")
        if block_size < 1 or num_random_blocks < 0:
            raise ValueError("block_size must be positive and num_random_blocks non-negative, "
                             f"got {block_size}, {num_random_blocks}")
        self.block_size, self.num_random_blocks, self.seed = block_size, num_random_blocks, seed
        self._tables: dict = {}  # (num_blocks, device) -> [H, nb - 2, W]

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, block_size={self.block_size}, "
                f"num_random_blocks={self.num_random_blocks}, seed={self.seed}")

    def key_blocks(self, num_blocks: int, device=None):
        """Key blocks of the non-global query blocks ``1 .. nb - 2``: ``LongTensor
        [num_heads, max(nb - 2, 0), W]``, ``W = min(nb, 5 + num_random_blocks)``;
        window and global blocks first, then the random ones, ``-1`` = empty slot."""
        key = (num_blocks, torch.device(device or "cpu"))
        table = self._tables.get(key)
        if table is None:
            nb, r, H = num_blocks, self.num_random_blocks, self.num_heads
            gen = torch.Generator().manual_seed(self.seed)
            table = torch.full((H, max(nb - 2, 0), min(nb, 5 + r)), -1, dtype=torch.long)
            for h in range(H):
                for i in range(1, nb - 1):
                    fixed = sorted({0, i - 1, i, i + 1, nb - 1})
                    free = torch.ones(nb, dtype=torch.bool)
                    free[fixed] = False
                    rest = free.nonzero().flatten()
                    pick = rest[torch.randperm(len(rest), generator=gen)[:r]]
                    row = torch.cat((torch.tensor(fixed), pick))
                    table[h, i - 1, :len(row)] = row
            table = table.to(key[1])
            self._tables[key] = table
        return table

    def block_pattern(self, num_blocks: int):
        """Attended key blocks: ``BoolTensor [num_heads, nb, nb]``, ``[h, i, j]`` True
        when query block ``i`` attends to key block ``j`` in head ``h``."""
        H, nb = self.num_heads, num_blocks
        pattern = torch.zeros(H, nb, nb, dtype=torch.bool)
        pattern[:, [0, nb - 1]] = True
        if nb > 2:
            table = self.key_blocks(nb)
            mid = pattern[:, 1:nb - 1]
            mid.scatter_(-1, table.clamp(min=0), True)
            # an empty slot (-1 -> 0) marks block 0, which every row attends anyway
        return pattern

    def _drop(self, p):
        return F.dropout(p, self.dropout) if self.training and self.dropout > 0 else p

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None):
        self.check_call(q, k, causal)
        B, H, N, D = q.shape
        Dv, out_dtype = v.shape[-1], v.dtype
        wdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        q, k, v = q.to(wdtype), k.to(wdtype), v.to(wdtype)
        b = min(self.block_size, N)
        nb = -(-N // b)
        Np = nb * b
        keep = torch.ones(B, N, dtype=torch.bool, device=q.device)
        if key_padding_mask is not None:
            keep = ~key_padding_mask.to(q.device)
        if Np > N:
            q, k, v = (F.pad(t, (0, 0, 0, Np - N)) for t in (q, k, v))
            keep = F.pad(keep, (0, Np - N), value=False)
        scale = D ** -0.5
        qb = q.reshape(B, H, nb, b, D)

        glob = [0] if nb == 1 else [0, nb - 1]
        g = len(glob)
        sg = qb[:, :, glob].reshape(B, H, g * b, D) @ k.transpose(-1, -2) * scale
        pg = self._drop(masked_softmax(sg, keep[:, None, None, :]))  # [B,H,g*b,Np]
        og = (pg @ v).view(B, H, g, b, Dv)
        if nb > 2:
            m = nb - 2
            table = self.key_blocks(nb, q.device)  # [H,m,W]
            W = table.shape[-1]
            idx = table.clamp(min=0)
            heads = torch.arange(H, device=q.device)[:, None, None]
            kb = k.reshape(B, H, nb, b, D)[:, heads, idx].reshape(B, H, m, W * b, D)
            vb = v.reshape(B, H, nb, b, Dv)[:, heads, idx].reshape(B, H, m, W * b, Dv)
            kkeep = keep.reshape(B, nb, b)[:, idx] & (table >= 0)[None, ..., None]  # [B,H,m,W,b]
            sm = qb[:, :, 1:nb - 1] @ kb.transpose(-1, -2) * scale  # [B,H,m,b,W*b]
            pm = self._drop(masked_softmax(sm, kkeep.view(B, H, m, 1, W * b)))
            o = torch.cat((og[:, :, :1], pm @ vb, og[:, :, 1:]), dim=2)
        else:
            o = og
        o = o.reshape(B, H, Np, Dv)[:, :, :N].to(out_dtype)
        weights = None
        if need_weights:  # dense [B,H,N,N], only on request
            w = torch.zeros(B, H, nb, b, Np, dtype=wdtype, device=q.device)
            w[:, :, glob] = pg.view(B, H, g, b, Np)
            if nb > 2:
                cols = (idx[..., None] * b + torch.arange(b, device=q.device)).view(H, m, W * b)
                cols = cols[None, :, :, None, :].expand(B, H, m, b, W * b)
                w[:, :, 1:nb - 1] = w[:, :, 1:nb - 1].scatter_add(-1, cols, pm)
            weights = w.view(B, H, Np, Np)[:, :, :N, :N].to(out_dtype)
        return o, weights
