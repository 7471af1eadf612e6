"""Re-weighted linear attention with a hand-written backward (LeaPformer, cosFormer).

The autograd-traced chunk form (``attention.py``) expands the features to
``[phi(x) sin(pi/2 p), phi(x) cos(pi/2 p)]`` (docs/math.md §1.3) and autograd
keeps those doubled features, the augmented values, the intra-chunk weights
and every elementwise intermediate for the backward pass. The
:class:`torch.autograd.Function` here saves only the inputs, the numerator and
denominator (one tensor) and the key states; the backward recomputes what is
cheap (feature maps, sin/cos, doubled features, the intra-chunk scores) block by
block and writes the gradients of ``q``, ``k``, ``v`` and of both proportions
itself. The arithmetic and its formulas are in ``reweighted_forms.py``.

Semantics are those of ``leap_attention(..., mode="chunk")`` (and of
``mode="parallel"``, up to rounding) without initial or final state: row-wise
feature maps ``relu``, ``elu`` (ELU + 1) or ``identity``; ``normalize`` in
``"clamp"`` (``num / max(den, eps)``), ``"eps"`` (``num / (den + eps)``) or
``"none"``; ``key_padding_mask [B, N]`` (True = pad) zeroes padded keys, values
and key weights, so padded positions get zero gradients; computation in
float32 (float64 for float64 inputs), output in the dtype of ``q``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from leapformer.ops._checks import check_mask, check_options, check_prop, check_qkv
from leapformer.ops._fused import padded_width
from leapformer.ops.feature_maps import elu_plus_one, identity, relu
from leapformer.ops.reweighted_forms import (
    bidirectional_backward,
    bidirectional_forward,
    causal_backward,
    causal_forward,
    take_rows,
)

DEFAULT_EPS = {"clamp": 0.1, "eps": 1e-6, "none": 0.0}
_MAPS = {"relu": relu, "elu": elu_plus_one, "identity": identity}
# the feature maps whose derivative the backward knows; others need the autograd path
SUPPORTED_FEATURE_MAPS = frozenset(_MAPS.values())


def _resolve_feature_map(feature_map) -> object:
    if isinstance(feature_map, str):
        if feature_map not in _MAPS:
            raise ValueError(f"feature_map must be one of {sorted(_MAPS)}, got {feature_map!r}")
        return _MAPS[feature_map]
    if feature_map not in SUPPORTED_FEATURE_MAPS:
        raise TypeError("feature_map must be 'relu', 'elu', 'identity' or one of those "
                        f"functions (other maps need the autograd path), got {feature_map!r}")
    return feature_map


def _output_grad(go: Tensor, num: Tensor | None, den: Tensor | None, normalize: str,
                 eps: float, width: int) -> Tensor:
    """Gradient of ``[num, den, 0..]`` (width ``P``) from that of ``o = num / div(den)``;
    ``go`` itself for ``normalize="none"``."""
    if normalize == "none":
        return go
    Dv = go.shape[-1]
    div = den.clamp_min(eps) if normalize == "clamp" else den + eps
    g = torch.empty(*go.shape[:-1], width, dtype=num.dtype, device=num.device)
    torch.div(go, div.unsqueeze(-1), out=g[..., :Dv])
    gden = torch.linalg.vecdot(g[..., :Dv], num).div_(div).neg_()
    if normalize == "clamp":  # as autograd's clamp_min: no gradient below eps
        gden.masked_fill_(den < eps, 0.0)
    g[..., Dv] = gden
    g[..., Dv + 1:] = 0.0
    return g


class ReweightedAttention(torch.autograd.Function):
    """``(q, k, v, q_prop, k_prop, key_padding_mask, phi, causal, normalize, eps,
    chunk_size) -> o``; inputs already checked (see :func:`reweighted_attention_fn`).

    Saved for the backward: the inputs, the numerator and denominator ``[B,H,M,P]``
    (one tensor) and the key states (bidirectional ``[B,H,2F,P]``, causal one per
    chunk ``[B,H,T/C,2F,P]``)."""

    @staticmethod
    def forward(ctx, q, k, v, q_prop, k_prop, pad, phi, causal, normalize, eps, chunk_size):
        cdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        with_den = normalize != "none"
        args = (phi, q, k, v, q_prop, k_prop, pad, cdtype, with_den)
        if causal:
            out, states = causal_forward(*args, chunk_size)
        else:
            out, state = bidirectional_forward(*args)
            states = [state]
        Dv = v.shape[-1]
        num = out[..., :Dv]
        if with_den:
            den = out[..., Dv]
            div = den.clamp_min(eps) if normalize == "clamp" else den + eps
            result = (num / div.unsqueeze(-1)).to(q.dtype)
        else:
            num = den = None
            result = out.to(q.dtype)
        del out
        ctx.phi, ctx.causal, ctx.normalize, ctx.eps = phi, causal, normalize, eps
        ctx.chunk_size, ctx.cdtype = chunk_size, cdtype
        ctx.save_for_backward(q, k, v, q_prop, k_prop, pad, num, den, *states)
        return result

    @staticmethod
    def backward(ctx, go):
        q, k, v, q_prop, k_prop, pad, num, den, *states = ctx.saved_tensors
        with_den = ctx.normalize != "none"
        width = padded_width(v.shape[-1]) if with_den else v.shape[-1]

        def grad_rows(i: int, j: int) -> Tensor:  # gradient of [num, den, 0..], rows i:j
            return _output_grad(go[:, :, i:j].to(ctx.cdtype), take_rows(num, i, j),
                                take_rows(den, i, j), ctx.normalize, ctx.eps, width)

        args = (ctx.phi, q, k, v, q_prop, k_prop, pad, ctx.cdtype, with_den)
        needs = ctx.needs_input_grad[:5]
        if ctx.causal:
            gq, gk, gv, gqp, gkp = causal_backward(*args, states, grad_rows, ctx.chunk_size,
                                                   needs)
        else:
            gq, gk, gv, gqp, gkp = bidirectional_backward(*args, states[0], grad_rows, needs)
        if gqp is not None:
            gqp = gqp.sum_to_size(q_prop.shape).to(q_prop.dtype)
        if gkp is not None:
            gkp = gkp.sum_to_size(k_prop.shape).to(k_prop.dtype)
        return gq, gk, gv, gqp, gkp, None, None, None, None, None, None


def reweighted_attention_fn(
    q: Tensor, k: Tensor, v: Tensor, q_prop: Tensor, k_prop: Tensor, *,
    feature_map="relu",
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    normalize: str = "clamp",
    eps: float | None = None,
    chunk_size: int = 64,
) -> Tensor:
    """Re-weighted linear attention ``o [B,H,M,Dv]`` with the hand-written backward.

    Same arguments and output as ``leap_attention(q, k, v, q_prop, k_prop,
    mode="chunk", ...)`` (without initial/final state or returned weights, and
    without the proportion range check): ``q [B,H,M,D]``, ``k [B,H,N,D]``,
    ``v [B,H,N,Dv]``, proportions ``[b,h,M]`` and ``[b,h,N]`` (b, h may be 1 to
    share), ``feature_map`` ``"relu"``, ``"elu"`` or ``"identity"`` (or those
    functions). ``chunk_size`` is the causal chunk length ``C``; a last chunk
    shorter than ``C`` is processed on its own, as in the chunk form.
    """
    check_qkv(q, k, v, causal=causal)
    check_mask(key_padding_mask, k)
    check_options("chunk", normalize, chunk_size)
    check_prop("q_prop", q_prop, q, "q")
    check_prop("k_prop", k_prop, k, "k")
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    phi = _resolve_feature_map(feature_map)
    if eps is None:
        eps = DEFAULT_EPS[normalize]
    return ReweightedAttention.apply(q, k, v, q_prop, k_prop, key_padding_mask, phi, causal,
                                     normalize, float(eps), chunk_size)
