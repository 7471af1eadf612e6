"""Autograd functions around the Triton kernels, and the entry point the dispatch of
:mod:`leapformer.ops.attention` calls.

The functions return the numerator ``[B,H,M,Dv]`` and denominator ``[B,H,M]`` in
the accumulation dtype (float32; float64 for float64 inputs), and the state as
``S [S,H,G,D,Dv]`` and ``z [S,H,G,D]`` (S = batch, or sequences with ``cu_seqlens``);
the normalisation (clamp, eps or none) is one elementwise torch step on them in
:mod:`leapformer.ops.attention`, so its gradient is torch's. Gradients: q, k, v, both
proportions, the initial state, and those flowing back from the final state.
"""

from __future__ import annotations

import logging
import os

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources
from torch import Tensor
from torch.autograd.function import once_differentiable

from leapformer.ops.triton._bidirectional import grad_kernel, read_kernel, reduce_kernel
from leapformer.ops.triton._causal import bwd_kernel, fwd_kernel
from leapformer.ops.triton._common import FEATURE_CODES, block

logger = logging.getLogger(__name__)

ROWS = 64  # rows per block of the bidirectional kernels


_HALF = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _acc(dtype: torch.dtype):
    """(accumulation torch dtype, kernel constants ACC, DOT, PREC) for an input dtype."""
    if dtype == torch.float64:
        return torch.float64, dict(ACC=tl.float64, DOT=tl.float64, PREC="ieee")
    if dtype == torch.float16 or (dtype == torch.bfloat16 and not _interpreting()):
        return torch.float32, dict(ACC=tl.float32, DOT=_HALF[dtype], PREC="tf32")
    # Triton 3.9's interpreter gets bf16 products wrong (a plain bf16 tl.dot is off by
    # 1e10), so under it bf16 inputs multiply in float32; fp16 tests the 16-bit path.
    return torch.float32, dict(ACC=tl.float32, DOT=tl.float32, PREC="ieee")


def _warps(*blocks: int) -> int:
    """More warps for large register blocks (d = 128: two 128 x 128 float32 states)."""
    size = 1
    for b in blocks:
        size *= b
    return 8 if size >= 128 * 128 else 4


def _chunk_rows(chunk_size: int, head_block: int, dtype: torch.dtype) -> int:
    """Rows per chunk: ``chunk_size`` as a power of two in [16, 64]; at most 32 for
    float32 inputs with head sizes above 64 and for float64 (16 above 64). The shared memory of the
    causal backward grows with it; compiled for sm_90 it needs 76 KB (bf16, d = 64, 64
    rows), 158 KB (bf16, d = 128, 64 rows), 320 KB (float32, d = 128, 64 rows: over an
    H100's 227 KB) and 120 KB (float32, d = 128, 32 rows)."""
    cap = 64 if head_block <= 64 or dtype in _HALF else 32
    if dtype == torch.float64:
        cap = 32 if head_block <= 64 else 16
    return max(16, min(cap, triton.next_power_of_2(chunk_size)))


def _prop_strides(p: Tensor | None) -> tuple[int, int, int]:
    return (0, 0, 0) if p is None else tuple(p.stride())


def _mask_u8(mask: Tensor | None, q: Tensor) -> tuple[Tensor, int]:
    if mask is None:
        return q, 0  # unused pointer
    m = mask.to(torch.uint8).contiguous()
    return m, m.stride(0)


def _zeros_like_grad(g: Tensor | None, shape, dtype, device) -> Tensor:
    return torch.zeros(shape, dtype=dtype, device=device) if g is None else g.to(dtype).contiguous()


def causal_grad_buffers(q, k, v, reweight: bool, states: int, has_s0: bool, g_num, g_den,
                        g_sf, g_zf):
    """The incoming gradients of a causal backward with None made zeros, and empty buffers
    for the outgoing ones: ``(g_num, g_den, g_sf, g_zf, dq, dk, dv, dqp, dkp, ds0, dz0)``;
    ``g_sf``, ``g_zf`` stay None when neither was given (no final-state gradient), the
    proportion and initial-state buffers are None where the call has none."""
    B, H, N, D = q.shape
    E = v.shape[-1]
    G = 2 if reweight else 1
    acc = _acc(q.dtype)[0]
    dev = q.device
    g_num = _zeros_like_grad(g_num, (B, H, N, E), acc, dev)
    g_den = _zeros_like_grad(g_den, (B, H, N), acc, dev)
    if g_sf is not None or g_zf is not None:
        g_sf = _zeros_like_grad(g_sf, (states, H, G, D, E), acc, dev)
        g_zf = _zeros_like_grad(g_zf, (states, H, G, D), acc, dev)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dqp = torch.empty(B, H, N, dtype=acc, device=dev) if reweight else None
    dkp = torch.empty(B, H, N, dtype=acc, device=dev) if reweight else None
    ds0 = torch.empty(states, H, G, D, E, dtype=acc, device=dev) if has_s0 else None
    dz0 = torch.empty(states, H, G, D, dtype=acc, device=dev) if has_s0 else None
    return g_num, g_den, g_sf, g_zf, dq, dk, dv, dqp, dkp, ds0, dz0


