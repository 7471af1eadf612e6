"""Gated linear attention, with and without LeaP re-weighting (causal only).

GLA (Yang et al. 2023) adds a data-dependent per-channel decay to the causal
state of linear attention: ``S_t = diag(a_t) S_{t-1} + phi(k_t)^T v_t`` with
``a_t = sigmoid(W x_t)^(1/tau)`` (``tau = 16`` in GLA), the decay running over
the key-feature dimension. The denominator state ``z_t`` decays the same way.
With LeaP re-weighting (docs/math.md §1.3) the features are
``[phi(x) sin(pi/2 p), phi(x) cos(pi/2 p)]`` and channel ``d``'s decay applies
to both halves, so the state keeps the layout of
:class:`~leapformer.ops.LinearAttentionState` (``[B, H, G, D, P]``) and a state
from these functions is one of that class.

The functions take the decay in log space, ``log_decay [B, H, N, F]`` (``F`` = the
feature size, the head size for ReLU/ELU; ``log a_t``, non-positive for a decay;
FLA's convention for its ``g``); :func:`gla_log_decay` makes it from gate logits
as GLA does, ``log sigmoid(logits) / tau``. Values are not checked (a check
would cost a device sync): a positive log decay is a growth, which the chunk
form computes exactly but without its overflow guarantee.

Forms (``mode``) as :func:`leapformer.ops.leap_attention`: ``"parallel"`` (the
quadratic oracle, can return the normalised weights), ``"chunk"`` (training;
log-space cumulative sums, as FLA's GLA chunk form), ``"recurrent"`` (token by
token), ``"auto"`` (``recurrent`` for one token, else ``chunk``; ``parallel``
when weights are requested). Backend (``backend``) as there: ``"triton"`` runs the
fused kernels of :mod:`leapformer.ops.triton.gated_functions` (modes chunk and
recurrent, feature maps relu/elu/identity; CUDA, or CPU under
``TRITON_INTERPRET=1``), ``"auto"`` picks them on CUDA when Triton is installed,
``"torch"`` the forms of :mod:`leapformer.ops.gated_forms`; ``"fla"`` is refused.
Normalisation (``"clamp"``, ``"eps"``, ``"none"``),
padding (``key_padding_mask``: a padded key adds nothing *and decays nothing*:
its log decay is taken as 0), states (``initial_state``,
``output_final_state``), dtypes (float32 computation, float64 for float64
inputs) and proportions (checked to lie in ``[0, 1]`` unless
``check_proportions=False``) all follow the ungated functions.

:func:`gated_step_` is the decoding step on a fused state, in place.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.ops._checks import (
    check_mask,
    check_options,
    check_proportions_args,
    check_qkv,
    shape,
)
from leapformer.ops._fused import augment_values, expand_features, split_output
from leapformer.ops.attention import DEFAULT_EPS, _resolve_mode
from leapformer.ops.feature_maps import FeatureMap, get_feature_map
from leapformer.ops.gated_forms import gated_chunk, gated_parallel, gated_recurrent
from leapformer.ops.linear_step import step_
from leapformer.ops.proportions import group_weights
from leapformer.ops.state import LinearAttentionState, check_state
from leapformer.ops.triton.dispatch import feature_map_name, fused_state, resolve_backend

GLA_TAU = 16.0


def gla_log_decay(logits: Tensor, tau: float = GLA_TAU) -> Tensor:
    """GLA's gate in log space: ``log(sigmoid(logits) ** (1 / tau)) = logsigmoid(logits) / tau``
    (Yang et al. 2023, ``tau = 16``); every value is ``<= 0``."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got "
                        f"{getattr(logits, 'dtype', type(logits).__name__)}")
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0 < tau < math.inf:
        raise ValueError(f"tau must be a positive finite number, got {tau!r}")
    return F.logsigmoid(logits) / tau


def _check_log_decay(log_decay: Tensor, k: Tensor, feature_dim: int) -> None:
    if not isinstance(log_decay, Tensor):
        raise TypeError(f"log_decay must be a torch.Tensor, got {type(log_decay).__name__}")
    if not log_decay.is_floating_point():
        raise TypeError(f"log_decay must be a floating-point tensor, got dtype {log_decay.dtype}")
    if log_decay.device != k.device:
        raise TypeError(f"log_decay is on {log_decay.device} but k is on {k.device}")
    want = (*k.shape[:3], feature_dim)
    if tuple(log_decay.shape) != want:
        raise ValueError(f"log_decay must have shape [batch, heads, length, feature_dim] = "
                         f"{list(want)} for k {shape(k)}, got {shape(log_decay)}")


