"""The autograd function around the gated Triton kernels (:mod:`._gated`), and the entry
point :mod:`leapformer.ops.gated` calls for ``backend="triton"``.

It returns the numerator ``[B,H,N,Dv]`` and denominator ``[B,H,N]`` in the
accumulation dtype (float32; float64 for float64 inputs) and the final state as
``S [B,H,G,D,Dv]``, ``z [B,H,G,D]``; the normalisation is one torch step in the caller.
Gradients: q, k, v, both proportions, the log decay, the initial state, and those
flowing back from the final state. The log decay's gradient is the reverse cumulative
sum of the kernel's ``dL/dB`` (plus the final state's term at the last row), zero at
padded keys (whose decay the forward ignores).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from leapformer.ops.triton._common import FEATURE_CODES, block
from leapformer.ops.triton._gated import gated_bwd_kernel, gated_fwd_kernel
from leapformer.ops.triton.functions import (
    _acc,
    _mask_u8,
    _prop_strides,
    _warps,
    causal_grad_buffers,
)

ROWS = 16  # rows per chunk: the intra-chunk product is ROWS x ROWS x head size in registers


class GatedCausalAttention(torch.autograd.Function):
    """``(q, k, v [B,H,N,*], qp, kp [B,H,N] or None, log_decay [B,H,N,D], s0 [B,H,G,D,Dv]
    or None, z0 [B,H,G,D] or None, mask [B,N] or None, fmap)`` ->
    ``(num, den, S_final, z_final)``."""

    @staticmethod
    def forward(ctx, q, k, v, qp, kp, lg, s0, z0, mask, fmap):
        B, H, N, D = q.shape
        E = v.shape[-1]
        reweight = qp is not None
        G = 2 if reweight else 1
        acc, kc = _acc(q.dtype)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        lg = lg.to(acc).contiguous()
        num = torch.empty(B, H, N, E, dtype=acc, device=q.device)
        den = torch.empty(B, H, N, dtype=acc, device=q.device)
        sf = torch.empty(B, H, G, D, E, dtype=acc, device=q.device)
        zf = torch.empty(B, H, G, D, dtype=acc, device=q.device)
        if s0 is not None:
            s0, z0 = s0.to(acc).contiguous(), z0.to(acc).contiguous()
        m, smb = _mask_u8(mask, q)
        gated_fwd_kernel[(B * H,)](
            q, k, v, qp if reweight else q, kp if reweight else q, lg, m,
            s0 if s0 is not None else sf, z0 if z0 is not None else zf, num, den, sf, zf,
            H, N, D, E, *q.stride()[:3], *v.stride()[:3], *_prop_strides(qp),
            *_prop_strides(kp), *lg.stride()[:3], smb, FMAP=fmap, REWEIGHT=reweight,
            HAS_MASK=mask is not None, HAS_S0=s0 is not None, G=G, **kc,
            BT=ROWS, BK=block(D), BV=block(E), num_warps=_warps(block(D), block(E)))
        ctx.save_for_backward(q, k, v, qp, kp, lg, s0, z0, mask, sf, zf)
        ctx.fmap = fmap
        ctx.set_materialize_grads(False)
        return num, den, sf, zf

    @staticmethod
    @once_differentiable
    def backward(ctx, g_num, g_den, g_sf, g_zf):
        q, k, v, qp, kp, lg, s0, z0, mask, sf, zf = ctx.saved_tensors
        B, H, N, D = q.shape
        E = v.shape[-1]
        reweight = qp is not None
        G = 2 if reweight else 1
        acc, kc = _acc(q.dtype)
        g_num, g_den, g_sf, g_zf, dq, dk, dv, dqp, dkp, ds0, dz0 = causal_grad_buffers(
            q, k, v, reweight, B, s0 is not None, g_num, g_den, g_sf, g_zf)
        has_dfinal = g_sf is not None
        db = torch.empty(B, H, N, D, dtype=acc, device=q.device)
        m, smb = _mask_u8(mask, q)
        fill = g_num
        gated_bwd_kernel[(B * H,)](
            q, k, v, qp if reweight else q, kp if reweight else q, lg, m,
            s0 if s0 is not None else fill, z0 if z0 is not None else fill, g_num, g_den,
            g_sf if has_dfinal else fill, g_zf if has_dfinal else fill,
            dq, dk, dv, dqp if reweight else fill, dkp if reweight else fill, db,
            ds0 if ds0 is not None else fill, dz0 if dz0 is not None else fill,
            H, N, D, E, *q.stride()[:3], *v.stride()[:3], *_prop_strides(qp),
            *_prop_strides(kp), *lg.stride()[:3], smb, FMAP=ctx.fmap, REWEIGHT=reweight,
            HAS_MASK=mask is not None, HAS_S0=s0 is not None, HAS_DFINAL=has_dfinal, G=G,
            **kc, BT=ROWS, BK=block(D), BV=block(E), num_warps=_warps(block(D), block(E)))
        if has_dfinal:  # every term of the final state carries exp(B_last)
            db[:, :, -1] += (sf * g_sf).sum((2, 4)) + (zf * g_zf).sum(2)
        dlg = db.flip(2).cumsum(2).flip(2)
        if mask is not None:
            dlg = dlg.masked_fill(mask[:, None, :, None], 0.0)
        return dq, dk, dv, dqp, dkp, dlg, ds0, dz0, None, None


def triton_gated_forward(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor,
                         q_prop: Tensor | None, k_prop: Tensor | None, *, feature_map: str,
                         key_padding_mask: Tensor | None, s0: Tensor | None,
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inputs as :func:`leapformer.ops.gated_leap_attention` (checked by the caller;
    proportions None without re-weighting); ``s0 [B,H,G,D,P]`` the fused initial state or
    None. Returns ``(num [B,H,N,Dv], den [B,H,N], S [B,H,G,D,Dv], z [B,H,G,D])`` in the
    accumulation dtype."""
    if feature_map not in FEATURE_CODES:
        raise ValueError(f"the triton backend supports feature_map in {sorted(FEATURE_CODES)}, "
                         f"got {feature_map!r}")
    B, H, N = q.shape[:3]
    Dv = v.shape[-1]
    acc = _acc(q.dtype)[0]
    qp = kp = None
    if q_prop is not None:
        qp = q_prop.to(acc).expand(B, H, N)
        kp = k_prop.to(acc).expand(B, H, N)
    s_init = z_init = None
    if s0 is not None:
        s_init, z_init = s0[..., :Dv], s0[..., Dv]
    return GatedCausalAttention.apply(q, k, v, qp, kp, log_decay, s_init, z_init,
                                      key_padding_mask, FEATURE_CODES[feature_map])
