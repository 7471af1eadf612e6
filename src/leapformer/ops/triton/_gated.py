"""Triton kernels of causal *gated* re-weighted linear attention (GLA's decay), chunkwise.

The state decays per key-feature channel: ``S_t = diag(a_t) S_{t-1} + phi(k_t)^T v_t``
with ``log a_t = g_t [D]`` (:mod:`leapformer.ops.gated`); with re-weighting, channel
``d``'s decay applies to both the sin and the cos half. One program per (batch, head)
walks the sequence in chunks of ``BT`` rows, carrying ``S_g [D, Dv]``, ``z_g [D]`` in
float32 registers, as :mod:`._causal` does for the ungated form. Inside a chunk, with
``b`` the chunk-local cumulative sum of ``g`` (computed in registers, never stored):

- the intra-chunk weights are ``A_ij = c_ij sum_d fq_id fk_jd exp(b_id - b_jd)``
  (``j <= i``), computed as one ``BT x BT x D`` product in registers where every
  exponent is ``<= 0`` for a decay (``g <= 0``; the upper triangle is
  ``exp(-inf) = 0``), so nothing overflows however strong the decay (a positive
  ``g``, a growth, is computed the same way without that guarantee);
  ``c_ij = cos(pi/2 (p_i - p_j))`` from the four sin/cos
  vectors, as in the ungated kernels;
- queries read the previous chunks' state through ``fq exp(b)`` and keys enter the
  state through ``fk exp(b_last - b)``; the state fades by ``exp(b_last)``: again
  exponents ``<= 0`` for a decay.

The gradient of the log decay: with ``B`` the cumulative log decay over the whole
sequence, every term of the outputs and of the final state carries ``exp(B_i)`` on
the query side and ``exp(-B_j)`` on the key side (and the final state
``exp(B_last)``), so ``dL/dB_t = fq_t * dfq_t - fk_t * dfk_t`` (gradients with respect
to the features, before the feature map's derivative), plus, at the last row,
``sum_{g,e} S_final * dS_final + sum_g z_final * dz_final``; ``dL/dg`` is its reverse
cumulative sum. :func:`gated_bwd_kernel` writes ``dL/dB`` (without the final-state
term); the autograd function adds that term and takes the reverse sum in torch.

- :func:`gated_fwd_kernel`: numerator, denominator, optional initial state in, final
  state out (a decoding step is this kernel on a few tokens).
- :func:`gated_bwd_kernel`: a forward sweep for ``dq``, ``dq_prop`` and ``fq * dfq``,
  a backward sweep for ``dk``, ``dv``, ``dk_prop``, ``dL/dB`` and the initial state's
  gradient.

Padded keys (``MASK``) add nothing and decay nothing: their features, values and log
decay are zeroed when loaded.
"""

from __future__ import annotations

import triton
import triton.language as tl

from leapformer.ops.triton._causal import _chunk
from leapformer.ops.triton._common import (
    HALF_PI,
    dphi,
    load_output_grads,
    load_state,
    mm,
    state_offsets,
    store_state,
)


@triton.jit
def _decay(LG, b, h, offs_t, offs_d, keep, D, slb, slh, sln, tri, ACC: tl.constexpr):
    """Chunk-local cumulative log decay ``b [BT, BK]``, its total ``[BK]`` and the
    intra-chunk factors ``exp(b_i - b_j)`` ``[BT, BT, BK]`` (0 above the diagonal)."""
    g = tl.load(LG + b * slb + h * slh + offs_t[:, None] * sln + offs_d[None, :],
                mask=keep[:, None] & (offs_d[None, :] < D), other=0.0).to(ACC)
    cum = tl.cumsum(g, 0)
    total = tl.sum(g, 0)
    e3 = tl.exp(tl.where(tri[:, :, None], cum[:, None, :] - cum[None, :, :], float("-inf")))
    return cum, total, e3


