"""Public entry points: linear attention with and without re-weighting.

All functions take ``q [B, H, M, D]``, ``k [B, H, N, D]``, ``v [B, H, N, Dv]``
(the layout of ``scaled_dot_product_attention``) and return ``o [B, H, M, Dv]``
in the dtype of ``q``. Computation and state are float32 (float64 for float64
inputs).

Forms (``mode``), one meaning:

- ``"parallel"``: quadratic oracle; can return the normalised weight matrix.
- ``"chunk"``: chunkwise-parallel, linear memory; for training. When nothing
  needs a gradient, bidirectional calls with a row-wise feature map (relu,
  elu, identity) run the cache-blocked inference path of ``linear_blocked.py``;
  when something does, re-weighted calls (LeaP, cosFormer) with those feature
  maps and no state in or out run ``reweighted_grad.py``'s autograd Function,
  whose backward recomputes sin/cos and the features instead of saving them.
- ``"recurrent"``: token-by-token with explicit state; for decoding.
- ``"auto"``: the fastest exact form: ``chunk``, or ``recurrent`` for a single
  causal step, or ``parallel`` when weights are requested.

Normalisation (``normalize``): ``"clamp"`` divides by ``max(den, eps)`` with
``eps = 0.1`` as in the official LeaPformer code; ``"eps"`` divides by
``den + eps`` (``eps = 1e-6`` by default); ``"none"`` returns the numerator
only, for a normalisation layer afterwards.

Padding: ``key_padding_mask [B, N]`` (bool, True = pad) zeroes padded keys and
values after the feature map, so they drop out of numerator and denominator;
whatever a padded position holds (NaN included) does not leak.

Backend (``backend``): ``"torch"`` runs the forms above; ``"triton"`` the fused
kernels of :mod:`leapformer.ops.triton` (modes chunk/recurrent, feature maps relu,
elu, identity; CUDA, or CPU under ``TRITON_INTERPRET=1``); ``"fla"`` causal attention
through flash-linear-attention on the expanded features (CUDA); ``"auto"`` (default)
picks ``"triton"`` on CUDA when Triton is installed and the call is covered, else
``"torch"``. Results agree to rounding (docs/gpu.md).

Proportions: :func:`leap_attention` checks that they lie in ``[0, 1]`` (one
min/max reduction and one device sync per call) unless ``check_proportions=False``.

NaN and inf in ``q``, ``k``, ``v``: not checked (a check would cost a device
sync); they propagate.
A NaN in query ``i`` makes row ``i`` (only) NaN. A NaN or inf in an unpadded
key or value reaches every query that attends to it, and may reach other
queries of the same call too (a masked-out weight times inf is NaN). Padded
positions are exempt: they are never read.
"""

from __future__ import annotations

import torch
from torch import Tensor

from leapformer.ops._checks import (
    check_cu_seqlens,
    check_mask,
    check_options,
    check_proportions_args,
    check_qkv,
)
from leapformer.ops._fused import augment_values, expand_features, split_output
from leapformer.ops.feature_maps import ROW_WISE, FeatureMap, get_feature_map
from leapformer.ops.linear_blocked import blocked_bidirectional
from leapformer.ops.linear_chunk import chunk_forward
from leapformer.ops.linear_parallel import parallel_forward
from leapformer.ops.linear_recurrent import recurrent_forward
from leapformer.ops.proportions import cosformer_proportions, group_weights
from leapformer.ops.reweighted_grad import SUPPORTED_FEATURE_MAPS, ReweightedAttention
from leapformer.ops.state import LinearAttentionState, check_state
from leapformer.ops.triton.dispatch import resolve_backend, run_backend

DEFAULT_EPS = {"clamp": 0.1, "eps": 1e-6, "none": 0.0}


def _divisor(den: Tensor, normalize: str, eps: float) -> Tensor | None:
    """The stabilised denominator ``[B, H, M, 1]``, or None for ``normalize="none"``."""
    if normalize == "clamp":
        return den.clamp_min(eps).unsqueeze(-1)
    if normalize == "eps":
        return (den + eps).unsqueeze(-1)
    return None