def launch_chunked(kernel, grid, rows: int, *args, **kwargs) -> int:
    """Launch a causal kernel with ``BT = rows``, halving the rows (down to 16) while the
    device lacks the shared memory for them (``OutOfResources``: float32 on an A100 needs
    fewer rows than on an H100). Returns the rows used."""
    while True:
        try:
            kernel[grid](*args, BT=rows, **kwargs)
            return rows
        except OutOfResources:
            if rows <= 16:
                raise
            logger.info("%s: out of shared memory with %d rows per chunk, trying %d",
                        getattr(kernel, "__name__", kernel), rows, rows // 2)
            rows //= 2


class CausalAttention(torch.autograd.Function):
    """Causal chunk form: ``(q, k, v [B,H,N,*], qp, kp [B,H,N] or None, s0 [S,H,G,D,Dv] or
    None, z0 [S,H,G,D] or None, mask [B,N] or None, cu_seqlens [S+1] or None, fmap,
    chunk)`` -> ``(num, den, S_final, z_final)``; ``S = B`` without ``cu_seqlens``."""

    @staticmethod
    def forward(ctx, q, k, v, qp, kp, s0, z0, mask, cu, fmap, chunk):
        B, H, N, D = q.shape
        E = v.shape[-1]
        S = B if cu is None else cu.shape[0] - 1
        reweight = qp is not None
        G = 2 if reweight else 1
        acc, kc = _acc(q.dtype)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        num = torch.empty(B, H, N, E, dtype=acc, device=q.device)
        den = torch.empty(B, H, N, dtype=acc, device=q.device)
        sf = torch.empty(S, H, G, D, E, dtype=acc, device=q.device)
        zf = torch.empty(S, H, G, D, dtype=acc, device=q.device)
        if s0 is not None:
            s0, z0 = s0.to(acc).contiguous(), z0.to(acc).contiguous()
        m, smb = _mask_u8(mask, q)
        BT = _chunk_rows(chunk, max(block(D), block(E)), q.dtype)
        BT = launch_chunked(
            fwd_kernel, (S * H,), BT,
            q, k, v, qp if reweight else q, kp if reweight else q, m, q if cu is None else cu,
            s0 if s0 is not None else sf, z0 if z0 is not None else zf, num, den, sf, zf,
            H, N, D, E, *q.stride()[:3], *v.stride()[:3], *_prop_strides(qp),
            *_prop_strides(kp), smb, FMAP=fmap, REWEIGHT=reweight, HAS_MASK=mask is not None,
            VARLEN=cu is not None, HAS_S0=s0 is not None, STORE_FINAL=True, G=G, **kc,
            BK=block(D), BV=block(E), num_warps=_warps(block(D), block(E)))
        ctx.save_for_backward(q, k, v, qp, kp, s0, z0, mask, cu)
        ctx.config = (fmap, BT)
        ctx.set_materialize_grads(False)
        return num, den, sf, zf

    @staticmethod
    @once_differentiable
    def backward(ctx, g_num, g_den, g_sf, g_zf):
        q, k, v, qp, kp, s0, z0, mask, cu = ctx.saved_tensors
        fmap, BT = ctx.config
        B, H, N, D = q.shape
        E = v.shape[-1]
        S = B if cu is None else cu.shape[0] - 1
        reweight = qp is not None
        G = 2 if reweight else 1
        kc = _acc(q.dtype)[1]
        g_num, g_den, g_sf, g_zf, dq, dk, dv, dqp, dkp, ds0, dz0 = causal_grad_buffers(
            q, k, v, reweight, S, s0 is not None, g_num, g_den, g_sf, g_zf)
        has_dfinal = g_sf is not None
        m, smb = _mask_u8(mask, q)
        fill = g_num
        launch_chunked(
            bwd_kernel, (S * H,), BT,
            q, k, v, qp if reweight else q, kp if reweight else q, m, q if cu is None else cu,
            s0 if s0 is not None else fill, z0 if z0 is not None else fill, g_num, g_den,
            g_sf if has_dfinal else fill, g_zf if has_dfinal else fill,
            dq, dk, dv, dqp if reweight else fill, dkp if reweight else fill,
            ds0 if ds0 is not None else fill, dz0 if dz0 is not None else fill,
            H, N, D, E, *q.stride()[:3], *v.stride()[:3], *_prop_strides(qp),
            *_prop_strides(kp), smb, FMAP=fmap, REWEIGHT=reweight, HAS_MASK=mask is not None,
            VARLEN=cu is not None, HAS_S0=s0 is not None, HAS_DFINAL=has_dfinal, G=G,
            **kc, BK=block(D), BV=block(E), num_warps=_warps(block(D), block(E)))
        return dq, dk, dv, dqp, dkp, ds0, dz0, None, None, None, None


def _reduce(x, p, y, c, mask, cu, fmap, acc, kc):
    """``S [S,H,G,D,E]``, ``z [S,H,G,D]`` over all rows of each sequence of ``x``."""
    B, H, N, D = x.shape
    E = y.shape[-1]
    S = B if cu is None else cu.shape[0] - 1
    G = 2 if p is not None else 1
    s = torch.empty(S, H, G, D, E, dtype=acc, device=x.device)
    z = torch.empty(S, H, G, D, dtype=acc, device=x.device)
    m, smb = _mask_u8(mask, x)
    reduce_kernel[(S * H,)](
        x, p if p is not None else x, y, c if c is not None else x, m, x if cu is None else cu,
        s, z, H, N, D, E,
        *x.stride()[:3], *_prop_strides(p), *y.stride()[:3],
        *(c.stride() if c is not None else (0, 0, 0)), smb,
        FMAP=fmap, REWEIGHT=p is not None, HAS_MASK=mask is not None, VARLEN=cu is not None,
        HAS_C=c is not None,
        G=G, **kc, BN=ROWS, BK=block(D), BV=block(E),
        num_warps=_warps(block(D), block(E)))
    return s, z


def _read(x, p, s, z, mask, cu, longest, fmap, acc, kc, want_den=True):
    B, H, M, D = x.shape
    E = s.shape[-1]
    G = s.shape[2]
    out = torch.empty(B, H, M, E, dtype=acc, device=x.device)
    den = torch.empty(B, H, M, dtype=acc, device=x.device) if want_den else out
    m, smb = _mask_u8(mask, x)
    read_kernel[(triton.cdiv(longest, ROWS), s.shape[0] * H)](
        x, p if p is not None else x, s, z, m, x if cu is None else cu, out, den, H, M, D, E,
        *x.stride()[:3], *_prop_strides(p), smb,
        FMAP=fmap, REWEIGHT=p is not None, HAS_MASK=mask is not None, VARLEN=cu is not None,
        WRITE_DEN=want_den,
        G=G, **kc, BM=ROWS, BK=block(D), BV=block(E),
        num_warps=_warps(block(D), block(E)))
    return out, den


def _grad(x, p, s, z, dy, dc, mask, cu, longest, fmap, acc, kc):
    B, H, M, D = x.shape
    E = s.shape[-1]
    G = s.shape[2]
    dx = torch.empty_like(x)
    dp = torch.empty(B, H, M, dtype=acc, device=x.device) if p is not None else None
    m, smb = _mask_u8(mask, x)
    grad_kernel[(triton.cdiv(longest, ROWS), s.shape[0] * H)](
        x, p if p is not None else x, s, z, dy, dc if dc is not None else x, m,
        x if cu is None else cu, dx,
        dp if dp is not None else dx, H, M, D, E,
        *x.stride()[:3], *_prop_strides(p), *dy.stride()[:3],
        *(dc.stride() if dc is not None else (0, 0, 0)), smb,
        FMAP=fmap, REWEIGHT=p is not None, HAS_MASK=mask is not None, VARLEN=cu is not None,
        HAS_DC=dc is not None,
        G=G, **kc, BM=ROWS, BK=block(D), BV=block(E),
        num_warps=_warps(block(D), block(E)))
    return dx, dp


class BidirectionalAttention(torch.autograd.Function):
    """Bidirectional form: ``(q [B,H,M,D], k, v [B,H,N,*], qp [B,H,M], kp [B,H,N] or None,
    s0, z0 or None, mask, cu_seqlens or None, longest sequence (varlen), fmap)`` ->
    ``(num, den, S_final, z_final)``; the final state includes ``s0``. With
    ``cu_seqlens`` queries and keys share the packing (self-attention)."""

    @staticmethod
    def forward(ctx, q, k, v, qp, kp, s0, z0, mask, cu, longest, fmap):
        acc, kc = _acc(q.dtype)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        s, z = _reduce(k, kp, v, None, mask, cu, fmap, acc, kc)
        if s0 is not None:
            s = s + s0.to(acc)
            z = z + z0.to(acc)
        longest_q = q.shape[2] if cu is None else longest
        num, den = _read(q, qp, s, z, None, cu, longest_q, fmap, acc, kc)
        ctx.save_for_backward(q, k, v, qp, kp, s, z, mask, cu)
        ctx.config = (fmap, s0 is not None, longest)
        ctx.set_materialize_grads(False)
        return num, den, s, z

    @staticmethod
    @once_differentiable
    def backward(ctx, g_num, g_den, g_sf, g_zf):
        q, k, v, qp, kp, s, z, mask, cu = ctx.saved_tensors
        fmap, has_s0, longest = ctx.config
        longest_q = q.shape[2] if cu is None else longest
        longest_k = k.shape[2] if cu is None else longest
        acc, kc = _acc(q.dtype)
        B, H, M, _ = q.shape
        E = v.shape[-1]
        g_num = _zeros_like_grad(g_num, (B, H, M, E), acc, q.device)
        g_den = _zeros_like_grad(g_den, (B, H, M), acc, q.device)
        dq, dqp = _grad(q, qp, s, z, g_num, g_den, None, cu, longest_q, fmap, acc, kc)
        ds, dz = _reduce(q, qp, g_num, g_den, None, cu, fmap, acc, kc)
        if g_sf is not None:
            ds = ds + g_sf.to(acc)
        if g_zf is not None:
            dz = dz + g_zf.to(acc)
        dk, dkp = _grad(k, kp, ds, dz, v, None, mask, cu, longest_k, fmap, acc, kc)
        dv, _ = _read(k, kp, ds, dz, mask, cu, longest_k, fmap, acc, kc, want_den=False)
        return (dq, dk, dv.to(v.dtype), dqp, dkp, ds if has_s0 else None,
                dz if has_s0 else None, None, None, None, None)


def triton_forward(q: Tensor, k: Tensor, v: Tensor, q_prop: Tensor | None,
                   k_prop: Tensor | None, *, feature_map: str, causal: bool,
                   key_padding_mask: Tensor | None, chunk_size: int,
                   s0: Tensor | None, cu_seqlens: Tensor | None = None,
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inputs as :func:`leapformer.ops.leap_attention` (checked by the caller; proportions
    None without re-weighting); ``s0 [S,H,G,D,P]`` the fused initial state or None;
    ``cu_seqlens [S+1]`` (int, checked by the caller) packs S sequences in a batch of one,
    else ``S = B``. Returns ``(num [B,H,M,Dv], den [B,H,M], S [S,H,G,D,Dv], z [S,H,G,D])``
    in the accumulation dtype."""
    if feature_map not in FEATURE_CODES:
        raise ValueError(f"the triton backend supports feature_map in {sorted(FEATURE_CODES)}, "
                         f"got {feature_map!r}")
    fmap = FEATURE_CODES[feature_map]
    B, H, M = q.shape[:3]
    N = k.shape[2]
    Dv = v.shape[-1]
    acc = _acc(q.dtype)[0]
    qp = kp = None
    if q_prop is not None:
        qp = q_prop.to(acc).expand(B, H, M)
        kp = k_prop.to(acc).expand(B, H, N)
    s_init = z_init = None
    if s0 is not None:
        s_init, z_init = s0[..., :Dv], s0[..., Dv]
    if causal:
        return CausalAttention.apply(q, k, v, qp, kp, s_init, z_init, key_padding_mask,
                                     cu_seqlens, fmap, chunk_size)
    longest = 0 if cu_seqlens is None else int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return BidirectionalAttention.apply(q, k, v, qp, kp, s_init, z_init, key_padding_mask,
                                        cu_seqlens, longest, fmap)