@triton.jit
def gated_fwd_kernel(Q, K, V, QP, KP, LG, MASK, S0, Z0, NUM, DEN, SF, ZF, H, N, D, E,
                     sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn,
                     slb, slh, sln, smb,
                     FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
                     HAS_S0: tl.constexpr, G: tl.constexpr,
                     ACC: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
                     BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """``NUM [B,H,N,E]``, ``DEN [B,H,N]``, states ``[B*H,G,D,E]`` / ``[B*H,G,D]``."""
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    offs_d, offs_e, smask, sbase, zbase = state_offsets(bh, D, E, G, BK, BV)
    s_sin, s_cos, z_sin, z_cos = load_state(S0, Z0, sbase, zbase, smask, offs_d < D, D, E,
                                            HAS_S0, REWEIGHT, G, ACC, BK, BV)
    tri = tl.arange(0, BT)[:, None] >= tl.arange(0, BT)[None, :]
    for start in range(0, N, BT):
        offs_t = start + tl.arange(0, BT)
        qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep = _chunk(
            Q, K, V, QP, KP, MASK, b, h, offs_t, offs_d, offs_e, N, D, E,
            sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn, smb,
            FMAP, REWEIGHT, HAS_MASK, ACC)
        cum, total, e3 = _decay(LG, b, h, offs_t, offs_d, keep, D, slb, slh, sln, tri, ACC)
        a = tl.sum(fq[:, None, :] * fk[None, :, :] * e3, 2)
        if REWEIGHT:
            a = a * (qs[:, None] * ks[None, :] + qc[:, None] * kc[None, :])
        qh = fq * tl.exp(cum)
        kh = fk * tl.exp(total[None, :] - cum)
        fade = tl.exp(total)
        num = mm(a, v, DOT, PREC, ACC) + mm(qh * qc[:, None], s_cos, DOT, PREC, ACC)
        den = tl.sum(a, 1) + tl.sum(qh * qc[:, None] * z_cos[None, :], 1)
        s_cos = s_cos * fade[:, None] + mm(tl.trans(kh * kc[:, None]), v, DOT, PREC, ACC)
        z_cos = z_cos * fade + tl.sum(kh * kc[:, None], 0)
        if REWEIGHT:
            num += mm(qh * qs[:, None], s_sin, DOT, PREC, ACC)
            den += tl.sum(qh * qs[:, None] * z_sin[None, :], 1)
            s_sin = s_sin * fade[:, None] + mm(tl.trans(kh * ks[:, None]), v, DOT, PREC, ACC)
            z_sin = z_sin * fade + tl.sum(kh * ks[:, None], 0)
        tl.store(NUM + bh * N * E + offs_t[:, None] * E + offs_e[None, :], num,
                 mask=valid[:, None] & (offs_e[None, :] < E))
        tl.store(DEN + bh * N + offs_t, den, mask=valid)
    store_state(SF, ZF, sbase, zbase, smask, offs_d < D, D, E, s_sin, s_cos, z_sin,
                z_cos, REWEIGHT, G)


@triton.jit
def _bwd_rows(Q, K, V, QP, KP, LG, MASK, DNUM, DDEN, b, h, bh, offs_t, offs_d, offs_e, tri,
              N, D, E, sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn,
              slb, slh, sln, smb, FMAP: tl.constexpr, REWEIGHT: tl.constexpr,
              HAS_MASK: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr,
              PREC: tl.constexpr):
    """One chunk for either sweep of the backward: what :func:`._causal._chunk` and
    :func:`_decay` load, the output gradients ``do``, ``dd`` and ``pm = tril(do v^T + dd)``."""
    qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep = _chunk(
        Q, K, V, QP, KP, MASK, b, h, offs_t, offs_d, offs_e, N, D, E,
        sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn, smb,
        FMAP, REWEIGHT, HAS_MASK, ACC)
    cum, total, e3 = _decay(LG, b, h, offs_t, offs_d, keep, D, slb, slh, sln, tri, ACC)
    do, dd = load_output_grads(DNUM, DDEN, bh, N, E, offs_t, offs_e, valid, ACC)
    pm = tl.where(tri, mm(do, tl.trans(v), DOT, PREC, ACC) + dd[:, None], 0.0)
    return qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep, cum, total, e3, do, dd, pm


@triton.jit
def gated_bwd_kernel(Q, K, V, QP, KP, LG, MASK, S0, Z0, DNUM, DDEN, DSF, DZF,
                     DQ, DK, DV, DQP, DKP, DB, DS0, DZ0, H, N, D, E,
                     sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn,
                     slb, slh, sln, smb,
                     FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
                     HAS_S0: tl.constexpr, HAS_DFINAL: tl.constexpr, G: tl.constexpr,
                     ACC: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
                     BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """``DNUM [B,H,N,E]``, ``DDEN [B,H,N]``; ``DB [B,H,N,D]`` receives ``dL/dB``."""
    bh = tl.program_id(0)
    b = bh // H
    h = bh % H
    offs_d, offs_e, smask, sbase, zbase = state_offsets(bh, D, E, G, BK, BV)
    tri = tl.arange(0, BT)[:, None] >= tl.arange(0, BT)[None, :]

    # forward sweep: dq, dq_prop and fq * dfq
    s_sin, s_cos, z_sin, z_cos = load_state(S0, Z0, sbase, zbase, smask, offs_d < D, D, E,
                                            HAS_S0, REWEIGHT, G, ACC, BK, BV)
    for start in range(0, N, BT):
        offs_t = start + tl.arange(0, BT)
        (qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep, cum, total, e3, do, dd,
         pm) = _bwd_rows(Q, K, V, QP, KP, LG, MASK, DNUM, DDEN, b, h, bh, offs_t, offs_d,
                         offs_e, tri, N, D, E, sqb, sqh, sqn, svb, svh, svn, spb, sph, spn,
                         skpb, skph, skpn, slb, slh, sln, smb, FMAP, REWEIGHT, HAS_MASK, ACC,
                         DOT, PREC)
        eq = tl.exp(cum)
        qh = fq * eq
        d_cos = mm(do, tl.trans(s_cos), DOT, PREC, ACC) + dd[:, None] * z_cos[None, :]
        if REWEIGHT:
            cm = qs[:, None] * ks[None, :] + qc[:, None] * kc[None, :]
            sm = qs[:, None] * kc[None, :] - qc[:, None] * ks[None, :]
            kk = tl.sum(fq[:, None, :] * fk[None, :, :] * e3, 2)
            dfq = tl.sum((pm * cm)[:, :, None] * fk[None, :, :] * e3, 1)
            dqp = -HALF_PI * tl.sum(pm * kk * sm, 1)
            d_sin = mm(do, tl.trans(s_sin), DOT, PREC, ACC) + dd[:, None] * z_sin[None, :]
            dfq += eq * (qc[:, None] * d_cos + qs[:, None] * d_sin)
            dqp += HALF_PI * (qc * tl.sum(qh * d_sin, 1) - qs * tl.sum(qh * d_cos, 1))
            tl.store(DQP + bh * N + offs_t, dqp, mask=valid)
        else:
            dfq = tl.sum(pm[:, :, None] * fk[None, :, :] * e3, 1) + eq * qc[:, None] * d_cos
        kh = fk * tl.exp(total[None, :] - cum)
        fade = tl.exp(total)
        s_cos = s_cos * fade[:, None] + mm(tl.trans(kh * kc[:, None]), v, DOT, PREC, ACC)
        z_cos = z_cos * fade + tl.sum(kh * kc[:, None], 0)
        if REWEIGHT:
            s_sin = s_sin * fade[:, None] + mm(tl.trans(kh * ks[:, None]), v, DOT, PREC, ACC)
            z_sin = z_sin * fade + tl.sum(kh * ks[:, None], 0)
        rows = valid[:, None] & (offs_d[None, :] < D)
        tl.store(DQ + bh * N * D + offs_t[:, None] * D + offs_d[None, :],
                 tl.where(valid[:, None], dfq * dphi(qx, FMAP), 0.0), mask=rows)
        tl.store(DB + bh * N * D + offs_t[:, None] * D + offs_d[None, :], fq * dfq, mask=rows)

    # every thread's fq * dfq rows are in DB before any thread reads them back below
    tl.debug_barrier()

    # backward sweep: dk, dv, dk_prop, dL/dB, carrying dS from the final state's gradient
    ds_sin, ds_cos, dz_sin, dz_cos = load_state(DSF, DZF, sbase, zbase, smask, offs_d < D, D,
                                                E, HAS_DFINAL, REWEIGHT, G, ACC, BK, BV)
    n_chunks = tl.cdiv(N, BT)
    for i in range(0, n_chunks):
        start = (n_chunks - 1 - i) * BT
        offs_t = start + tl.arange(0, BT)
        (qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep, cum, total, e3, do, dd,
         pm) = _bwd_rows(Q, K, V, QP, KP, LG, MASK, DNUM, DDEN, b, h, bh, offs_t, offs_d,
                         offs_e, tri, N, D, E, sqb, sqh, sqn, svb, svh, svn, spb, sph, spn,
                         skpb, skph, skpn, slb, slh, sln, smb, FMAP, REWEIGHT, HAS_MASK, ACC,
                         DOT, PREC)
        kk = tl.sum(fq[:, None, :] * fk[None, :, :] * e3, 2)
        if REWEIGHT:
            cm = qs[:, None] * ks[None, :] + qc[:, None] * kc[None, :]
            sm = qs[:, None] * kc[None, :] - qc[:, None] * ks[None, :]
            dfk = tl.sum((pm * cm)[:, :, None] * fq[:, None, :] * e3, 0)
            dkp = HALF_PI * tl.sum(pm * kk * sm, 0)
            am = kk * cm
        else:
            dfk = tl.sum(pm[:, :, None] * fq[:, None, :] * e3, 0)
            am = kk
        dv = mm(tl.trans(am), do, DOT, PREC, ACC)
        ek = tl.exp(total[None, :] - cum)
        keepf = tl.where(keep, 1.0, 0.0).to(ACC)
        dk_cos = mm(v, tl.trans(ds_cos), DOT, PREC, ACC) + keepf[:, None] * dz_cos[None, :]
        dfk += ek * kc[:, None] * dk_cos
        dv += mm(fk * ek * kc[:, None], ds_cos, DOT, PREC, ACC)
        qh = fq * tl.exp(cum)
        fade = tl.exp(total)
        ds_cos = ds_cos * fade[:, None] + mm(tl.trans(qh * qc[:, None]), do, DOT, PREC, ACC)
        dz_cos = dz_cos * fade + tl.sum(qh * qc[:, None] * dd[:, None], 0)
        if REWEIGHT:
            dk_sin = mm(v, tl.trans(ds_sin), DOT, PREC, ACC) + keepf[:, None] * dz_sin[None, :]
            dfk += ek * ks[:, None] * dk_sin
            kh = fk * ek
            dkp += HALF_PI * (kc * tl.sum(kh * dk_sin, 1) - ks * tl.sum(kh * dk_cos, 1))
            dv += mm(kh * ks[:, None], ds_sin, DOT, PREC, ACC)
            tl.store(DKP + bh * N + offs_t, tl.where(keep, dkp, 0.0), mask=valid)
            ds_sin = ds_sin * fade[:, None] + mm(tl.trans(qh * qs[:, None]), do, DOT, PREC, ACC)
            dz_sin = dz_sin * fade + tl.sum(qh * qs[:, None] * dd[:, None], 0)
        rows = valid[:, None] & (offs_d[None, :] < D)
        dbq = tl.load(DB + bh * N * D + offs_t[:, None] * D + offs_d[None, :], mask=rows,
                      other=0.0)
        tl.store(DB + bh * N * D + offs_t[:, None] * D + offs_d[None, :], dbq - fk * dfk,
                 mask=rows)
        tl.store(DK + bh * N * D + offs_t[:, None] * D + offs_d[None, :],
                 tl.where(keep[:, None], dfk * dphi(kx, FMAP), 0.0), mask=rows)
        tl.store(DV + bh * N * E + offs_t[:, None] * E + offs_e[None, :],
                 tl.where(keep[:, None], dv, 0.0), mask=valid[:, None] & (offs_e[None, :] < E))
    if HAS_S0:
        store_state(DS0, DZ0, sbase, zbase, smask, offs_d < D, D, E, ds_sin, ds_cos, dz_sin,
                    dz_cos, REWEIGHT, G)