def _resolve_mode(mode: str, causal: bool, M: int, return_weights: bool) -> str:
    if return_weights:
        if mode not in ("auto", "parallel"):
            raise ValueError(f"return_weights=True needs mode='parallel' (or 'auto'), got {mode!r}")
        return "parallel"
    if mode != "auto":
        return mode
    return "recurrent" if causal and M == 1 else "chunk"


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _reweighted_attention(q, k, v, q_prop, k_prop, *, feature_map, causal, key_padding_mask,
                          mode, normalize, eps, chunk_size, initial_state, output_final_state,
                          return_weights, check_proportions=True, backend="auto",
                          cu_seqlens=None):
    check_qkv(q, k, v, causal=causal)
    check_mask(key_padding_mask, k)
    check_options(mode, normalize, chunk_size, backend)
    sequences = q.shape[0]
    if cu_seqlens is not None:
        sequences = check_cu_seqlens(cu_seqlens, q, k)
        if return_weights:
            raise ValueError("return_weights=True does not combine with cu_seqlens")
    check_proportions_args(q_prop, k_prop, q, k, key_padding_mask, check_proportions)
    if eps is None:
        eps = DEFAULT_EPS[normalize]
    phi = get_feature_map(feature_map)
    cdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    form = _resolve_mode(mode, causal, q.shape[2], return_weights)
    B, H = q.shape[:2]
    Dv = v.shape[-1]
    G = 1 if q_prop is None else 2

    def state_tensor(feature_dim: int) -> Tensor | None:
        if initial_state is None:
            return None
        return check_state(initial_state, batch=sequences, heads=H, groups=G,
                           feature_dim=feature_dim, value_dim=Dv, dtype=cdtype, device=q.device)

    chosen = resolve_backend(backend, q=q, phi=phi, form=form)
    if chosen == "torch" and cu_seqlens is not None:
        return _packed_torch(q, k, v, q_prop, k_prop, cu_seqlens, s0=state_tensor(q.shape[-1]),
                             output_final_state=output_final_state, feature_map=phi,
                             causal=causal, key_padding_mask=key_padding_mask, mode=mode,
                             normalize=normalize, eps=eps, chunk_size=chunk_size)
    if chosen != "torch":
        num, den, final = run_backend(
            chosen, q, k, v, q_prop, k_prop, phi=phi, causal=causal,
            key_padding_mask=key_padding_mask, chunk_size=chunk_size,
            s0=state_tensor(q.shape[-1]), cdtype=cdtype, cu_seqlens=cu_seqlens)
        div = _divisor(den, normalize, eps)
        o = (num if div is None else num / div).to(q.dtype)
        return (o, LinearAttentionState(final, Dv)) if output_final_state else o

    if (form == "chunk" and not causal and phi in ROW_WISE
            and not _needs_grad(q, k, v, q_prop, k_prop,
                                None if initial_state is None else initial_state.s)):
        o, final = blocked_bidirectional(
            q, k, v, q_prop, k_prop, feature_map=phi,
            key_padding_mask=key_padding_mask, s0=state_tensor(q.shape[-1]), normalize=normalize,
            eps=eps, cdtype=cdtype)
        result = [o]
        if output_final_state:
            result.append(LinearAttentionState(final, Dv))
        return result[0] if len(result) == 1 else tuple(result)

    if (form == "chunk" and q_prop is not None and phi in SUPPORTED_FEATURE_MAPS
            and initial_state is None and not output_final_state
            and _needs_grad(q, k, v, q_prop, k_prop) and not torch.compiler.is_compiling()):
        # eager training: the hand-written backward (recomputes sin/cos and the features);
        # under torch.compile the traced autograd path is fused by the compiler instead
        return ReweightedAttention.apply(q, k, v, q_prop, k_prop, key_padding_mask, phi,
                                         causal, normalize, float(eps), chunk_size)

    fq = phi(q.to(cdtype), True)
    fk = phi(k.to(cdtype), False)
    vc = v.to(cdtype)
    if fq.shape[-1] != fk.shape[-1]:
        raise ValueError(f"feature map gave q features {list(fq.shape)} but k features {list(fk.shape)}")
    if q_prop is not None:
        q_prop = q_prop.to(cdtype)
        k_prop = k_prop.to(cdtype)
    D = fq.shape[-1]
    s0 = state_tensor(D)
    pad = key_padding_mask
    if pad is not None:
        fk = fk.masked_fill(pad[:, None, :, None], 0.0)
        vc = vc.masked_fill(pad[:, None, :, None], 0.0)
    weights = None
    if form == "parallel":
        num, den, final, weights = parallel_forward(
            fq, fk, vc, q_prop, k_prop, causal=causal, key_padding_mask=pad, s0=s0,
            want_state=output_final_state)
    else:
        wq, wk = group_weights(q_prop, k_prop, pad)
        fq = expand_features(fq, wq)
        fk = expand_features(fk, wk)
        s0f = None if s0 is None else s0.reshape(B, H, G * D, -1)
        forward = chunk_forward if form == "chunk" else recurrent_forward
        kwargs = ({"chunk_size": chunk_size, "want_state": output_final_state}
                  if form == "chunk" else {})
        out, final = forward(fq, fk, augment_values(vc), causal=causal, s0=s0f, **kwargs)
        if final is not None:
            final = final.view(B, H, G, D, -1)
        num, den = split_output(out, Dv)
    div = _divisor(den, normalize, eps)
    result = [(num if div is None else num / div).to(q.dtype)]
    if return_weights:
        result.append(weights if div is None else weights / div)
    if output_final_state:
        result.append(LinearAttentionState(final, Dv))
    return result[0] if len(result) == 1 else tuple(result)