def _torch_forms(fq, fk, vc, lg, q_prop, k_prop, *, key_padding_mask, s0, form, chunk_size,
                 output_final_state):
    """The torch forms on features: ``(num, den, final [B,H,G,D,P] | None, weights | None)``."""
    B, H, N, D = fk.shape
    Dv = vc.shape[-1]
    G = 1 if q_prop is None else 2
    pad = key_padding_mask
    if pad is not None:
        drop = pad[:, None, :, None]
        fk, vc, lg = fk.masked_fill(drop, 0.0), vc.masked_fill(drop, 0.0), lg.masked_fill(drop, 0.0)
    if form == "parallel":
        return gated_parallel(fq, fk, vc, lg, q_prop, k_prop, key_padding_mask=pad, s0=s0,
                              want_state=output_final_state)
    wq, wk = group_weights(q_prop, k_prop, pad)
    s0f = None if s0 is None else s0.reshape(B, H, G * D, -1)
    if form == "chunk":
        out, final = gated_chunk(fq, fk, augment_values(vc), lg, wq=wq, wk=wk, s0=s0f,
                                 chunk_size=chunk_size, want_state=output_final_state)
    else:  # channel d's decay for every group (the layout of expand_features)
        out, final = gated_recurrent(expand_features(fq, wq), expand_features(fk, wk),
                                     augment_values(vc), lg.repeat(1, 1, 1, G), s0=s0f)
    num, den = split_output(out, Dv)
    return num, den, None if final is None else final.view(B, H, G, D, -1), None


def _gated(q, k, v, log_decay, q_prop, k_prop, *, feature_map, key_padding_mask, mode,
           normalize, eps, chunk_size, initial_state, output_final_state, return_weights,
           check_proportions=True, backend="auto"):
    check_qkv(q, k, v, causal=True)
    check_mask(key_padding_mask, k)
    check_options(mode, normalize, chunk_size, backend)
    check_proportions_args(q_prop, k_prop, q, k, key_padding_mask, check_proportions)
    if eps is None:
        eps = DEFAULT_EPS[normalize]
    phi = get_feature_map(feature_map)
    cdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    form = _resolve_mode(mode, True, q.shape[2], return_weights)
    B, H, N = k.shape[:3]
    Dv = v.shape[-1]
    G = 1 if q_prop is None else 2
    if backend == "fla":
        raise ValueError("backend='fla' has no gated form; use backend='triton' or 'torch'")
    chosen = resolve_backend(backend, q=q, phi=phi, form=form)
    if chosen == "triton":  # row-wise feature maps: the kernels apply them in registers
        fq = fk = None
        D = q.shape[-1]
    else:
        fq = phi(q.to(cdtype), True)
        fk = phi(k.to(cdtype), False)
        if fq.shape[-1] != fk.shape[-1]:
            raise ValueError(f"feature map gave q features {list(fq.shape)} but k features "
                             f"{list(fk.shape)}")
        D = fq.shape[-1]
    _check_log_decay(log_decay, k, D)
    if q_prop is not None:
        q_prop = q_prop.to(cdtype)
        k_prop = k_prop.to(cdtype)
    s0 = None
    if initial_state is not None:
        s0 = check_state(initial_state, batch=B, heads=H, groups=G, feature_dim=D,
                         value_dim=Dv, dtype=cdtype, device=q.device)
    weights = None
    if chosen == "triton":
        from leapformer.ops.triton.gated_functions import triton_gated_forward

        num, den, s, z = triton_gated_forward(
            q, k, v, log_decay, q_prop, k_prop, feature_map=feature_map_name(phi),
            key_padding_mask=key_padding_mask, s0=s0)
        faded = None
        if s0 is not None:  # the padding columns decay with the state, as in the torch forms
            lg = log_decay.to(cdtype)
            if key_padding_mask is not None:
                lg = lg.masked_fill(key_padding_mask[:, None, :, None], 0.0)
            faded = s0 * lg.sum(2).exp()[:, :, None, :, None]
        final = fused_state(s, z, faded)
    else:
        num, den, final, weights = _torch_forms(
            fq, fk, v.to(cdtype), log_decay.to(cdtype), q_prop, k_prop,
            key_padding_mask=key_padding_mask, s0=s0, form=form, chunk_size=chunk_size,
            output_final_state=output_final_state)
    if normalize == "clamp":
        div = den.clamp_min(eps).unsqueeze(-1)
    elif normalize == "eps":
        div = (den + eps).unsqueeze(-1)
    else:
        div = None
    result = [(num if div is None else num / div).to(q.dtype)]
    if return_weights:
        result.append(weights if div is None else weights / div)
    if output_final_state:
        result.append(LinearAttentionState(final, Dv))
    return result[0] if len(result) == 1 else tuple(result)


