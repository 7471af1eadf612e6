"""Triton kernels of bidirectional re-weighted linear attention.

Three kernels cover forward and backward, because the backward of each pass is
the other pass on different operands (``w_g = [sin, cos](pi/2 p)``, ``f = phi(x)``):

- :func:`reduce_kernel`: ``S_g = sum_n (f_n w_g,n)^T y_n`` and
  ``z_g = sum_n f_n w_g,n c_n`` over a whole sequence (one program per head).
  Forward: the key state (``y = v``, ``c = 1``). Backward: the state gradient
  (``x = q``, ``y = dnum``, ``c = dden``).
- :func:`read_kernel`: ``out_m = sum_g (f_m w_g,m) S_g`` and
  ``den_m = sum_g (f_m w_g,m) . z_g`` (blocks of rows in parallel). Forward: the
  query pass. Backward: ``dv`` (``x = k``, ``S = dS``).
- :func:`grad_kernel`: with ``dF_g = dy S_g^T + dc z_g^T``, the gradients
  ``dx = phi'(x) sum_g w_g dF_g`` and ``dp = sum_g w_g' (f . dF_g)``. Backward of
  the query pass (``dy = dnum``, ``dc = dden``) and of the key state
  (``dy = v``, ``dc = 1``, ``S = dS``).

Variable lengths (``VARLEN``): a batch of one holding several sequences back to
back, ``CU = cu_seqlens`` (FLA's convention), states per sequence; the row kernels
run ``cdiv(longest, BM)`` blocks per sequence.

Features and weights are computed in registers; the doubled features are never
written. Accumulation is float32 (float64 for float64 inputs). Padded keys
(``MASK``) and rows past the length contribute nothing and get zero gradients.
"""

from __future__ import annotations

import triton
import triton.language as tl

from leapformer.ops.triton._common import HALF_PI, dphi, mm, phi, sequence_rows


@triton.jit
def _rows(X, P, MASK, b, h, offs_n, offs_d, N, D, sxb, sxh, sxn, spb, sph, spn, smb,
          FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
          ACC: tl.constexpr):
    """Load a block of rows: raw x, features f (zero outside), keep flags, sin and cos."""
    keep = offs_n < N
    if HAS_MASK:
        pad = tl.load(MASK + b * smb + offs_n, mask=keep, other=1)
        keep = keep & (pad == 0)
    inside = keep[:, None] & (offs_d[None, :] < D)
    x = tl.load(X + b * sxb + h * sxh + offs_n[:, None] * sxn + offs_d[None, :], mask=inside,
                other=0.0).to(ACC)
    f = tl.where(inside, phi(x, FMAP), 0.0)
    if REWEIGHT:
        p = tl.load(P + b * spb + h * sph + offs_n * spn, mask=keep, other=0.0).to(ACC)
        sw = tl.sin(p * HALF_PI)
        cw = tl.cos(p * HALF_PI)
    else:
        sw = tl.zeros(offs_n.shape, ACC)
        cw = tl.full(offs_n.shape, 1.0, ACC)
    return x, f, keep, sw, cw