def _packed_torch(q, k, v, q_prop, k_prop, cu_seqlens, *, s0, output_final_state, **kw):
    """The torch forms on packed sequences: one call per sequence (the reference the
    varlen kernels are tested against)."""
    bounds = cu_seqlens.tolist()
    outs, finals = [], []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        if hi == lo:  # an empty sequence keeps its initial state
            finals.append(None if s0 is None else s0[i])
            continue
        rows = slice(lo, hi)
        state = None if s0 is None else LinearAttentionState(s0[i:i + 1], v.shape[-1])
        pad = kw["key_padding_mask"]
        o, final = _reweighted_attention(
            q[:, :, rows], k[:, :, rows], v[:, :, rows],
            None if q_prop is None else q_prop[..., rows],
            None if k_prop is None else k_prop[..., rows],
            **{**kw, "key_padding_mask": None if pad is None else pad[:, rows]},
            initial_state=state, output_final_state=True, return_weights=False,
            check_proportions=False, backend="torch")
        outs.append(o)
        finals.append(final.s[0])
    o = torch.cat(outs, dim=2)
    if not output_final_state:
        return o
    ref = next(f for f in finals if f is not None)  # lengths sum to N >= 1
    finals = [torch.zeros_like(ref) if f is None else f for f in finals]
    return o, LinearAttentionState(torch.stack(finals), v.shape[-1])


def linear_attention(
    q: Tensor, k: Tensor, v: Tensor, *,
    feature_map: str | FeatureMap = "relu",
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    mode: str = "auto",
    normalize: str = "clamp",
    eps: float | None = None,
    chunk_size: int = 64,
    initial_state: LinearAttentionState | None = None,
    output_final_state: bool = False,
    return_weights: bool = False,
    backend: str = "auto",
    cu_seqlens: Tensor | None = None,
):
    """Linear attention ``o_i = phi(q_i) S / phi(q_i).z`` without re-weighting.

    Returns ``o [B,H,M,Dv]``; with ``return_weights`` also the normalised
    weights ``[B,H,M,N]`` (parallel form); with ``output_final_state`` also the
    :class:`LinearAttentionState` after this call's keys. Order: ``(o, weights, state)``.

    ``cu_seqlens [S+1]`` (int): a batch of one holding S sequences back to back
    (flash-linear-attention's convention; queries and keys share it); each attends only
    within itself, and ``initial_state`` / the final state hold one state per sequence
    (``[S, H, G, D, P]``).
    """
    return _reweighted_attention(
        q, k, v, None, None, feature_map=feature_map, causal=causal,
        key_padding_mask=key_padding_mask, mode=mode, normalize=normalize, eps=eps,
        chunk_size=chunk_size, initial_state=initial_state,
        output_final_state=output_final_state, return_weights=return_weights,
        backend=backend, cu_seqlens=cu_seqlens)


def leap_attention(
    q: Tensor, k: Tensor, v: Tensor, q_prop: Tensor, k_prop: Tensor, *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    mode: str = "auto",
    normalize: str = "clamp",
    eps: float | None = None,
    chunk_size: int = 64,
    initial_state: LinearAttentionState | None = None,
    output_final_state: bool = False,
    return_weights: bool = False,
    feature_map: str | FeatureMap = "relu",
    check_proportions: bool = True,
    backend: str = "auto",
    cu_seqlens: Tensor | None = None,
):
    """Re-weighted linear attention with proportions (LeaPformer, docs/math.md §1.3).

    ``w_ij = relu(q_i).relu(k_j) * cos(pi/2 (q_prop_i - k_prop_j))``, normalised
    over ``j``. ``q_prop [B,H,M]`` and ``k_prop [B,H,N]`` (batch and heads may be
    1 to share) are proportions in ``[0, 1]``. With ``check_proportions`` (default)
    a value outside ``[0, 1]``, NaN or inf (of an unpadded position) is a
    ``ValueError``: one min/max reduction and one device sync per call, skipped while
    ``torch.compile`` traces. ``check_proportions=False`` skips the check and accepts
    any value (the formula holds for any real proportion): cosFormer positions past
    the normalising length give values above 1 on purpose (decoding past a predicted
    length), and callers whose proportions are in range by construction save the
    sync. ReLU is applied to ``q`` and ``k`` here. ``backend``: see the module docstring.
    Returns as :func:`linear_attention`.
    """
    if q_prop is None or k_prop is None:
        raise ValueError("leap_attention needs both q_prop and k_prop; use linear_attention without re-weighting")
    return _reweighted_attention(
        q, k, v, q_prop, k_prop, feature_map=feature_map, causal=causal,
        key_padding_mask=key_padding_mask, mode=mode, normalize=normalize, eps=eps,
        chunk_size=chunk_size, initial_state=initial_state,
        output_final_state=output_final_state, return_weights=return_weights,
        check_proportions=check_proportions, backend=backend, cu_seqlens=cu_seqlens)


