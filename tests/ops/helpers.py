"""Input factories shared by the ops tests."""

from __future__ import annotations

import torch


def make_inputs(B, H, M, N, D, Dv=None, *, dtype=torch.float64, seed=0, grad=False,
                pad_lengths=None):
    """Random q, k, v, proportions and (optionally) a right-padding mask."""
    g = torch.Generator().manual_seed(seed)
    Dv = D if Dv is None else Dv
    q = torch.randn(B, H, M, D, generator=g, dtype=dtype)
    k = torch.randn(B, H, N, D, generator=g, dtype=dtype)
    v = torch.randn(B, H, N, Dv, generator=g, dtype=dtype)
    qp = torch.rand(B, H, M, generator=g, dtype=dtype)
    kp = torch.rand(B, H, N, generator=g, dtype=dtype)
    mask = None
    if pad_lengths is not None:
        mask = torch.arange(N)[None, :] >= torch.tensor(pad_lengths)[:, None]
    if grad:
        for t in (q, k, v, qp, kp):
            t.requires_grad_(True)
    return q, k, v, qp, kp, mask


def explicit_leap(q, k, v, qp, kp, *, causal=False, mask=None, clamp=0.1):
    """The docs/math.md §1.3 formula with Python loops over positions (tiny inputs only)."""
    B, H, M, _ = q.shape
    N = k.shape[2]
    out = torch.zeros(B, H, M, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(M):
                num = torch.zeros(v.shape[-1], dtype=q.dtype)
                den = torch.zeros((), dtype=q.dtype)
                for j in range(N):
                    if causal and j > i:
                        continue
                    if mask is not None and mask[b, j]:
                        continue
                    s = torch.relu(q[b, h, i]) @ torch.relu(k[b, h, j])
                    w = s * torch.cos(torch.pi / 2 * (qp[b, h, i] - kp[b, h, j]))
                    num = num + w * v[b, h, j]
                    den = den + w
                out[b, h, i] = num / torch.clamp(den, min=clamp)
    return out
