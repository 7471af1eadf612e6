"""The three forms of gated (decayed) linear attention: quadratic oracle, chunk, recurrent.

Gated linear attention (GLA, Yang et al. 2023) keeps the causal state of linear
attention with a data-dependent per-channel decay over the key-feature dimension:

    S_t = diag(a_t) S_{t-1} + phi(k_t)^T v_t,    o_t = phi(q_t) S_t / phi(q_t) z_t

(``z_t`` decays the same way), so key ``j`` reaches query ``i >= j`` with the
weight ``sum_d phi(q_i)_d phi(k_j)_d exp(b_i,d - b_j,d)``, where
``b_t = sum_{s<=t} log a_s`` is the cumulative log decay. With re-weighting the
features are ``[phi sin, phi cos](pi/2 p)`` (docs/math.md §1.3) and the decay of
channel ``d`` applies to both halves.

- :func:`gated_parallel`: the weight matrix materialised as written (the cosine of
  the re-weighting computed directly), O(N^2 D) memory: the oracle of the tests.
- :func:`gated_chunk`: the training form, as FLA's GLA chunk form: chunk-local
  cumulative sums of the log decay; across chunks a decayed state carries the
  sums of earlier chunks; inside a chunk, sub-chunks of ``SUB_CHUNK`` tokens,
  where every factor is the exponential of a non-positive number (relative to the
  end of the previous sub-chunk), so nothing overflows however strong the decay.
- :func:`gated_recurrent`: token by token with an explicit state (decoding).

The chunk and recurrent forms take the augmented values ``[v, 1, 0..]`` of
``_fused.py`` (numerator and denominator in one product); the recurrent form
takes expanded features ``[B,H,T,F]`` (``F = G*D``) and the log decay expanded to
``F`` channels, the chunk form the features and group weights apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.ops._fused import expand_features, padded_width
from leapformer.ops.proportions import HALF_PI, reweighting

SUB_CHUNK = 8


def gated_parallel(fq: Tensor, fk: Tensor, v: Tensor, log_decay: Tensor, q_prop: Tensor | None,
                   k_prop: Tensor | None, *, key_padding_mask: Tensor | None, s0: Tensor | None,
                   want_state: bool):
    """Causal oracle on unexpanded features ``fq, fk [B,H,N,D]``, ``v [B,H,N,Dv]``,
    ``log_decay [B,H,N,D]`` (padded keys already zeroed in ``fk``, ``v`` and
    ``log_decay``), state ``s0 [B,H,G,D,P]``. Returns ``(num [B,H,N,Dv], den [B,H,N],
    final [B,H,G,D,P] | None, weights [B,H,N,N])`` (weights of this call's keys)."""
    B, H, N, D = fq.shape
    Dv = v.shape[-1]
    b = log_decay.cumsum(2)
    diff = b.unsqueeze(3) - b.unsqueeze(2)  # [B,H,i,j,D] = b_i - b_j
    later = ~torch.ones(N, N, dtype=torch.bool, device=fq.device).tril()
    decay = diff.masked_fill(later[:, :, None], float("-inf")).exp()
    w = torch.einsum("bhid,bhjd,bhijd->bhij", fq, fk, decay)
    if q_prop is not None:
        w = w * torch.cos(HALF_PI * (q_prop.unsqueeze(-1) - k_prop.unsqueeze(-2)))
    if key_padding_mask is not None:
        w = w.masked_fill(key_padding_mask[:, None, None, :], 0.0)
    num = w @ v
    den = w.sum(-1)
    if s0 is not None:
        gq = fq.new_ones(1, 1, N, 1) if q_prop is None else reweighting(q_prop)
        contrib = torch.einsum("bhmd,bhmg,bhgde->bhme", fq * b.exp(), gq.expand(B, H, N, -1), s0)
        num = num + contrib[..., :Dv]
        den = den + contrib[..., Dv]
    final = None
    if want_state:
        gk = fk.new_ones(B, H, N, 1) if k_prop is None else reweighting(k_prop).expand(B, H, N, 2)
        if key_padding_mask is not None:
            gk = gk.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        v1 = torch.cat((v, torch.ones_like(v[..., :1])), dim=-1)
        kd = fk * (b[:, :, -1:] - b).exp()
        final = torch.einsum("bhnd,bhng,bhne->bhgde", kd, gk, v1)
        final = F.pad(final, (0, padded_width(Dv) - Dv - 1))
        if s0 is not None:
            final = final + s0 * b[:, :, -1, None, :, None].exp()
    return num, den, final, w


def _intra(q: Tensor, k: Tensor, b: Tensor, c: int) -> Tensor:
    """Causal weights inside each chunk, ``[..., C, C]``, for ``q, k [..., C, F]`` and the
    chunk-local cumulative log decay ``b [..., C, F]``, in sub-chunks of ``c`` tokens."""
    C, Fd = q.shape[-2:]
    ns = C // c
    lead = q.shape[:-2]
    qs, ks, bs = (t.reshape(*lead, ns, c, Fd) for t in (q, k, b))
    tri = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    # diagonal sub-chunks: exp(b_i - b_j) per channel, j <= i
    diff = (bs.unsqueeze(-2) - bs.unsqueeze(-3)).masked_fill(~tri[:, :, None], float("-inf"))
    a_diag = (qs.unsqueeze(-2) * ks.unsqueeze(-3) * diff.exp()).sum(-1)  # [..., ns, c, c]
    if ns == 1:
        return a_diag.reshape(*lead, C, C)
    # off-diagonal sub-chunks I > J, through e(J) (end of J) and e(I-1) (end of I-1):
    # b_i - b_j = (b_i - e(I-1)) + (e(I-1) - e(J)) + (e(J) - b_j), each part <= 0
    end = bs[..., -1, :]  # [..., ns, F]
    start = torch.cat((torch.zeros_like(end[..., :1, :]), end[..., :-1, :]), dim=-2)
    qh = qs * (bs - start.unsqueeze(-2)).exp()
    kh = ks * (end.unsqueeze(-2) - bs).exp()
    below = torch.ones(ns, ns, dtype=torch.bool, device=q.device).tril(-1)
    mid = (start.unsqueeze(-2) - end.unsqueeze(-3)).masked_fill(~below[:, :, None],
                                                                  float("-inf")).exp()
    a = torch.einsum("...Iid,...IJd,...Jjd->...IiJj", qh, mid, kh)
    eye = torch.eye(ns, dtype=q.dtype, device=q.device)
    a = a + a_diag.unsqueeze(-2) * eye[:, None, :, None]
    return a.reshape(*lead, C, C)


def _pad_length(t: Tensor, extra: int) -> Tensor:
    return t if extra == 0 else F.pad(t, (0, 0, 0, extra))


def gated_chunk(fq: Tensor, fk: Tensor, v1: Tensor, log_decay: Tensor, *, wq: Tensor | None,
                wk: Tensor | None, s0: Tensor | None, chunk_size: int,
                want_state: bool = True) -> tuple[Tensor, Tensor | None]:
    """Causal chunk form: features ``fq, fk [B,H,T,D]`` (not expanded), group weights
    ``wq, wk [B,H,T,G]`` (``[sin, cos](pi/2 p)``; None for G = 1), ``v1 [B,H,T,P]``,
    ``log_decay [B,H,T,D]``, ``s0 [B,H,G*D,P]`` -> ``(out [B,H,T,P], final [B,H,G*D,P]``,
    or None with ``want_state=False``).

    Inside a chunk the weights are computed on the ``D`` features and multiplied by
    ``wq_i . wk_j = cos(pi/2 (p_i - p_j))`` (the decay is shared by the groups), so
    the element-wise decay work does not double with re-weighting; across chunks
    the state holds the expanded features. A ragged last chunk is padded with zero
    features and zero log decay (no key, no decay: the state and the real outputs
    are unchanged); so is an input shorter than a chunk, to whole sub-chunks. As in
    :func:`leapformer.ops.linear_chunk.chunk_forward`, work no result reads is skipped:
    without ``s0`` the first chunk reads no state, and without ``want_state`` the last
    chunk's keys are not summed."""
    B, H, T, D = fq.shape
    P = v1.shape[-1]
    C = min(chunk_size, T)
    if chunk_size % SUB_CHUNK == 0:  # a short input: whole sub-chunks (padded)
        C = min(chunk_size, -(-T // SUB_CHUNK) * SUB_CHUNK)
    c = SUB_CHUNK if C % SUB_CHUNK == 0 else C
    n = -(-T // C)
    extra = n * C - T

    def chunks(t: Tensor) -> Tensor:
        return _pad_length(t, extra).reshape(B, H, n, C, t.shape[-1])

    q, k, v, g = (chunks(t) for t in (fq, fk, v1, log_decay))
    b = g.cumsum(3)  # chunk-local cumulative log decay, <= 0 for a decay
    a = _intra(q, k, b, c)
    if wq is not None:
        wq, wk = chunks(wq.expand(B, H, T, -1)), chunks(wk.expand(B, H, T, -1))
        a = a * (wq @ wk.transpose(-1, -2))
    out = a @ v
    G = 1 if wq is None else wq.shape[-1]
    w = n if want_state else n - 1  # chunks whose keys a later chunk (or the caller) reads
    s = s0
    if w > 0:
        last = b[:, :, :w, -1:, :]  # [B,H,w,1,D]
        kw = None if wk is None else wk[:, :, :w]
        kv = expand_features(k[:, :, :w] * (last - b[:, :, :w]).exp(), kw).transpose(-1, -2) \
            @ v[:, :, :w]  # keys at chunk end
        fade = last.squeeze(3).exp().repeat(1, 1, 1, G).unsqueeze(-1)  # [B,H,w,G*D,1]
    prev = []
    for i in range(n):
        prev.append(s)
        if i < w:
            s = kv[:, :, i] if s is None else fade[:, :, i] * s + kv[:, :, i]
    first = 1 if s0 is None else 0  # nothing precedes the first chunk
    if first < n:
        qw = None if wq is None else wq[:, :, first:]
        read = expand_features(q[:, :, first:] * b[:, :, first:].exp(), qw) \
            @ torch.stack(prev[first:], dim=2)
        out[:, :, first:] += read  # out is a fresh product: no copy of the other rows
    out = out.reshape(B, H, n * C, P)
    return (out if extra == 0 else out[:, :, :T]), (s if want_state else None)


def gated_recurrent(fq: Tensor, fk: Tensor, v1: Tensor, log_decay: Tensor, *,
                    s0: Tensor | None) -> tuple[Tensor, Tensor]:
    """Causal recurrent form, one token at a time: expanded features ``fq, fk [B,H,T,F]``,
    ``v1 [B,H,T,P]``, ``log_decay [B,H,T,F]`` (expanded too), ``s0 [B,H,F,P]`` ->
    ``(out [B,H,T,P], final_state [B,H,F,P])``."""
    B, H, T, Fd = fq.shape
    s = fq.new_zeros(B, H, Fd, v1.shape[-1]) if s0 is None else s0
    a = log_decay.exp()
    outs = []
    for t in range(T):
        s = a[:, :, t, :, None] * s + fk[:, :, t, :, None] * v1[:, :, t, None, :]
        outs.append(fq[:, :, t, None, :] @ s)
    return (outs[0] if T == 1 else torch.cat(outs, dim=2)), s
