"""cosFormer: ReLU features re-weighted by position (docs/math.md §1.1, §1.2, §3).

Self-attention uses proportions ``i / L`` and ``j / L`` (1-based positions);
cross-attention ``i / M`` and ``j / N`` (MLA eq. 8). ``L``/``M`` is the
target length and ``N`` the source length, per item: by default the number
of unpadded tokens (the official code uses the padded length, which makes an
item's output depend on its batch-mates). A decoder passes the true target
length in training and a predicted one at inference
(:mod:`leapformer.nn.length`); decoding without one is an error.

Wait-k cross-attention (``prefix=``, docs/math.md §4): a query that sees only the
first ``g(t)`` source positions still weighs key ``j`` by ``j / N`` with ``N``
the whole source length (``k_len``), not ``j / g(t)``. That is what makes the
prefix a cumulative sum gathered at ``g(t)`` (key weights must not depend on
the query), and what the simultaneous decoding cache computes when it is
extended chunk by chunk with ``source_length=N`` (MLA Algorithm 1), so
training and decoding agree; ``j / g(t)`` would be the source-side analogue
of the "stepping" baseline below, quadratic and never reused.

``length="padded"`` (the official LRA code: ``seq_len = Q.size(2)``) takes
``L``/``M`` and ``N`` in the full forward from the tensors' (padded) lengths
instead of the per-item ``q_len``/``k_len``: every item of a batch padded to
one fixed length (as LRA's tensors are) gets the same normaliser. It changes
only the full forward; decoding caches keep the lengths they are given.

``length_mode="stepping"`` uses the current length instead (``L = i`` for
query ``i``; with padded cache slots, ``i`` counts the item's real tokens),
the baseline the MLA paper reports as failing. Query ``i`` then
weighs key ``j`` by ``cos(pi/2 (1 - j / i))``, which does not factorise: the
causal self-attention is computed with the quadratic weight matrix and
decoding keeps all past features (for comparison only). In cross-attention
the query proportion is ``i / i = 1``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.nn.mechanisms.base import LinearMechanism, positions
from leapformer.nn.mechanisms.registry import register_mechanism

LENGTH_MODES = ("given", "stepping")
LENGTHS = ("item", "padded")


@register_mechanism
class CosFormer(LinearMechanism):
    """cosFormer re-weighting ``cos(pi/2 (i/M - j/N))`` of ReLU linear attention."""

    name = "cosformer"
    reweighted = True
    # positions pass the normalising length by design: decoding past a predicted target
    # length, padded query rows of an item normalised by its own (shorter) length
    check_proportions = False

    def __init__(self, num_heads, head_dim, *, length_mode: str = "given", length: str = "item",
                 **options):
        super().__init__(num_heads, head_dim, feature_map="relu", **options)
        if length_mode not in LENGTH_MODES:
            raise ValueError(f"length_mode must be one of {LENGTH_MODES}, got {length_mode!r}")
        if length not in LENGTHS:
            raise ValueError(f"length must be one of {LENGTHS}, got {length!r}")
        self.length_mode = length_mode
        self.length = length

    @staticmethod
    def _ratio(x: Tensor, offset: int | Tensor, length: Tensor | None, what: str) -> Tensor:
        """``(offset + 1 .. offset + L) / length`` as ``[B, 1, L]`` (``offset`` a
        tensor ``[B, L]``: the 1-based positions themselves)."""
        if length is None:
            raise ValueError(f"cosformer needs the {what} length here (pass query_length / "
                             f"key_length, e.g. a predicted target length when decoding)")
        if isinstance(offset, Tensor):
            pos = offset.to(device=x.device, dtype=torch.float32)
        else:
            pos = positions(offset, x.shape[2], x.device)[None, :]
        return (pos / length.to(pos)[:, None]).unsqueeze(1)

    def query_proportions(self, q, offset, q_len):
        if self.length_mode == "stepping":
            return torch.ones(1, 1, q.shape[2], device=q.device)
        return self._ratio(q, offset, q_len, "target")

    def key_proportions(self, k, offset, k_len):
        return self._ratio(k, offset, k_len, "source")

    def step_proportions(self, q, k, f, offset, q_len):
        p = self._ratio(q, offset, q_len, "target")  # query and key share the position
        return p.unsqueeze(0).expand(2, -1, self.num_heads, -1)

    # -- stepping: causal self-attention with L = i (quadratic, for comparison) --
    def _stepping_attend(self, q: Tensor, fk: Tensor, v: Tensor, offset: int,
                         i: Tensor | None = None, j: Tensor | None = None) -> Tensor:
        """Queries at positions ``offset+1 ..`` over keys ``1 .. offset+T`` (``fk``
        features); or at per-item positions ``i [B, T]`` over keys at ``j [B, N]``
        (padded slots: zero features, and position 0 before an item's first token)."""
        T, N = q.shape[2], fk.shape[2]
        if i is None:
            i = torch.arange(offset + 1, offset + T + 1, device=q.device,
                             dtype=torch.float32)[None, :]
            j = torch.arange(1, N + 1, device=q.device, dtype=torch.float32)[None, :]
        i, j = i.to(torch.float32)[:, :, None], j.to(torch.float32)[:, None, :]
        w = torch.cos(math.pi / 2 * (1 - j / i.clamp_min(1.0)))
        w = w.masked_fill((j < 1) | (j > i), 0.0).unsqueeze(1)  # [b, 1, T, N]
        a = (F.relu(q).float() @ fk.float().transpose(-1, -2)) * w
        o = a @ v.float()
        return (o / a.sum(-1, keepdim=True).clamp_min(self.eps)).to(q.dtype)

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None, prefix=None):
        if self.length == "padded":  # the tensors' lengths, the same for every item
            q_len = torch.full((q.shape[0],), float(q.shape[2]), device=q.device)
            k_len = torch.full((k.shape[0],), float(k.shape[2]), device=k.device)
        if not (causal and self.length_mode == "stepping") or prefix is not None:
            return super().forward(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                                   need_weights=need_weights, q_len=q_len, k_len=k_len,
                                   prefix=prefix)
        fk = F.relu(k)
        if key_padding_mask is not None:
            fk = fk.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        o = self._stepping_attend(q, fk, v, 0)
        return self._finish(o), None

    def init_cache(self, cache, *, device, dtype):
        if self.length_mode != "stepping" or cache.kind != "self":
            return super().init_cache(cache, device=device, dtype=dtype)
        B, H, D = cache.batch_size, self.num_heads, self.head_dim
        cache.tensors["k"] = torch.zeros(B, H, 0, D, device=device, dtype=dtype)
        cache.tensors["v"] = torch.zeros(B, H, 0, D, device=device, dtype=dtype)

    def self_step(self, q, k, v, cache, *, q_len=None, key_padding_mask=None):
        if self.length_mode != "stepping":
            return super().self_step(q, k, v, cache, q_len=q_len,
                                     key_padding_mask=key_padding_mask)
        fk_new = F.relu(k)
        if key_padding_mask is not None:
            fk_new = fk_new.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        fk = torch.cat((cache.tensors["k"], fk_new), dim=2)
        vv = torch.cat((cache.tensors["v"], v), dim=2)
        cache.tensors["k"], cache.tensors["v"] = fk, vv
        pos = cache.new_positions(q.shape[2], key_padding_mask, device=q.device)
        if pos is None:
            return self._finish(self._stepping_attend(q, fk, vv, cache.length))
        # per-item positions of every cached slot, kept once some slot is padding
        past = cache.tensors.get("pos")
        if past is None:  # no padding before: slots 1 .. length for every item
            past = torch.arange(1, cache.length + 1, device=q.device).expand(pos.shape[0], -1)
        cache.tensors["pos"] = j = torch.cat((past, pos), dim=1)
        return self._finish(self._stepping_attend(q, fk, vv, cache.length, pos, j))
