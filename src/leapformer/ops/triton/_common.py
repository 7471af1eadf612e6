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


def block(n: int, least: int = 16) -> int:
    """Register block for a dimension of size ``n`` (a power of two, at least ``least``:
    ``tl.dot`` needs 16)."""
    return max(least, triton.next_power_of_2(n))
