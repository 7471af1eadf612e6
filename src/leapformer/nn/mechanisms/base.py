"""The mechanism interface, and the shared code of the linear family.

A mechanism turns per-head ``q [B,H,M,D]``, ``k [B,H,N,D]``, ``v [B,H,N,Dv]``
into ``o [B,H,M,Dv]``; :class:`~leapformer.nn.MultiheadAttention` does the
projections around it. Besides the full forward (training, bidirectional or
causal, self or cross) each mechanism decodes with an
:class:`~leapformer.nn.AttentionCache`:

- ``self_step``: causal self-attention over ``T >= 1`` new tokens;
- ``cross_extend`` / ``cross_read``: cross-attention sums over the source, made
  once and extended as new source arrives (MLA Algorithm 1), read by queries.

Positions and lengths (``q_len``, ``k_len``: ``[B]`` lengths per item; query
and key positions are 1-based) matter only to length-dependent mechanisms
(cosFormer).

Wait-k training (docs/math.md §4): mechanisms with ``supports_prefix = True`` take
``prefix [B, M]`` in :meth:`Mechanism.forward`, the number of source positions
each query sees (``leapformer.ops.prefix_cross_attention`` for the linear
family, a masked SDPA for softmax). The others are never passed ``prefix``:
:class:`~leapformer.nn.MultiheadAttention` refuses it for them.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.nn.cache import AttentionCache
from leapformer.ops import (
    LinearAttentionState,
    decode_step_,
    elu_plus_one,
    leap_attention,
    linear_attention,
    prefix_cross_attention,
    relu,
    reweighting,
)

HEAD_NORMS = (None, "rms", "layer")
_KINDS = {"int": (numbers.Integral, "an int"), "number": (numbers.Real, "a number"),
          "bool": (bool, "a bool")}


def check_option(name: str, value, kind: str, *, optional: bool = False):
    """A mechanism option's type, checked where the option is taken (its range is the
    mechanism's to check): ``kind`` ``"int"``, ``"number"`` (int or float) or ``"bool"``
    (a bool is neither an int nor a number here); None passes when ``optional``. A
    wrong type (e.g. ``step_down="abc"`` from a command line) is a one-line
    ``TypeError`` naming the option and the value. Returns ``value``."""
    if value is None and optional:
        return value
    types, what = _KINDS[kind]
    if not isinstance(value, types) or (kind != "bool" and isinstance(value, bool)):
        raise TypeError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")
    return value


class Mechanism(nn.Module, ABC):
    """Base class: one attention mechanism for ``num_heads`` heads of ``head_dim``."""

    name: ClassVar[str] = "base"
    # False for the encoder-only LRA baselines (no causal, cross-attention or cache)
    full: ClassVar[bool] = True
    # True if forward takes ``prefix=`` (wait-k cross-attention)
    supports_prefix: ClassVar[bool] = False

    def __init__(self, num_heads: int, head_dim: int, *, dropout: float = 0.0):
        super().__init__()
        check_option("num_heads", num_heads, "int")
        check_option("head_dim", head_dim, "int")
        if not 0.0 <= check_option("dropout", dropout, "number") < 1.0:  # NaN fails too
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout

    @abstractmethod
    def forward(self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False,
                key_padding_mask: Tensor | None = None, need_weights: bool = False,
                q_len: Tensor | None = None, k_len: Tensor | None = None,
                ) -> tuple[Tensor, Tensor | None]:
        """Full attention: ``(o [B,H,M,Dv], weights [B,H,M,N] or None)``.

        Subclasses with ``supports_prefix = True`` also take ``prefix [B, M]``
        (long): query ``i`` sees only keys ``0 .. prefix[b, i] - 1`` (wait-k)."""

    @abstractmethod
    def init_cache(self, cache: AttentionCache, *, device, dtype) -> None:
        """Create the cache's tensors (empty state)."""

    @abstractmethod
    def self_step(self, q: Tensor, k: Tensor, v: Tensor, cache: AttentionCache, *,
                  q_len: Tensor | None = None,
                  key_padding_mask: Tensor | None = None) -> Tensor:
        """Causal self-attention of ``T`` new tokens after ``cache.length`` earlier ones.

        ``key_padding_mask [B, T]`` (True = padding; never all False): padded
        tokens add nothing to the cache, and positions count real tokens only
        (:meth:`AttentionCache.new_positions`). The caller advances the cache."""

    @abstractmethod
    def cross_extend(self, k: Tensor, v: Tensor, cache: AttentionCache, *,
                     key_padding_mask: Tensor | None = None) -> None:
        """Add source positions ``cache.length + 1 ..`` to a cross-attention cache."""

    @abstractmethod
    def cross_read(self, q: Tensor, cache: AttentionCache, *,
                   q_len: Tensor | None = None) -> Tensor:
        """Queries at target positions ``cache.queries + 1 ..`` read the cached source."""

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, head_dim={self.head_dim}"


def positions(start: int, count: int, device, dtype=torch.float32) -> Tensor:
    """1-based positions ``start+1 .. start+count``."""
    return torch.arange(start + 1, start + count + 1, device=device, dtype=dtype)


