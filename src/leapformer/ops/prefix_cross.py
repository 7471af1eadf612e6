"""Prefix-constrained cross-attention: wait-k training (docs/math.md §4).

In wait-k training target position ``t`` (1-based) may attend only to the
first ``g(t) = min(k + t - 1, |x|)`` source positions. Here that constraint
is an argument ``prefix [B, M]`` (integer): query ``i`` of item ``b`` sees the
keys ``0 .. prefix[b, i] - 1`` (:func:`waitk_prefix` builds it).

Linear attention (docs/math.md §4): the constraint is a prefix sum over the source,
read at ``prefix - 1`` by each query,
``o_i = phi(q_i) S_{p_i} / phi(q_i).z_{p_i}`` with
``S_n = sum_{j<n} phi(k_j)^T v_j`` and ``z_n = sum_{j<n} phi(k_j)``. The
fast form never materialises an ``M x N`` tensor: queries and keys are merged
into one sequence of ``N + M`` slots ordered by position (query ``i`` right
after key ``prefix_i - 1``; queries hold no key and keys no query), and causal
chunkwise linear attention (``linear_chunk.py``) runs over it, so the running
sums are read exactly where each query sits. Memory is that of causal
attention over ``N + M`` tokens: O((N + M)(C + F)) plus one ``F x P`` state
per chunk of ``C`` slots; forward and backward. Re-weighting
(cosFormer, LeaP) is the usual sin/cos split of the features (``_fused.py``),
so the proportions must not depend on the query's prefix: for cosFormer the
key proportion is ``j / N`` with ``N`` the whole (unpadded) source length, as
in the decoding cache that is extended chunk by chunk (MLA Algorithm 1).

Softmax: :func:`prefix_softmax_attention`, SDPA with an ``[B, 1, M, N]``
boolean mask (quadratic anyway).

:func:`prefix_cross_attention_parallel` is the quadratic oracle (the weight
matrix with the prefix mask applied) the fast form is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from leapformer.ops._checks import check_mask, check_prop, check_qkv, shape
from leapformer.ops._fused import augment_values, expand_features, split_output
from leapformer.ops.attention import DEFAULT_EPS, _divisor
from leapformer.ops.feature_maps import FeatureMap, get_feature_map
from leapformer.ops.linear_chunk import chunk_forward
from leapformer.ops.linear_parallel import parallel_weights
from leapformer.ops.proportions import reweighting

PREFIX_MODES = ("auto", "chunk", "parallel")
_NORMALIZE = ("clamp", "eps", "none")


def waitk_prefix(wait_k: int, num_queries: int, source_length: int | Tensor, *,
                 ratio: int = 1, device=None) -> Tensor:
    """Wait-k prefixes ``[B, M]`` (long): ``min((k + t - 1) * ratio, |x|)`` for ``t = 1..M``.

    ``source_length`` is ``|x|`` in source positions: an int (``B = 1``) or a
    tensor ``[B]`` of per-item unpadded lengths. ``ratio`` is the fixed
    pre-decision ratio (docs/math.md §4): that many positions (e.g. encoder frames)
    form one source unit, so ``k`` and ``t`` count units and the prefix counts
    positions.
    """
    if isinstance(wait_k, bool) or not isinstance(wait_k, int) or wait_k < 1:
        raise ValueError(f"wait_k must be a positive int, got {wait_k!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
        raise ValueError(f"ratio must be a positive int, got {ratio!r}")
    if num_queries < 1:
        raise ValueError(f"num_queries must be positive, got {num_queries}")
    if isinstance(source_length, Tensor):
        if source_length.dim() != 1 or source_length.is_floating_point():
            raise ValueError(f"source_length must be an int or an integer tensor [batch], got "
                             f"{source_length.dtype} {shape(source_length)}")
        device = source_length.device if device is None else device
        src = source_length.to(device=device, dtype=torch.long)
    else:
        src = torch.tensor([int(source_length)], device=device, dtype=torch.long)
    if bool((src < 1).any()):
        raise ValueError(f"source lengths must be positive, got {src.tolist()}")
    t = torch.arange(1, num_queries + 1, device=src.device, dtype=torch.long)
    return torch.minimum((wait_k + t - 1)[None, :] * ratio, src[:, None])


def check_prefix(prefix: Tensor, q: Tensor, k: Tensor) -> Tensor:
    """Validate ``prefix [B, M]`` (or ``[1, M]``, shared) and return it as long ``[B, M]``."""
    if not isinstance(prefix, Tensor):
        raise TypeError(f"prefix must be an integer tensor [batch, queries], got "
                        f"{type(prefix).__name__}")
    if prefix.is_floating_point() or prefix.is_complex() or prefix.dtype == torch.bool:
        raise TypeError(f"prefix must be an integer tensor (number of source positions each "
                        f"query sees), got dtype {prefix.dtype}")
    if prefix.device != q.device:
        raise TypeError(f"prefix is on {prefix.device} but q is on {q.device}")
    B, M, N = q.shape[0], q.shape[2], k.shape[2]
    if prefix.dim() != 2 or prefix.shape[0] not in (1, B) or prefix.shape[1] != M:
        raise ValueError(f"prefix must have shape [batch, queries] = [{B}, {M}] (batch may be 1 "
                         f"to share) for q {shape(q)}, got {shape(prefix)}")
    if not torch.compiler.is_compiling():
        lo, hi = int(prefix.min()), int(prefix.max())
        if lo < 0 or hi > N:
            raise ValueError(f"prefix values must lie in [0, {N}] (the source length of k "
                             f"{shape(k)}), got values in [{lo}, {hi}]")
    return prefix.to(torch.long).expand(B, M)


def _check_common(q, k, v, prefix, q_prop, k_prop, key_padding_mask, normalize):
    check_qkv(q, k, v, causal=False)
    check_mask(key_padding_mask, k)
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
    if (q_prop is None) != (k_prop is None):
        raise ValueError("pass both q_prop and k_prop (re-weighting) or neither")
    if q_prop is not None:
        check_prop("q_prop", q_prop, q, "q")
        check_prop("k_prop", k_prop, k, "k")
    return check_prefix(prefix, q, k)


def _features(q, k, v, q_prop, k_prop, feature_map, key_padding_mask):
    """``phi(q)``, ``phi(k)`` and ``v`` in the compute dtype, padded keys zeroed."""
    phi = get_feature_map(feature_map)
    cdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    fq = phi(q.to(cdtype), True)
    fk = phi(k.to(cdtype), False)
    vc = v.to(cdtype)
    if fq.shape[-1] != fk.shape[-1]:
        raise ValueError(f"feature map gave q features {list(fq.shape)} but k features "
                         f"{list(fk.shape)}")
    if key_padding_mask is not None:
        drop = key_padding_mask[:, None, :, None]
        fk = fk.masked_fill(drop, 0.0)
        vc = vc.masked_fill(drop, 0.0)
    if q_prop is not None:
        q_prop, k_prop = q_prop.to(cdtype), k_prop.to(cdtype)
    return fq, fk, vc, q_prop, k_prop


def _prefix_keep(prefix: Tensor, N: int) -> Tensor:
    """``[B, 1, M, N]`` bool: key ``j`` is visible to query ``i`` iff ``j < prefix[b, i]``."""
    j = torch.arange(N, device=prefix.device)
    return (j[None, None, :] < prefix[:, :, None]).unsqueeze(1)


def prefix_cross_attention_parallel(
    q: Tensor, k: Tensor, v: Tensor, prefix: Tensor,
    q_prop: Tensor | None = None, k_prop: Tensor | None = None, *,
    feature_map: str | FeatureMap = "relu",
    key_padding_mask: Tensor | None = None,
    normalize: str = "clamp",
    eps: float | None = None,
    return_weights: bool = False,
):
    """The quadratic oracle of :func:`prefix_cross_attention`: every weight
    ``w_ij = phi(q_i).phi(k_j) [cos(pi/2 (q_prop_i - k_prop_j))]`` materialised,
    zero where ``j >= prefix_i`` or key ``j`` is padded, then normalised over ``j``.
    O(M N) memory: tests, small inputs, heatmaps. Returns ``o [B,H,M,Dv]``, and
    with ``return_weights`` also the normalised weights ``[B,H,M,N]``."""
    prefix = _check_common(q, k, v, prefix, q_prop, k_prop, key_padding_mask, normalize)
    eps = DEFAULT_EPS[normalize] if eps is None else eps
    fq, fk, vc, q_prop, k_prop = _features(q, k, v, q_prop, k_prop, feature_map, key_padding_mask)
    w = parallel_weights(fq, fk, q_prop, k_prop, causal=False, key_padding_mask=key_padding_mask)
    w = w.masked_fill(~_prefix_keep(prefix, k.shape[2]), 0.0)
    num, den = w @ vc, w.sum(-1)
    div = _divisor(den, normalize, eps)
    o = (num if div is None else num / div).to(q.dtype)
    if return_weights:
        return o, (w if div is None else w / div)
    return o


def _merge_positions(prefix: Tensor, N: int) -> tuple[Tensor, Tensor]:
    """Slots of queries ``[B, M]`` and keys ``[B, N]`` in the merged sequence of ``N + M``.

    Query ``i`` goes after key ``prefix_i - 1`` and before key ``prefix_i``;
    queries with equal prefixes keep their order. With the queries sorted by
    prefix (rank ``r``), query slot = ``prefix + r`` and key ``j``'s slot =
    ``j + #{queries with prefix <= j}``.
    """
    B, M = prefix.shape
    sp, order = torch.sort(prefix, dim=1, stable=True)
    rank = torch.arange(M, device=prefix.device).expand(B, M)
    qpos = torch.empty_like(prefix).scatter_(1, order, sp + rank)
    j = torch.arange(N, device=prefix.device).expand(B, N).contiguous()
    kpos = j + torch.searchsorted(sp.contiguous(), j, right=True)
    return qpos, kpos


def _place(x: Tensor, pos: Tensor, length: int) -> Tensor:
    """``x [B,H,L,C]`` written at slots ``pos [B,L]`` of a zero ``[B,H,length,C]``."""
    B, H, L, C = x.shape
    idx = pos[:, None, :, None].expand(B, H, L, C)
    return x.new_zeros(B, H, length, C).scatter(2, idx, x)


def prefix_cross_attention(
    q: Tensor, k: Tensor, v: Tensor, prefix: Tensor,
    q_prop: Tensor | None = None, k_prop: Tensor | None = None, *,
    feature_map: str | FeatureMap = "relu",
    key_padding_mask: Tensor | None = None,
    mode: str = "auto",
    normalize: str = "clamp",
    eps: float | None = None,
    chunk_size: int = 64,
    return_weights: bool = False,
):
    """Linear cross-attention where query ``i`` sees only keys ``0 .. prefix_i - 1``.

    ``q [B,H,M,D]``, ``k [B,H,N,D]``, ``v [B,H,N,Dv]``; ``prefix [B,M]`` integer
    in ``[0, N]`` (``[1, M]`` to share it over the batch; :func:`waitk_prefix`
    makes wait-k prefixes). ``q_prop [B,H,M]`` and ``k_prop [B,H,N]`` (batch and
    heads may be 1) add the re-weighting ``cos(pi/2 (q_prop_i - k_prop_j))``
    (LeaP; cosFormer with ``i/M`` and ``j/N``, see
    :func:`~leapformer.ops.cross_proportions`); without them it is plain linear
    attention. ``feature_map``, ``key_padding_mask``, ``normalize`` and ``eps``
    mean what they mean in :func:`~leapformer.ops.linear_attention`. A query
    that sees no unpadded key (``prefix`` 0, or only padding) gets a zero
    output, with finite gradients, for every ``normalize``.

    ``mode``: ``"chunk"`` (prefix sums, no ``M x N`` tensor, see the module
    docstring; ``chunk_size`` slots per chunk), ``"parallel"`` (the quadratic
    oracle), ``"auto"`` (``chunk``, or ``parallel`` when weights are
    requested). With every prefix equal to ``N`` the result is ordinary
    (bidirectional) cross-attention. Returns ``o [B,H,M,Dv]`` in the dtype of
    ``q``; with ``return_weights`` also the normalised weights ``[B,H,M,N]``.
    """
    if mode not in PREFIX_MODES:
        raise ValueError(f"mode must be one of {PREFIX_MODES}, got {mode!r}")
    if return_weights or mode == "parallel":
        if mode == "chunk":
            raise ValueError("return_weights=True needs mode='parallel' (or 'auto'), got 'chunk'")
        return prefix_cross_attention_parallel(
            q, k, v, prefix, q_prop, k_prop, feature_map=feature_map,
            key_padding_mask=key_padding_mask, normalize=normalize, eps=eps,
            return_weights=return_weights)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    prefix = _check_common(q, k, v, prefix, q_prop, k_prop, key_padding_mask, normalize)
    eps = DEFAULT_EPS[normalize] if eps is None else eps
    fq, fk, vc, q_prop, k_prop = _features(q, k, v, q_prop, k_prop, feature_map, key_padding_mask)
    if q_prop is not None:
        wk = reweighting(k_prop)
        if key_padding_mask is not None:
            wk = wk.masked_fill(key_padding_mask[:, None, :, None], 0.0)
        fq = expand_features(fq, reweighting(q_prop))
        fk = expand_features(fk, wk)
    B, H, M, _ = fq.shape
    N, Dv = k.shape[2], v.shape[-1]
    # expand_features broadcasts; the scatter below needs the full batch and heads
    fq, fk = fq.expand(B, H, M, -1), fk.expand(B, H, N, -1)
    qpos, kpos = _merge_positions(prefix, N)
    T = N + M
    out, _ = chunk_forward(_place(fq, qpos, T), _place(fk, kpos, T),
                           _place(augment_values(vc), kpos, T), causal=True, s0=None,
                           chunk_size=chunk_size, want_state=False)
    out = out.gather(2, qpos[:, None, :, None].expand(B, H, M, out.shape[-1]))
    num, den = split_output(out, Dv)
    div = _divisor(den, normalize, eps)
    return (num if div is None else num / div).to(q.dtype)


def prefix_softmax_attention(q: Tensor, k: Tensor, v: Tensor, prefix: Tensor, *,
                             key_padding_mask: Tensor | None = None, scale: float | None = None,
                             dropout_p: float = 0.0) -> Tensor:
    """Softmax cross-attention where query ``i`` sees only keys ``0 .. prefix_i - 1``:
    SDPA with a boolean ``[B, 1, M, N]`` mask (softmax is quadratic anyway).
    Arguments as :func:`~leapformer.ops.softmax_attention` plus ``prefix`` as in
    :func:`prefix_cross_attention`. A query with no visible key gets a zero output."""
    check_qkv(q, k, v, causal=False)
    check_mask(key_padding_mask, k)
    prefix = check_prefix(prefix, q, k)
    keep = _prefix_keep(prefix, k.shape[2])
    if key_padding_mask is not None:
        keep = keep & ~key_padding_mask[:, None, None, :]
    # rows without a visible key are unmasked for SDPA (a fully masked row is NaN
    # in some backends, and NaN gradients would reach every key), then zeroed
    empty = ~keep.any(-1, keepdim=True)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=keep | empty, scale=scale,
                                       dropout_p=dropout_p)
    return o.masked_fill(empty, 0.0)
