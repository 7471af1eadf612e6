"""flash-linear-attention (FLA) interop: re-weighted linear attention as FLA's plain
linear attention on expanded features.

Because ``cos(a - b) = sin a sin b + cos a cos b`` (docs/math.md §1.3), LeaP is linear
attention on ``[phi(q) sin, phi(q) cos](pi/2 p)`` and ``[phi(k) sin, phi(k) cos]``;
a column of ones on the values (``[v, 1, 0..]``) makes the same product give the
denominator. FLA's ``chunk_linear_attn`` (``normalize=False``, ``scale=1``) then
returns numerator and denominator together, and its final state is our fused state
``[B, H, G*D, P]``. Unlike the Triton kernels of this package, this path writes the
doubled features to memory (twice the key/query traffic): it is the comparison point
of ``benchmarks/gpu.py`` and an option for FLA users. Needs
``pip install 'leapformer[fla]'``; FLA's kernels run on CUDA only.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from leapformer.ops._fused import augment_values, expand_features, split_output
from leapformer.ops.proportions import reweighting


def expanded_inputs(q: Tensor, k: Tensor, v: Tensor, q_prop: Tensor | None,
                    k_prop: Tensor | None, *, phi, key_padding_mask: Tensor | None,
                    dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """FLA-layout ``[B, T, H, *]`` expanded queries ``[.., G*D]``, keys ``[.., G*D]`` and
    augmented values ``[.., P]`` (padded keys and values zeroed after the feature map)."""
    fq = phi(q.to(dtype), True)
    fk = phi(k.to(dtype), False)
    vc = v.to(dtype)
    wq = wk = None
    if q_prop is not None:
        wq = reweighting(q_prop.to(dtype))
        wk = reweighting(k_prop.to(dtype))
    if key_padding_mask is not None:
        pad = key_padding_mask[:, None, :, None]
        fk = fk.masked_fill(pad, 0.0)
        vc = vc.masked_fill(pad, 0.0)
        if wk is not None:
            wk = wk.masked_fill(pad, 0.0)
    B, H = q.shape[:2]
    if wq is not None:
        wq = wq.expand(B, H, -1, -1)
        wk = wk.expand(B, H, -1, -1)
    eq = expand_features(fq, wq)
    ek = expand_features(fk, wk)
    return tuple(t.transpose(1, 2).contiguous() for t in (eq, ek, augment_values(vc)))


def fla_attention(q: Tensor, k: Tensor, v: Tensor, q_prop: Tensor | None,
                  k_prop: Tensor | None, *, phi, key_padding_mask: Tensor | None,
                  s0: Tensor | None, cdtype: torch.dtype, cu_seqlens: Tensor | None = None,
                  kernel: Callable | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Causal re-weighted linear attention through an FLA linear-attention function.

    ``kernel`` defaults to ``fla.ops.linear_attn.chunk_linear_attn``; any function with
    its signature works (tests pass FLA's ``naive_recurrent_linear_attn`` on CPU).
    ``cu_seqlens`` (packed sequences) is passed on to the kernel.
    Features are in ``cdtype`` (float32), or in the input dtype for 16-bit inputs (FLA
    accumulates in float32). Returns ``(num [B,H,N,Dv], den [B,H,N], final
    [B,H,G,D,P])`` in ``cdtype``."""
    if kernel is None:
        from fla.ops.linear_attn import chunk_linear_attn as kernel
    dtype = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else cdtype
    eq, ek, ev = expanded_inputs(q, k, v, q_prop, k_prop, phi=phi,
                                 key_padding_mask=key_padding_mask, dtype=dtype)
    H, D = q.shape[1], q.shape[3]
    S = q.shape[0] if cu_seqlens is None else cu_seqlens.numel() - 1
    G = 1 if q_prop is None else 2
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    init = None if s0 is None else s0.reshape(S, H, G * D, -1).to(state_dtype)
    extra = {} if cu_seqlens is None else {"cu_seqlens": cu_seqlens}
    out, final = kernel(eq, ek, ev, scale=1.0, initial_state=init, output_final_state=True,
                        normalize=False, **extra)
    num, den = split_output(out.transpose(1, 2).to(cdtype), v.shape[-1])
    return num, den, final.to(cdtype).reshape(S, H, G, D, -1)