class HeadNorm(nn.Module):
    """Normalisation of each head's output over its ``Dv`` channels, replacing
    the denominator (the LeaPformer README's suggestion): ``"rms"`` (RMSNorm)
    or ``"layer"`` (LayerNorm; GroupNorm with one group per head)."""

    def __init__(self, kind: str, num_heads: int, value_dim: int, eps: float = 1e-5):
        super().__init__()
        if kind not in ("rms", "layer"):
            raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {kind!r}")
        self.kind = kind
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_heads, 1, value_dim))
        self.bias = nn.Parameter(torch.zeros(num_heads, 1, value_dim)) if kind == "layer" else None

    def forward(self, o: Tensor) -> Tensor:
        x = o if o.dtype in (torch.float32, torch.float64) else o.float()
        if self.kind == "layer":
            x = x - x.mean(-1, keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        x = x.to(o.dtype) * self.weight
        return x if self.bias is None else x + self.bias


class LinearMechanism(Mechanism):
    """Linear attention with an optional re-weighting by proportions.

    Subclasses set ``feature_map`` (a name of :mod:`leapformer.ops` or a
    callable ``phi(x, is_query)``) and, for re-weighting, override
    :meth:`proportions`. The denominator is clamped at ``eps`` (default 0.1, as
    in the official code); ``head_norm="rms"|"layer"`` drops the denominator
    and normalises each head's output instead. Dropout, having no weight matrix
    to act on, applies to the attention output.

    ``check_proportions``: whether the full forward asks
    :func:`~leapformer.ops.leap_attention` to check that the proportions lie in
    ``[0, 1]`` (one min/max reduction and one device sync per call). On for a
    re-weighted subclass unless it sets it off: cosFormer does (its positions pass
    1 by design), and so does LeaP (a sigmoid's outputs are in range by construction).
    """

    reweighted: ClassVar[bool] = False
    supports_prefix: ClassVar[bool] = True
    check_proportions: ClassVar[bool] = True

    def __init__(self, num_heads: int, head_dim: int, *, dropout: float = 0.0,
                 feature_map="relu", eps: float = 0.1, head_norm: str | None = None):
        super().__init__(num_heads, head_dim, dropout=dropout)
        if head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {head_norm!r}")
        check_option("eps", eps, "number")
        self.feature_map = feature_map
        self.eps = eps
        self.normalize = "clamp" if head_norm is None else "none"
        self.head_norm = None if head_norm is None else HeadNorm(head_norm, num_heads, head_dim)

    @property
    def groups(self) -> int:
        return 2 if self.reweighted else 1

    @property
    def feature_dim(self) -> int:
        """Size of ``phi(x)`` (the head size for ReLU and ELU)."""
        return self.head_dim

    # -- hooks -------------------------------------------------------------
    def features(self, x: Tensor, is_query: bool) -> Tensor:
        """``phi(x)`` for the step and cross paths (the ops apply it on the others)."""
        if self.feature_map == "relu":
            return relu(x)
        if self.feature_map == "elu":
            return elu_plus_one(x)
        return self.feature_map(x, is_query)

    def query_proportions(self, q: Tensor, offset: int | Tensor, q_len: Tensor | None) -> Tensor:
        """Re-weighted subclasses: ``q_prop [b,h,M]`` for raw queries ``q [B,H,M,D]``
        at 1-based positions ``offset + 1 ..`` with target lengths ``q_len [B]``.
        ``offset`` may instead be a tensor ``[B, M]`` of the 1-based positions
        themselves (decoding a cache with padded slots)."""
        raise TypeError(f"{type(self).__name__} is not re-weighted")

    def key_proportions(self, k: Tensor, offset: int | Tensor, k_len: Tensor | None) -> Tensor:
        """Re-weighted subclasses: ``k_prop [b,h,N]`` (see :meth:`query_proportions`)."""
        raise TypeError(f"{type(self).__name__} is not re-weighted")

    # -- shared ------------------------------------------------------------
    def _finish(self, o: Tensor) -> Tensor:
        if self.head_norm is None and not self.training:
            return o
        if self.head_norm is not None:
            o = self.head_norm(o)
        if self.training and self.dropout > 0:
            o = F.dropout(o, self.dropout)
        return o

    def _attend(self, q, k, v, q_prop, k_prop, **kw):
        common = dict(normalize=self.normalize, eps=self.eps, feature_map=self.feature_map, **kw)
        if q_prop is None:
            return linear_attention(q, k, v, **common)
        return leap_attention(q, k, v, q_prop, k_prop, check_proportions=self.check_proportions,
                              **common)

    def _props(self, q, k, q_offset, k_offset, q_len, k_len):
        if not self.reweighted:
            return None, None
        return (self.query_proportions(q, q_offset, q_len),
                self.key_proportions(k, k_offset, k_len))

    def forward(self, q, k, v, *, causal=False, key_padding_mask=None, need_weights=False,
                q_len=None, k_len=None, prefix=None):
        q_prop, k_prop = self._props(q, k, 0, 0, q_len, k_len)
        if prefix is not None:
            if causal:
                raise ValueError("prefix already limits the keys each query sees; it cannot "
                                 "be combined with causal=True")
            # key proportions stay those of the whole source (j / N for cosFormer): the
            # prefix sums need per-key weights that do not depend on the query
            res = prefix_cross_attention(q, k, v, prefix, q_prop, k_prop,
                                         feature_map=self.feature_map,
                                         key_padding_mask=key_padding_mask,
                                         normalize=self.normalize, eps=self.eps,
                                         return_weights=need_weights)
        else:
            res = self._attend(q, k, v, q_prop, k_prop, causal=causal,
                               key_padding_mask=key_padding_mask, return_weights=need_weights)
        o, weights = res if need_weights else (res, None)
        return self._finish(o), weights

    def init_cache(self, cache, *, device, dtype):
        sdtype = torch.float64 if dtype == torch.float64 else torch.float32  # as the ops
        state = LinearAttentionState.zeros(cache.batch_size, self.num_heads, self.groups,
                                           self.feature_dim, self.head_dim, device=device,
                                           dtype=sdtype)
        cache.tensors["s"] = state.s

    def step_features(self, q: Tensor, k: Tensor) -> Tensor:
        """Query and key features of one decoding step, stacked: ``[2, B, H, 1, F]``."""
        if self.feature_map == "relu":
            return F.relu(torch.stack((q, k)))
        return torch.stack((self.features(q, True), self.features(k, False)))

    def step_proportions(self, q: Tensor, k: Tensor, f: Tensor, offset: int | Tensor,
                         q_len: Tensor | None) -> Tensor:
        """Proportions of one decoding step, stacked: ``[2, B, H, 1]``
        (``f`` = :meth:`step_features`; subclasses may fuse the work)."""
        shape = (q.shape[0], self.num_heads, 1)
        return torch.stack((self.query_proportions(q, offset, q_len).expand(shape),
                            self.key_proportions(k, offset, q_len).expand(shape)))

    def self_step(self, q, k, v, cache, *, q_len=None, key_padding_mask=None):
        s = cache.tensors["s"]
        # positions: shared ``cache.length + 1 ..`` unless some slot is padding
        pos = cache.new_positions(q.shape[2], key_padding_mask, device=q.device)
        offset = cache.length if pos is None else pos
        if q.shape[2] == 1 and key_padding_mask is None:
            f = _as(self.step_features(q, k), s.dtype)
            props = None
            if self.reweighted:
                props = _as(self.step_proportions(q, k, f, offset, q_len), s.dtype)
            o = _as(decode_step_(f, v, s, props, normalize=self.normalize, eps=self.eps), q.dtype)
        else:  # padded keys are zeroed after the feature map: absent from the sums
            q_prop, k_prop = self._props(q, k, offset, offset, q_len, q_len)
            o, final = self._attend(q, k, v, q_prop, k_prop, causal=True,
                                    key_padding_mask=key_padding_mask,
                                    initial_state=LinearAttentionState(s, v.shape[-1]),
                                    output_final_state=True)
            s.copy_(final.s)
        return self._finish(o)

    def cross_extend(self, k, v, cache, *, key_padding_mask=None):
        s = cache.tensors["s"]
        fk = self.features(k, False).to(s.dtype)
        vc = v.to(s.dtype)
        w = None
        if self.reweighted:
            w = reweighting(self.key_proportions(k, cache.length, cache.source_length).to(s.dtype))
            w = w.expand(*fk.shape[:3], 2)
        if key_padding_mask is not None:
            drop = key_padding_mask[:, None, :, None]
            fk = fk.masked_fill(drop, 0.0)
            vc = vc.masked_fill(drop, 0.0)
        LinearAttentionState(s, vc.shape[-1]).extend_(fk, vc, w)

    def cross_read(self, q, cache, *, q_len=None):
        s = cache.tensors["s"]
        fq = self.features(q, True).to(s.dtype)
        w = None
        if self.reweighted:
            w = reweighting(self.query_proportions(q, cache.queries, q_len).to(s.dtype))
            w = w.expand(*fq.shape[:3], 2)
        o = LinearAttentionState(s, self.head_dim).read(fq, w, normalize=self.normalize,
                                                        eps=self.eps)
        return self._finish(o.to(q.dtype))


def _as(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)`` without a dispatch when it is already ``dtype``."""
    return t if t.dtype == dtype else t.to(dtype)


def per_item(length: Tensor | int | None, batch: int, default: int, device) -> Tensor:
    """Lengths ``[B]`` (float) from a tensor, an int or a default."""
    if length is None:
        length = default
    if isinstance(length, int):
        return torch.full((batch,), float(length), device=device)
    if length.dim() != 1 or length.shape[0] != batch:
        raise ValueError(f"lengths must have shape [batch] = [{batch}], got {list(length.shape)}")
    return length.to(device=device, dtype=torch.float32)

