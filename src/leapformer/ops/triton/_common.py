"""Pieces shared by the Triton kernels: the feature maps and their derivatives, the
sin/cos re-weighting, computed in registers.

Products (``mm``) take operands in the input dtype for 16-bit inputs (as FLA's
kernels do) and accumulate in float32; float32 and float64 inputs multiply in their
own precision (IEEE, no TF32).

Feature-map codes (``FMAP``): 0 = ReLU, 1 = ELU + 1, 2 = identity. Without
re-weighting the kernels run the same code with the proportion fixed at 0, so the
"cos" group carries the plain features (``cos 0 = 1``) and the "sin" group is
skipped at compile time (``REWEIGHT = False``). State tensors are
``[B*H, G, D, Dv]`` with group 0 = sin, group ``G - 1`` = cos, the order of
:func:`leapformer.ops.proportions.reweighting`.
"""

from __future__ import annotations

import triton
import triton.language as tl

FEATURE_CODES = {"relu": 0, "elu": 1, "identity": 2}
HALF_PI = tl.constexpr(1.5707963267948966)  # a jit kernel reads only constexpr globals


@triton.jit
def phi(x, FMAP: tl.constexpr):
    """The feature map on a register block."""
    if FMAP == 0:
        return tl.maximum(x, 0.0)
    elif FMAP == 1:
        return tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))
    else:
        return x


@triton.jit
def dphi(x, FMAP: tl.constexpr):
    """Derivative of the feature map (ReLU: 1 where ``x > 0``, as torch's)."""
    if FMAP == 0:
        return tl.where(x > 0, 1.0, 0.0).to(x.dtype)
    elif FMAP == 1:
        return tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0))).to(x.dtype)
    else:
        return tl.full(x.shape, 1.0, x.dtype)


@triton.jit
def mm(a, b, DOT: tl.constexpr, PREC: tl.constexpr, ACC: tl.constexpr):
    """``a @ b`` with operands in ``DOT`` (the input dtype for 16-bit inputs: tensor-core
    bf16/fp16; the accumulation dtype otherwise) and the result in ``ACC``."""
    return tl.dot(a.to(DOT), b.to(DOT), input_precision=PREC, out_dtype=ACC)


@triton.jit
def sequence_rows(sid, CU, H, N, VARLEN: tl.constexpr):
    """(state index, batch, head, first row, end row) of program ``sid`` over (sequence,
    head). Varlen: a batch of one, sequence ``i`` on rows ``CU[i]..CU[i+1]``."""
    h = sid % H
    if VARLEN:
        b = sid * 0  # a tensor in both branches
        bos = tl.load(CU + sid // H).to(tl.int32)
        eos = tl.load(CU + sid // H + 1).to(tl.int32)
    else:
        b = sid // H
        bos = sid * 0
        eos = N
    return sid, b, h, bos, eos


@triton.jit
def state_offsets(sid, D, E, G: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """``(offs_d [BK], offs_e [BV], smask, sbase [BK, BV], zbase [BK])``: the feature and
    value offsets of a program and where its state ``[.., G, D, E]`` / ``[.., G, D]``
    (state index ``sid``) lies."""
    offs_d = tl.arange(0, BK)
    offs_e = tl.arange(0, BV)
    smask = (offs_d[:, None] < D) & (offs_e[None, :] < E)
    sbase = sid * G * D * E + offs_d[:, None] * E + offs_e[None, :]
    zbase = sid * G * D + offs_d
    return offs_d, offs_e, smask, sbase, zbase


@triton.jit
def load_state(S, Z, sbase, zbase, smask, zmask, D, E, HAS: tl.constexpr,
               REWEIGHT: tl.constexpr, G: tl.constexpr, ACC: tl.constexpr,
               BK: tl.constexpr, BV: tl.constexpr):
    """``(s_sin, s_cos [BK, BV], z_sin, z_cos [BK])`` in registers: a state (or state
    gradient) ``[.., G, D, E]`` / ``[.., G, D]`` read at ``sbase`` / ``zbase`` when
    ``HAS``, zeros otherwise; group ``G - 1`` is cos, group 0 sin (re-weighted only)."""
    s_sin = tl.zeros((BK, BV), ACC)
    s_cos = tl.zeros((BK, BV), ACC)
    z_sin = tl.zeros((BK,), ACC)
    z_cos = tl.zeros((BK,), ACC)
    if HAS:
        s_cos += tl.load(S + sbase + (G - 1) * D * E, mask=smask, other=0.0).to(ACC)
        z_cos += tl.load(Z + zbase + (G - 1) * D, mask=zmask, other=0.0).to(ACC)
        if REWEIGHT:
            s_sin += tl.load(S + sbase, mask=smask, other=0.0).to(ACC)
            z_sin += tl.load(Z + zbase, mask=zmask, other=0.0).to(ACC)
    return s_sin, s_cos, z_sin, z_cos


@triton.jit
def store_state(S, Z, sbase, zbase, smask, zmask, D, E, s_sin, s_cos, z_sin, z_cos,
                REWEIGHT: tl.constexpr, G: tl.constexpr):
    """Write what :func:`load_state` reads."""
    tl.store(S + sbase + (G - 1) * D * E, s_cos, mask=smask)
    tl.store(Z + zbase + (G - 1) * D, z_cos, mask=zmask)
    if REWEIGHT:
        tl.store(S + sbase, s_sin, mask=smask)
        tl.store(Z + zbase, z_sin, mask=zmask)


@triton.jit
def load_output_grads(DNUM, DDEN, bh, N, E, offs_t, offs_e, valid, ACC: tl.constexpr):
    """Gradients of the numerator ``[BT, BV]`` and denominator ``[BT]`` rows of a chunk."""
    do = tl.load(DNUM + bh * N * E + offs_t[:, None] * E + offs_e[None, :],
                 mask=valid[:, None] & (offs_e[None, :] < E), other=0.0).to(ACC)
    dd = tl.load(DDEN + bh * N + offs_t, mask=valid, other=0.0).to(ACC)
    return do, dd


def block(n: int, least: int = 16) -> int:
    """Register block for a dimension of size ``n`` (a power of two, at least ``least``:
    ``tl.dot`` needs 16)."""
    return max(least, triton.next_power_of_2(n))