def _check_max_length(max_length: int | Tensor, needed: int) -> None:
    """cosFormer's ``L`` covers every position (else weights turn negative)."""
    if isinstance(max_length, Tensor):
        if torch.compiler.is_compiling() or max_length.numel() == 0:
            return
        smallest = max_length.min().item()
    elif isinstance(max_length, bool) or not isinstance(max_length, int):
        raise TypeError(f"max_length must be an int or a tensor of lengths, got "
                        f"{type(max_length).__name__}")
    else:
        smallest = max_length
    if not smallest >= needed:  # NaN fails too
        raise ValueError(f"max_length must be >= the last position (offset + sequence length "
                         f"= {needed}), got {smallest}")


def _packed_proportions(cu_seqlens: Tensor, q: Tensor, k: Tensor, max_length, offset: int
                        ) -> Tensor:
    """cosFormer proportions ``[1, 1, T]`` for packed sequences: ``i / L`` per sequence."""
    S = check_cu_seqlens(cu_seqlens, q, k)
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    seq = torch.repeat_interleave(torch.arange(S, device=q.device), lengths)
    pos = torch.arange(q.shape[2], device=q.device) - cu_seqlens[seq] + 1 + offset
    if max_length is None:
        L = (lengths + offset)[seq]
    elif isinstance(max_length, Tensor):
        if tuple(max_length.shape) != (S,):
            raise ValueError(f"max_length must hold one length per sequence ([{S}]) with "
                             f"cu_seqlens, got {list(max_length.shape)}")
        if not bool((max_length.to(q.device) >= lengths + offset).all()):
            raise ValueError("max_length must be >= each sequence's last position "
                             "(offset + its length)")
        L = max_length.to(q.device)[seq]
    else:
        _check_max_length(max_length, int(lengths.max()) + offset)
        L = max_length
    return (pos.to(torch.float32) / L).view(1, 1, -1)


def cosformer_attention(
    q: Tensor, k: Tensor, v: Tensor, *,
    max_length: int | Tensor | None = None,
    offset: int = 0,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    mode: str = "auto",
    normalize: str = "clamp",
    eps: float | None = None,
    chunk_size: int = 64,
    initial_state: LinearAttentionState | None = None,
    output_final_state: bool = False,
    return_weights: bool = False,
    backend: str = "auto",
    cu_seqlens: Tensor | None = None,
):
    """cosFormer self-attention: weight ``cos(pi/2 (i - j) / L)`` (docs/math.md §1.1).

    Positions are 1-based; ``L = max_length``, by default ``max(M, N) + offset``
    as in the official code; a smaller ``L`` (weights below zero) is a ``ValueError``.
    ``offset`` shifts both query and key positions (for a chunk of a longer sequence
    resumed from ``initial_state``). The proportions ``i / L`` are then in ``(0, 1]`` by
    construction, so :func:`leap_attention` is called without its range check.
    With ``cu_seqlens`` (packed sequences) positions restart at 1 in each sequence and
    ``L`` is per sequence (its length + ``offset`` by default; a tensor ``[S]``, or an int).
    ``backend``: as :func:`leap_attention`.
    """
    M, N = q.shape[2], k.shape[2]
    if cu_seqlens is not None:
        prop = _packed_proportions(cu_seqlens, q, k, max_length, offset)
        return leap_attention(
            q, k, v, prop, prop, causal=causal, key_padding_mask=key_padding_mask, mode=mode,
            normalize=normalize, eps=eps, chunk_size=chunk_size, initial_state=initial_state,
            output_final_state=output_final_state, return_weights=return_weights,
            check_proportions=False, backend=backend, cu_seqlens=cu_seqlens)
    if max_length is None:
        max_length = max(M, N) + offset
    else:
        _check_max_length(max_length, max(M, N) + offset)
    q_prop = cosformer_proportions(M, max_length, offset=offset, device=q.device)
    k_prop = cosformer_proportions(N, max_length, offset=offset, device=q.device)
    return leap_attention(
        q, k, v, q_prop, k_prop, causal=causal, key_padding_mask=key_padding_mask, mode=mode,
        normalize=normalize, eps=eps, chunk_size=chunk_size, initial_state=initial_state,
        output_final_state=output_final_state, return_weights=return_weights,
        check_proportions=False, backend=backend)