def gated_linear_attention(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, *,
    feature_map: str | FeatureMap = "relu",
    key_padding_mask: Tensor | None = None,
    mode: str = "auto",
    normalize: str = "clamp",
    eps: float | None = None,
    chunk_size: int = 64,
    initial_state: LinearAttentionState | None = None,
    output_final_state: bool = False,
    return_weights: bool = False,
    backend: str = "auto",
):
    """Causal gated linear attention (GLA's decay on the project's normalised linear
    attention): ``o_i = sum_{j<=i} w_ij v_j / sum_{j<=i} w_ij`` with
    ``w_ij = sum_d phi(q_i)_d phi(k_j)_d prod_{j<t<=i} a_t,d`` and
    ``log a = log_decay [B,H,N,F]`` (see :func:`gla_log_decay`). ``q``, ``k``
    ``[B,H,N,D]`` and ``v [B,H,N,Dv]`` share one length. Returns as
    :func:`leapformer.ops.linear_attention`: ``o``, then the weights (with
    ``return_weights``), then the :class:`LinearAttentionState` (with
    ``output_final_state``)."""
    return _gated(q, k, v, log_decay, None, None, feature_map=feature_map,
                  key_padding_mask=key_padding_mask, mode=mode, normalize=normalize, eps=eps,
                  chunk_size=chunk_size, initial_state=initial_state,
                  output_final_state=output_final_state, return_weights=return_weights,
                  backend=backend)


def gated_leap_attention(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, q_prop: Tensor, k_prop: Tensor, *,
    feature_map: str | FeatureMap = "relu",
    key_padding_mask: Tensor | None = None,
    mode: str = "auto",
    normalize: str = "clamp",
    eps: float | None = None,
    chunk_size: int = 64,
    initial_state: LinearAttentionState | None = None,
    output_final_state: bool = False,
    return_weights: bool = False,
    check_proportions: bool = True,
    backend: str = "auto",
):
    """Causal gated LeaP attention: the weights of :func:`gated_linear_attention` times
    the re-weighting ``cos(pi/2 (q_prop_i - k_prop_j))`` (docs/math.md §1.3);
    ``q_prop``, ``k_prop [B,H,N]`` (batch and heads may be 1 to share). Returns as
    :func:`gated_linear_attention`."""
    if q_prop is None or k_prop is None:
        raise ValueError("gated_leap_attention needs both q_prop and k_prop; use "
                         "gated_linear_attention without re-weighting")
    return _gated(q, k, v, log_decay, q_prop, k_prop, feature_map=feature_map,
                  key_padding_mask=key_padding_mask, mode=mode, normalize=normalize, eps=eps,
                  chunk_size=chunk_size, initial_state=initial_state,
                  output_final_state=output_final_state, return_weights=return_weights,
                  check_proportions=check_proportions, backend=backend)


def gated_step_(f: Tensor, v: Tensor, s: Tensor, log_decay: Tensor, props: Tensor | None = None,
                *, normalize: str = "clamp", eps: float = 0.1) -> Tensor:
    """One decoding step in place: decay the state ``s [B,H,G,F,P]`` by
    ``exp(log_decay) [B,H,1,F]``, add the key and read it with the query (as
    :func:`leapformer.ops.decode_step_`, whose arguments ``f [2,B,H,1,F]``, ``v``,
    ``props [2,B,H,1]`` and ``normalize``/``eps`` these are; no validation). Returns
    ``o [B,H,1,Dv]``; equals ``mode="recurrent"`` of the functions above."""
    a = log_decay.exp() if log_decay.dtype == s.dtype else log_decay.to(s.dtype).exp()
    s.mul_(a.unsqueeze(-1))  # [B,H,1,F,1]: every group decays by channel
    return step_(f, v, s, props, normalize=normalize, eps=eps)
