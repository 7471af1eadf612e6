"""Bidirectional linear attention for inference, in cache-sized row blocks.

The chunk form's bidirectional path is two GEMMs over the whole sequence, but
around them sit full-length elementwise passes (feature map, sin/cos
expansion, value augmentation, normalisation), each reading and writing tens
of MB at 16k tokens. On a CPU those passes, not the GEMMs, set the time. This
form does the same arithmetic one block of rows at a time, so every
intermediate stays in cache, and writes the output in place:

- keys: ``s[d, g, :] += phi(k)^T [w_g v1]`` per block: one GEMM whose right side
  is the values scaled by the group weights (``w = [sin, cos]``, G = 2; G = 1
  without re-weighting) and augmented with the denominator column;
- queries: ``o = sum_g w_g (phi(q) @ s[:, g, :])``: one GEMM of width ``G P``,
  then the weighted sum and the normalisation, written straight to the output.

It is used by ``mode="chunk"``/``"auto"`` when nothing needs a gradient
(``torch.no_grad`` or inputs without ``requires_grad``); results equal the
other forms to float32 rounding. Training keeps the autograd-traced path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from leapformer.ops._fused import padded_width
from leapformer.ops.feature_maps import relu

# Rows of all (batch x head) slices processed per block on CPU and per thread:
# 8 heads x 512 rows keeps a thread's share of a block (~4 MB) in its caches.
# Scaling the block with the thread count keeps each thread's share constant and
# halves the number of parallel ops per doubling of the threads; that number, not
# the work, is what a busy machine punishes (each parallel op waits for its slowest
# thread). Block boundaries change the order of the sums, so results differ across
# thread counts by float rounding (~1e-8 in float32), as any multithreaded GEMM's do.
CPU_BLOCK_ROWS = 4096
MIN_BLOCK = 64
MAX_BLOCK = 1024  # per thread


def block_length(slices: int, length: int, device: torch.device,
                 threads: int | None = None) -> int:
    """Rows per block for ``slices`` = batch x heads sequences of ``length``, with
    ``threads`` intra-op threads (default ``torch.get_num_threads()``)."""
    if device.type != "cpu":
        return max(length, 1)  # one block: GPU kernels want large launches
    t = max(1, torch.get_num_threads() if threads is None else threads)
    rows = CPU_BLOCK_ROWS * t // max(slices, 1)
    block = max(MIN_BLOCK, min(MAX_BLOCK * t, rows // 8 * 8 or MIN_BLOCK))
    return min(block, max(length, 1))  # never buffers longer than the sequence


def _slices(x: Tensor, B: int, H: int) -> Tensor:
    """``[b, h, L, ...]`` with b in (1, B), h in (1, H) -> ``[B*H, L, ...]``."""
    return x.expand(B, H, *x.shape[2:]).reshape(B * H, *x.shape[2:])


def _group_weights(prop: Tensor, start: int, stop: int, buf: Tensor) -> Tensor:
    """``[sin, cos](pi/2 prop[:, start:stop])`` written into ``buf [BH, >=n, 2]``."""
    n = stop - start
    out = buf[:, :n]
    angle = prop[:, start:stop] * (math.pi / 2)
    torch.sin(angle, out=out[..., 0])
    torch.cos(angle, out=out[..., 1])
    return out


def _features(phi, x: Tensor, is_query: bool, buf: Tensor) -> Tensor:
    """``phi(x)``; ReLU is written into ``buf`` (a fresh 1 MB tensor per block
    costs as much as the GEMM on CPU)."""
    if phi is relu:
        return torch.clamp_min(x, 0.0, out=buf[:, : x.shape[1]])
    return phi(x, is_query)


def blocked_bidirectional(
    q: Tensor, k: Tensor, v: Tensor, q_prop: Tensor | None, k_prop: Tensor | None, *,
    feature_map, key_padding_mask: Tensor | None, s0: Tensor | None, normalize: str,
    eps: float, cdtype: torch.dtype, block: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Bidirectional (re-weighted) linear attention without autograd.

    ``q [B,H,M,D]``, ``k [B,H,N,D]``, ``v [B,H,N,Dv]``, proportions ``[b,h,L]``
    (or None for plain linear attention), ``feature_map`` a row-wise map
    ``phi(x, is_query)`` applied per block (to ``cdtype`` tensors), ``s0`` the fused
    state ``[B,H,G,D,P]`` or None. Returns ``(o [B,H,M,Dv] in q.dtype,
    final state [B,H,G,D,P])``.
    """
    B, H, M, _ = q.shape
    N, Dv = k.shape[2], v.shape[-1]
    BH, G, P = B * H, (1 if q_prop is None else 2), padded_width(v.shape[-1])
    q3, k3, v3 = q.reshape(BH, M, -1), k.reshape(BH, N, -1), v.reshape(BH, N, Dv)
    kp = None if k_prop is None else _slices(k_prop.to(cdtype), B, H)
    qp = None if q_prop is None else _slices(q_prop.to(cdtype), B, H)
    pad = None if key_padding_mask is None else _slices(key_padding_mask[:, None, :], B, H)
    Lb = block or block_length(BH, max(M, N), q.device)
    dev = q.device
    wbuf = torch.empty(BH, Lb, 2, device=dev, dtype=cdtype)
    fbuf = torch.empty(BH, Lb, q.shape[-1], device=dev, dtype=cdtype)

    # Keys: s [BH, F, G, P] accumulates phi(k)^T [w_1 v1, .., w_G v1].
    F = None
    s = None
    vbuf = torch.zeros(BH, Lb, G, P, device=dev, dtype=cdtype)
    for i in range(0, N, Lb):
        j = min(i + Lb, N)
        n = j - i
        fk = _features(feature_map, k3[:, i:j].to(cdtype), False, fbuf)
        if s is None:
            F = fk.shape[-1]
            s = torch.zeros(BH, F, G, P, device=dev, dtype=cdtype)
            if s0 is not None:
                s.copy_(s0.reshape(BH, G, F, P).transpose(1, 2))
        vv = vbuf[:, :n]
        if kp is None:
            vv[..., 0, :Dv] = v3[:, i:j]
            vv[..., 0, Dv] = 1.0
        else:
            w = _group_weights(kp, i, j, wbuf)
            torch.mul(v3[:, i:j, None, :].to(cdtype), w[..., None], out=vv[..., :Dv])
            vv[..., Dv] = w
        if pad is not None:
            fk = fk.masked_fill(pad[:, i:j, None], 0.0)
            vv.masked_fill_(pad[:, i:j, None, None], 0.0)
        s.view(BH, F, G * P).baddbmm_(fk.transpose(1, 2), vv.view(BH, n, G * P))
    if s is None:  # no keys at all (N = 0 is rejected upstream; kept for safety)
        raise ValueError(f"k must have at least one position, got shape {list(k.shape)}")

    # Queries: o = sum_g w_g (phi(q) @ s_g), normalised, written in place.
    out = torch.empty(BH, M, Dv, device=dev, dtype=q.dtype)
    obuf = torch.empty(BH, Lb, G, P, device=dev, dtype=cdtype)
    nbuf = torch.empty(BH, Lb, P, device=dev, dtype=cdtype) if G > 1 else None
    s2 = s.view(BH, F, G * P)
    for i in range(0, M, Lb):
        j = min(i + Lb, M)
        n = j - i
        fq = _features(feature_map, q3[:, i:j].to(cdtype), True, fbuf)
        o = obuf[:, :n]
        torch.bmm(fq, s2, out=o.view(BH, n, G * P))
        if G == 1:
            num = o[..., 0, :]
        else:
            w = _group_weights(qp, i, j, wbuf)
            num = torch.mul(o[..., 0, :], w[..., 0:1], out=nbuf[:, :n])
            num.addcmul_(o[..., 1, :], w[..., 1:2])
        den = num[..., Dv:Dv + 1]
        if normalize == "clamp":
            den = den.clamp_min(eps)
        elif normalize == "eps":
            den = den + eps
        if normalize == "none":
            out[:, i:j] = num[..., :Dv]
        elif out.dtype == cdtype:
            torch.div(num[..., :Dv], den, out=out[:, i:j])
        else:
            out[:, i:j] = num[..., :Dv] / den
    final = s.view(B, H, F, G, P).transpose(2, 3).contiguous()
    return out.view(B, H, M, Dv), final