@triton.jit
def reduce_kernel(X, P, Y, C, MASK, CU, S, Z, H, N, D, E,
                  sxb, sxh, sxn, spb, sph, spn, syb, syh, syn, scb, sch, scn, smb,
                  FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
                  VARLEN: tl.constexpr, HAS_C: tl.constexpr, G: tl.constexpr,
                  ACC: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
                  BN: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    bh, b, h, bos, eos = sequence_rows(tl.program_id(0), CU, H, N, VARLEN)
    offs_d = tl.arange(0, BK)
    offs_e = tl.arange(0, BV)
    s_sin = tl.zeros((BK, BV), ACC)
    s_cos = tl.zeros((BK, BV), ACC)
    z_sin = tl.zeros((BK,), ACC)
    z_cos = tl.zeros((BK,), ACC)
    for start in range(bos, eos, BN):
        offs_n = start + tl.arange(0, BN)
        x, f, keep, sw, cw = _rows(X, P, MASK, b, h, offs_n, offs_d, eos, D, sxb, sxh, sxn,
                                   spb, sph, spn, smb, FMAP, REWEIGHT, HAS_MASK, ACC)
        y = tl.load(Y + b * syb + h * syh + offs_n[:, None] * syn + offs_e[None, :],
                    mask=keep[:, None] & (offs_e[None, :] < E), other=0.0).to(ACC)
        if HAS_C:
            c = tl.load(C + b * scb + h * sch + offs_n * scn, mask=keep, other=0.0).to(ACC)
        else:
            c = tl.where(keep, 1.0, 0.0).to(ACC)
        fc = f * cw[:, None]
        s_cos += mm(tl.trans(fc), y, DOT, PREC, ACC)
        z_cos += tl.sum(fc * c[:, None], 0)
        if REWEIGHT:
            fs = f * sw[:, None]
            s_sin += mm(tl.trans(fs), y, DOT, PREC, ACC)
            z_sin += tl.sum(fs * c[:, None], 0)
    smask = (offs_d[:, None] < D) & (offs_e[None, :] < E)
    base = S + bh * G * D * E + offs_d[:, None] * E + offs_e[None, :]
    tl.store(base + (G - 1) * D * E, s_cos, mask=smask)
    tl.store(Z + bh * G * D + (G - 1) * D + offs_d, z_cos, mask=offs_d < D)
    if REWEIGHT:
        tl.store(base, s_sin, mask=smask)
        tl.store(Z + bh * G * D + offs_d, z_sin, mask=offs_d < D)


@triton.jit
def _load_state(S, Z, bh, offs_d, offs_e, D, E, G: tl.constexpr, REWEIGHT: tl.constexpr,
                ACC: tl.constexpr):
    smask = (offs_d[:, None] < D) & (offs_e[None, :] < E)
    base = S + bh * G * D * E + offs_d[:, None] * E + offs_e[None, :]
    s_cos = tl.load(base + (G - 1) * D * E, mask=smask, other=0.0).to(ACC)
    z_cos = tl.load(Z + bh * G * D + (G - 1) * D + offs_d, mask=offs_d < D, other=0.0).to(ACC)
    if REWEIGHT:
        s_sin = tl.load(base, mask=smask, other=0.0).to(ACC)
        z_sin = tl.load(Z + bh * G * D + offs_d, mask=offs_d < D, other=0.0).to(ACC)
    else:
        s_sin = tl.zeros((offs_d.shape[0], offs_e.shape[0]), ACC)
        z_sin = tl.zeros(offs_d.shape, ACC)
    return s_sin, s_cos, z_sin, z_cos


@triton.jit
def read_kernel(X, P, S, Z, MASK, CU, OUT, DEN, H, M, D, E,
                sxb, sxh, sxn, spb, sph, spn, smb,
                FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
                VARLEN: tl.constexpr, WRITE_DEN: tl.constexpr, G: tl.constexpr,
                ACC: tl.constexpr, DOT: tl.constexpr,
                PREC: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """``OUT [B,H,M,E]`` and ``DEN [B,H,M]`` are contiguous."""
    sid, b, h, bos, eos = sequence_rows(tl.program_id(1), CU, H, M, VARLEN)
    bh = b * H + h
    offs_m = bos + tl.program_id(0) * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BK)
    offs_e = tl.arange(0, BV)
    x, f, keep, sw, cw = _rows(X, P, MASK, b, h, offs_m, offs_d, eos, D, sxb, sxh, sxn,
                               spb, sph, spn, smb, FMAP, REWEIGHT, HAS_MASK, ACC)
    s_sin, s_cos, z_sin, z_cos = _load_state(S, Z, sid, offs_d, offs_e, D, E, G, REWEIGHT, ACC)
    fc = f * cw[:, None]
    out = mm(fc, s_cos, DOT, PREC, ACC)
    den = tl.sum(fc * z_cos[None, :], 1)
    if REWEIGHT:
        fs = f * sw[:, None]
        out += mm(fs, s_sin, DOT, PREC, ACC)
        den += tl.sum(fs * z_sin[None, :], 1)
    out = tl.where(keep[:, None], out, 0.0)
    tl.store(OUT + bh * M * E + offs_m[:, None] * E + offs_e[None, :], out,
             mask=(offs_m[:, None] < eos) & (offs_e[None, :] < E))
    if WRITE_DEN:
        tl.store(DEN + bh * M + offs_m, den, mask=offs_m < eos)


@triton.jit
def grad_kernel(X, P, S, Z, DY, DC, MASK, CU, DX, DP, H, M, D, E,
                sxb, sxh, sxn, spb, sph, spn, syb, syh, syn, scb, sch, scn, smb,
                FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
                VARLEN: tl.constexpr, HAS_DC: tl.constexpr, G: tl.constexpr,
                ACC: tl.constexpr, DOT: tl.constexpr,
                PREC: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """``DX [B,H,M,D]`` and ``DP [B,H,M]`` are contiguous (``DP`` in the accumulation dtype)."""
    sid, b, h, bos, eos = sequence_rows(tl.program_id(1), CU, H, M, VARLEN)
    bh = b * H + h
    offs_m = bos + tl.program_id(0) * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, BK)
    offs_e = tl.arange(0, BV)
    x, f, keep, sw, cw = _rows(X, P, MASK, b, h, offs_m, offs_d, eos, D, sxb, sxh, sxn,
                               spb, sph, spn, smb, FMAP, REWEIGHT, HAS_MASK, ACC)
    s_sin, s_cos, z_sin, z_cos = _load_state(S, Z, sid, offs_d, offs_e, D, E, G, REWEIGHT, ACC)
    dy = tl.load(DY + b * syb + h * syh + offs_m[:, None] * syn + offs_e[None, :],
                 mask=keep[:, None] & (offs_e[None, :] < E), other=0.0).to(ACC)
    if HAS_DC:
        dc = tl.load(DC + b * scb + h * sch + offs_m * scn, mask=keep, other=0.0).to(ACC)
    else:
        dc = tl.where(keep, 1.0, 0.0).to(ACC)
    d_cos = mm(dy, tl.trans(s_cos), DOT, PREC, ACC) \
        + dc[:, None] * z_cos[None, :]
    df = cw[:, None] * d_cos
    if REWEIGHT:
        d_sin = mm(dy, tl.trans(s_sin), DOT, PREC, ACC) \
            + dc[:, None] * z_sin[None, :]
        df += sw[:, None] * d_sin
        dp = HALF_PI * (cw * tl.sum(f * d_sin, 1) - sw * tl.sum(f * d_cos, 1))
        dp = tl.where(keep, dp, 0.0)
        tl.store(DP + bh * M + offs_m, dp, mask=offs_m < eos)
    dx = tl.where(keep[:, None], df * dphi(x, FMAP), 0.0)
    tl.store(DX + bh * M * D + offs_m[:, None] * D + offs_d[None, :], dx,
             mask=(offs_m[:, None] < eos) & (offs_d[None, :] < D))
