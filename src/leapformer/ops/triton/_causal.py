"""Triton kernels of causal re-weighted linear attention, chunkwise.

One program per (batch, head) walks the sequence in chunks of ``BT`` rows and
carries the running state ``S_g [D, Dv]``, ``z_g [D]`` (g = sin, cos) in float32
registers across chunks, as flash-linear-attention's fused chunk kernels do.
Inside a chunk the weights are one ``BT x BT`` product
``A_ij = (f_i . f_j) cos(pi/2 (p_i - p_j))`` (``cos(a-b)`` from the four sin/cos
vectors in registers, so the doubled features are never formed), lower-triangular;
across chunks the queries read the state.

Variable lengths (``VARLEN``): a batch of one holding several sequences back to back,
``CU = cu_seqlens`` (FLA's convention); one program per (sequence, head), states per
sequence.

- :func:`fwd_kernel`: numerator ``[B,H,N,Dv]``, denominator ``[B,H,N]``, optional
  initial state in and final state out (the recurrent decoding step is this kernel on
  a few tokens).
- :func:`bwd_kernel`: a forward sweep for ``dq``, ``dq_prop`` (state ``S``) and a
  backward sweep for ``dk``, ``dv``, ``dk_prop`` (state gradient ``dS``, started from
  the gradient of the final state), ending with the gradient of the initial state.

Padded keys (``MASK``) are zeroed after the feature map, with their values.
"""

from __future__ import annotations

import triton
import triton.language as tl

from leapformer.ops.triton._common import (
    HALF_PI,
    dphi,
    load_output_grads,
    load_state,
    mm,
    phi,
    sequence_rows,
    state_offsets,
    store_state,
)


@triton.jit
def _chunk(Q, K, V, QP, KP, MASK, b, h, offs_t, offs_d, offs_e, N, D, E,
           sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn, smb,
           FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
           ACC: tl.constexpr):
    """Load one chunk: raw q, k; features; values; query/key sin, cos; in-range and keep."""
    valid = offs_t < N
    keep = valid
    if HAS_MASK:
        pad = tl.load(MASK + b * smb + offs_t, mask=valid, other=1)
        keep = valid & (pad == 0)
    dmask = offs_d[None, :] < D
    qx = tl.load(Q + b * sqb + h * sqh + offs_t[:, None] * sqn + offs_d[None, :],
                 mask=valid[:, None] & dmask, other=0.0).to(ACC)
    kx = tl.load(K + b * sqb + h * sqh + offs_t[:, None] * sqn + offs_d[None, :],
                 mask=keep[:, None] & dmask, other=0.0).to(ACC)
    fq = tl.where(valid[:, None] & dmask, phi(qx, FMAP), 0.0)
    fk = tl.where(keep[:, None] & dmask, phi(kx, FMAP), 0.0)
    v = tl.load(V + b * svb + h * svh + offs_t[:, None] * svn + offs_e[None, :],
                mask=keep[:, None] & (offs_e[None, :] < E), other=0.0).to(ACC)
    if REWEIGHT:
        qp = tl.load(QP + b * spb + h * sph + offs_t * spn, mask=valid, other=0.0).to(ACC)
        kp = tl.load(KP + b * skpb + h * skph + offs_t * skpn, mask=keep, other=0.0).to(ACC)
        qs = tl.sin(qp * HALF_PI)
        qc = tl.cos(qp * HALF_PI)
        ks = tl.sin(kp * HALF_PI)
        kc = tl.cos(kp * HALF_PI)
    else:
        qs = tl.zeros(offs_t.shape, ACC)
        qc = tl.full(offs_t.shape, 1.0, ACC)
        ks = tl.zeros(offs_t.shape, ACC)
        kc = tl.full(offs_t.shape, 1.0, ACC)
    return qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep


@triton.jit
def fwd_kernel(Q, K, V, QP, KP, MASK, CU, S0, Z0, NUM, DEN, SF, ZF, H, N, D, E,
               sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn, smb,
               FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
               VARLEN: tl.constexpr, HAS_S0: tl.constexpr, STORE_FINAL: tl.constexpr,
               G: tl.constexpr,
               ACC: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
               BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """``NUM [B,H,N,E]``, ``DEN [B,H,N]``, states ``[B*H,G,D,E]`` / ``[B*H,G,D]`` contiguous."""
    sid, b, h, bos, eos = sequence_rows(tl.program_id(0), CU, H, N, VARLEN)
    bh = b * H + h
    offs_d, offs_e, smask, sbase, zbase = state_offsets(sid, D, E, G, BK, BV)
    s_sin, s_cos, z_sin, z_cos = load_state(S0, Z0, sbase, zbase, smask, offs_d < D, D, E,
                                            HAS_S0, REWEIGHT, G, ACC, BK, BV)
    tri = tl.arange(0, BT)[:, None] >= tl.arange(0, BT)[None, :]
    for start in range(bos, eos, BT):
        offs_t = start + tl.arange(0, BT)
        qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep = _chunk(
            Q, K, V, QP, KP, MASK, b, h, offs_t, offs_d, offs_e, eos, D, E,
            sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn, smb,
            FMAP, REWEIGHT, HAS_MASK, ACC)
        a = mm(fq, tl.trans(fk), DOT, PREC, ACC)
        if REWEIGHT:
            a = a * (qs[:, None] * ks[None, :] + qc[:, None] * kc[None, :])
        a = tl.where(tri, a, 0.0)
        fqc = fq * qc[:, None]
        num = mm(a, v, DOT, PREC, ACC) \
            + mm(fqc, s_cos, DOT, PREC, ACC)
        den = tl.sum(a, 1) + tl.sum(fqc * z_cos[None, :], 1)
        fkc = fk * kc[:, None]
        s_cos += mm(tl.trans(fkc), v, DOT, PREC, ACC)
        z_cos += tl.sum(fkc, 0)
        if REWEIGHT:
            fqs = fq * qs[:, None]
            num += mm(fqs, s_sin, DOT, PREC, ACC)
            den += tl.sum(fqs * z_sin[None, :], 1)
            fks = fk * ks[:, None]
            s_sin += mm(tl.trans(fks), v, DOT, PREC, ACC)
            z_sin += tl.sum(fks, 0)
        tl.store(NUM + bh * N * E + offs_t[:, None] * E + offs_e[None, :], num,
                 mask=valid[:, None] & (offs_e[None, :] < E))
        tl.store(DEN + bh * N + offs_t, den, mask=valid)
    if STORE_FINAL:
        store_state(SF, ZF, sbase, zbase, smask, offs_d < D, D, E, s_sin, s_cos, z_sin,
                    z_cos, REWEIGHT, G)


@triton.jit
def bwd_kernel(Q, K, V, QP, KP, MASK, CU, S0, Z0, DNUM, DDEN, DSF, DZF,
               DQ, DK, DV, DQP, DKP, DS0, DZ0, H, N, D, E,
               sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn, smb,
               FMAP: tl.constexpr, REWEIGHT: tl.constexpr, HAS_MASK: tl.constexpr,
               VARLEN: tl.constexpr, HAS_S0: tl.constexpr, HAS_DFINAL: tl.constexpr,
               G: tl.constexpr,
               ACC: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
               BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """``DNUM [B,H,N,E]``, ``DDEN [B,H,N]`` and all outputs contiguous."""
    sid, b, h, bos, eos = sequence_rows(tl.program_id(0), CU, H, N, VARLEN)
    bh = b * H + h
    offs_d, offs_e, smask, sbase, zbase = state_offsets(sid, D, E, G, BK, BV)
    tri = tl.arange(0, BT)[:, None] >= tl.arange(0, BT)[None, :]

    # forward sweep: dq, dq_prop
    s_sin, s_cos, z_sin, z_cos = load_state(S0, Z0, sbase, zbase, smask, offs_d < D, D, E,
                                            HAS_S0, REWEIGHT, G, ACC, BK, BV)
    for start in range(bos, eos, BT):
        offs_t = start + tl.arange(0, BT)
        qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep = _chunk(
            Q, K, V, QP, KP, MASK, b, h, offs_t, offs_d, offs_e, eos, D, E,
            sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn, smb,
            FMAP, REWEIGHT, HAS_MASK, ACC)
        do, dd = load_output_grads(DNUM, DDEN, bh, N, E, offs_t, offs_e, valid, ACC)
        pm = mm(do, tl.trans(v), DOT, PREC, ACC) + dd[:, None]
        pm = tl.where(tri, pm, 0.0)
        if REWEIGHT:
            cm = qs[:, None] * ks[None, :] + qc[:, None] * kc[None, :]
            sm = qs[:, None] * kc[None, :] - qc[:, None] * ks[None, :]
            kk = mm(fq, tl.trans(fk), DOT, PREC, ACC)
            dfq = mm(pm * cm, fk, DOT, PREC, ACC)
            dqp = -HALF_PI * tl.sum(pm * kk * sm, 1)
        else:
            dfq = mm(pm, fk, DOT, PREC, ACC)
        d_cos = mm(do, tl.trans(s_cos), DOT, PREC, ACC) \
            + dd[:, None] * z_cos[None, :]
        dfq += qc[:, None] * d_cos
        fkc = fk * kc[:, None]
        s_cos += mm(tl.trans(fkc), v, DOT, PREC, ACC)
        z_cos += tl.sum(fkc, 0)
        if REWEIGHT:
            d_sin = mm(do, tl.trans(s_sin), DOT, PREC, ACC) \
                + dd[:, None] * z_sin[None, :]
            dfq += qs[:, None] * d_sin
            dqp += HALF_PI * (qc * tl.sum(fq * d_sin, 1) - qs * tl.sum(fq * d_cos, 1))
            tl.store(DQP + bh * N + offs_t, dqp, mask=valid)
            fks = fk * ks[:, None]
            s_sin += mm(tl.trans(fks), v, DOT, PREC, ACC)
            z_sin += tl.sum(fks, 0)
        dq = tl.where(valid[:, None], dfq * dphi(qx, FMAP), 0.0)
        tl.store(DQ + bh * N * D + offs_t[:, None] * D + offs_d[None, :], dq,
                 mask=valid[:, None] & (offs_d[None, :] < D))

    # backward sweep: dk, dv, dk_prop, carrying dS from the final state's gradient
    ds_sin, ds_cos, dz_sin, dz_cos = load_state(DSF, DZF, sbase, zbase, smask, offs_d < D, D,
                                                E, HAS_DFINAL, REWEIGHT, G, ACC, BK, BV)
    n_chunks = tl.cdiv(eos - bos, BT)
    for i in range(0, n_chunks):
        start = bos + (n_chunks - 1 - i) * BT
        offs_t = start + tl.arange(0, BT)
        qx, kx, fq, fk, v, qs, qc, ks, kc, valid, keep = _chunk(
            Q, K, V, QP, KP, MASK, b, h, offs_t, offs_d, offs_e, eos, D, E,
            sqb, sqh, sqn, svb, svh, svn, spb, sph, spn, skpb, skph, skpn, smb,
            FMAP, REWEIGHT, HAS_MASK, ACC)
        do, dd = load_output_grads(DNUM, DDEN, bh, N, E, offs_t, offs_e, valid, ACC)
        pm = mm(do, tl.trans(v), DOT, PREC, ACC) + dd[:, None]
        pm = tl.where(tri, pm, 0.0)
        kk = mm(fq, tl.trans(fk), DOT, PREC, ACC)
        if REWEIGHT:
            cm = qs[:, None] * ks[None, :] + qc[:, None] * kc[None, :]
            sm = qs[:, None] * kc[None, :] - qc[:, None] * ks[None, :]
            dfk = mm(tl.trans(pm * cm), fq, DOT, PREC, ACC)
            dkp = HALF_PI * tl.sum(pm * kk * sm, 0)
            am = tl.where(tri, kk * cm, 0.0)
        else:
            dfk = mm(tl.trans(pm), fq, DOT, PREC, ACC)
            am = tl.where(tri, kk, 0.0)
        dv = mm(tl.trans(am), do, DOT, PREC, ACC)
        keepf = tl.where(keep, 1.0, 0.0).to(ACC)
        dk_cos = mm(v, tl.trans(ds_cos), DOT, PREC, ACC) \
            + keepf[:, None] * dz_cos[None, :]
        dfk += kc[:, None] * dk_cos
        dv += mm(fk * kc[:, None], ds_cos, DOT, PREC, ACC)
        fqc = fq * qc[:, None]
        ds_cos += mm(tl.trans(fqc), do, DOT, PREC, ACC)
        dz_cos += tl.sum(fqc * dd[:, None], 0)
        if REWEIGHT:
            dk_sin = mm(v, tl.trans(ds_sin), DOT, PREC, ACC) \
                + keepf[:, None] * dz_sin[None, :]
            dfk += ks[:, None] * dk_sin
            dkp += HALF_PI * (kc * tl.sum(fk * dk_sin, 1) - ks * tl.sum(fk * dk_cos, 1))
            dv += mm(fk * ks[:, None], ds_sin, DOT, PREC, ACC)
            tl.store(DKP + bh * N + offs_t, tl.where(keep, dkp, 0.0), mask=valid)
            fqs = fq * qs[:, None]
            ds_sin += mm(tl.trans(fqs), do, DOT, PREC, ACC)
            dz_sin += tl.sum(fqs * dd[:, None], 0)
        dk = tl.where(keep[:, None], dfk * dphi(kx, FMAP), 0.0)
        tl.store(DK + bh * N * D + offs_t[:, None] * D + offs_d[None, :], dk,
                 mask=valid[:, None] & (offs_d[None, :] < D))
        tl.store(DV + bh * N * E + offs_t[:, None] * E + offs_e[None, :],
                 tl.where(keep[:, None], dv, 0.0), mask=valid[:, None] & (offs_e[None, :] < E))
    if HAS_S0:
        store_state(DS0, DZ0, sbase, zbase, smask, offs_d < D, D, E, ds_sin, ds_cos, dz_sin,
                    dz_cos, REWEIGHT, G)
