"""Compile the kernels for a CUDA architecture without a GPU.

Triton's CUDA backend ships its own ``ptxas``, so every kernel can be compiled to a
cubin on a machine with no GPU. That catches what the CPU interpreter does not (a
non-constexpr global, an op the compiler rejects) and gives each kernel's shared
memory, which must fit the architecture's limit per block (227 KB on sm_90, 163 KB on
sm_80). The launch settings (rows per chunk, warps, operand dtype) are those of
:mod:`leapformer.ops.triton.functions`. Run with ``TRITON_INTERPRET`` unset
(``benchmarks/gpu.py --compile-check``).
"""

from __future__ import annotations

import inspect
import logging
import time

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from leapformer.ops.triton import _bidirectional, _causal, _gated
from leapformer.ops.triton._common import block
from leapformer.ops.triton.functions import ROWS, _acc, _chunk_rows, _warps
from leapformer.ops.triton.gated_functions import ROWS as GATED_ROWS

logger = logging.getLogger(__name__)

SHARED_LIMIT = {90: 232448, 89: 101376, 86: 101376, 80: 166912}
_TYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32",
          torch.float64: "fp64"}
_INPUTS = ("Q", "K", "V", "X", "Y", "DY", "DQ", "DK", "DV", "DX")
_SCALARS = ("H", "N", "M", "D", "E")
KERNELS = ("fwd", "bwd", "reduce", "read", "grad", "gated-fwd", "gated-bwd")


def _signature(kernel, consts: dict, dtype: torch.dtype) -> dict:
    acc = "*fp64" if dtype == torch.float64 else "*fp32"
    sig = {}
    for name in inspect.signature(kernel.fn).parameters:
        if name in consts:
            sig[name] = "constexpr"
        elif name in _INPUTS:
            sig[name] = "*" + _TYPES[dtype]
        elif name == "MASK":
            sig[name] = "*u8"
        elif name == "CU":
            sig[name] = "*i64"
        elif name.isupper() and name not in _SCALARS:
            sig[name] = acc  # proportions, states, accumulation-dtype outputs
        else:
            sig[name] = "i32"
    return sig


def compile_kernels(*, arch: int = 90, dtype: torch.dtype = torch.bfloat16,
                    head_dims=(64, 128), kernels=KERNELS, reweight: bool = True) -> list[dict]:
    """Compile each kernel (with mask, initial and final state, ReLU) for ``arch``; one row
    per kernel and head size: ``kernel, d, rows, warps, shared, limit, ok, seconds, error``."""
    _, kc = _acc(dtype)
    target = GPUTarget("cuda", arch, 32)
    limit = SHARED_LIMIT.get(arch)
    rows = []
    for d in head_dims:
        bk = block(d)
        warps = _warps(bk, bk)
        common = dict(FMAP=0, REWEIGHT=reweight, HAS_MASK=True, VARLEN=False,
                      G=2 if reweight else 1, **kc, BK=bk, BV=bk)
        bt = _chunk_rows(64, bk, dtype)
        jobs = {"fwd": (_causal.fwd_kernel, dict(HAS_S0=True, STORE_FINAL=True, BT=bt)),
                "bwd": (_causal.bwd_kernel, dict(HAS_S0=True, HAS_DFINAL=True, BT=bt)),
                "reduce": (_bidirectional.reduce_kernel, dict(HAS_C=True, BN=ROWS)),
                "read": (_bidirectional.read_kernel, dict(WRITE_DEN=True, BM=ROWS)),
                "grad": (_bidirectional.grad_kernel, dict(HAS_DC=True, BM=ROWS)),
                "gated-fwd": (_gated.gated_fwd_kernel, dict(HAS_S0=True, BT=GATED_ROWS)),
                "gated-bwd": (_gated.gated_bwd_kernel,
                              dict(HAS_S0=True, HAS_DFINAL=True, BT=GATED_ROWS))}
        for name in kernels:
            kernel, extra = jobs[name]
            params = inspect.signature(kernel.fn).parameters
            consts = {key: value for key, value in {**common, **extra}.items() if key in params}
            chunk_rows = {"fwd": bt, "bwd": bt, "gated-fwd": GATED_ROWS, "gated-bwd": GATED_ROWS}
            row = {"kernel": name, "d": d, "rows": chunk_rows.get(name, ROWS),
                   "warps": warps, "limit": limit}
            start = time.perf_counter()
            try:
                src = ASTSource(fn=kernel, signature=_signature(kernel, consts, dtype),
                                constexprs=consts)
                compiled = triton.compile(src, target=target, options={"num_warps": warps})
                row["shared"] = compiled.metadata.shared
                row["ok"] = limit is None or row["shared"] <= limit
            except Exception as e:  # report every kernel, not just the first failure
                cause = e
                while cause.__cause__ is not None:
                    cause = cause.__cause__
                row.update(shared=None, ok=False, error=f"{type(cause).__name__}: {cause}"[-800:])
            row["seconds"] = time.perf_counter() - start
            logger.info("compiled %s d=%d: %s", name, d, row)
            rows.append(row)
    return rows
