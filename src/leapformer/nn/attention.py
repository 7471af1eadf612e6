"""``MultiheadAttention``: projections around a mechanism chosen by name.

Arguments follow ``torch.nn.MultiheadAttention`` (``embed_dim``, ``num_heads``,
``dropout``, ``bias``, ``kdim``, ``vdim``, ``batch_first``; ``key_padding_mask``
bool ``[B, N]`` with True = padding; returns ``(output, weights)``), with these
differences: ``batch_first`` defaults to True; ``key`` and ``value`` may be
omitted for self-attention; ``causal=True`` replaces an ``attn_mask``; and
``cache=`` decodes incrementally (see :mod:`leapformer.nn.cache`).

``prefix=`` (``[B, M]`` integer) limits query ``i`` to the first
``prefix[b, i]`` keys: wait-k cross-attention in training (docs/math.md §4), for the
mechanisms with ``supports_prefix`` (softmax and the linear family); the
others raise ``ValueError``.

``need_weights=True`` returns the (re-weighted, normalised) attention matrix,
averaged over heads unless ``average_attn_weights=False``. It runs the
quadratic parallel form; it is off by default and never computed otherwise.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.nn.cache import AttentionCache
from leapformer.nn.mechanisms import build_mechanism
from leapformer.nn.mechanisms.base import per_item

_layer_ids = itertools.count(1)


def _lengths_from_mask(mask: Tensor | None, length: int) -> Tensor | int:
    return length if mask is None else (~mask).sum(-1)


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``mechanism`` in ``softmax``, ``linear``,
    ``elu``, ``cosformer``, ``leap``, ``performer`` (or any registered name);
    ``mechanism_options`` go to the mechanism (e.g. ``{"hidden": 16}`` for
    LeaP, ``{"head_norm": "rms"}`` for the linear family)."""

    def __init__(self, embed_dim: int, num_heads: int, mechanism: str = "softmax", *,
                 dropout: float = 0.0, bias: bool = True, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = True,
                 mechanism_options: dict | None = None, device=None, dtype=None):
        super().__init__()
        if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be a positive multiple of "
                             f"num_heads ({num_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        kw = {"bias": bias, "device": device, "dtype": dtype}
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.batch_first = batch_first
        # One packed [3E, E] projection (PyTorch's in_proj layout) when key and
        # value have the query's width: self-attention then projects with one GEMM.
        self.packed = self.kdim == embed_dim and self.vdim == embed_dim
        if self.packed:
            self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, **kw)
        else:
            self.q_proj = nn.Linear(embed_dim, embed_dim, **kw)
            self.k_proj = nn.Linear(self.kdim, embed_dim, **kw)
            self.v_proj = nn.Linear(self.vdim, embed_dim, **kw)
        self.out_proj = nn.Linear(embed_dim, embed_dim, **kw)
        self.attention = build_mechanism(mechanism, num_heads=num_heads, head_dim=self.head_dim,
                                         dropout=dropout, **(mechanism_options or {}))
        if device is not None or dtype is not None:
            self.attention.to(device=device, dtype=dtype)
        self.layer_id = next(_layer_ids)

    @property
    def mechanism(self) -> str:
        return self.attention.name

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, layer_id={self.layer_id}"

    # -- projections -----------------------------------------------------------
    def projection_weights(self) -> list[tuple[Tensor, Tensor | None]]:
        """``[(W_q, b_q), (W_k, b_k), (W_v, b_v)]`` (views of the parameters)."""
        if not self.packed:
            return [(m.weight, m.bias) for m in (self.q_proj, self.k_proj, self.v_proj)]
        E, b = self.embed_dim, self.in_proj.bias
        return [(self.in_proj.weight[i * E:(i + 1) * E], None if b is None else b[i * E:(i + 1) * E])
                for i in range(3)]

    def _project_q(self, x: Tensor) -> Tensor:
        if not self.packed:
            return self._split(self.q_proj(x))
        return self._split(F.linear(x, *self.projection_weights()[0]))

    def _project_kv(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        if not self.packed:
            return self._split(self.k_proj(key)), self._split(self.v_proj(value))
        if key is value:
            E, b = self.embed_dim, self.in_proj.bias
            kv = F.linear(key, self.in_proj.weight[E:], None if b is None else b[E:])
            k, v = kv.chunk(2, dim=-1)
            return self._split(k), self._split(v)
        (wk, bk), (wv, bv) = self.projection_weights()[1:]
        return self._split(F.linear(key, wk, bk)), self._split(F.linear(value, wv, bv))

    def _project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if not self.packed:
            return self._project_q(x), *self._project_kv(x, x)
        q, k, v = self.in_proj(x).chunk(3, dim=-1)
        return self._split(q), self._split(k), self._split(v)

    # -- helpers ---------------------------------------------------------------
    def _split(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge(self, o: Tensor) -> Tensor:
        B, H, T, D = o.shape
        return self.out_proj(o.transpose(1, 2).reshape(B, T, H * D))

    def _check(self, name: str, x: Tensor, width: int) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != width:
            layout = "[batch, length, embed]" if self.batch_first else "[length, batch, embed]"
            raise ValueError(f"{name} must be {layout} with embed = {width}, got {list(x.shape)}")

    def _check_prefix(self, prefix: Tensor, B: int, M: int, causal: bool) -> None:
        if not self.attention.supports_prefix:
            raise ValueError(f"the {self.mechanism} mechanism does not support prefix "
                             f"(wait-k) cross-attention")
        if causal:
            raise ValueError("prefix already limits the keys each query sees; it cannot be "
                             "combined with causal=True")
        if not isinstance(prefix, Tensor) or prefix.is_floating_point() or \
                prefix.dtype == torch.bool:
            raise TypeError("prefix must be an integer tensor [batch, queries] (source "
                            f"positions each query sees), got "
                            f"{getattr(prefix, 'dtype', type(prefix).__name__)}")
        if prefix.shape != (B, M):
            raise ValueError(f"prefix must have shape [batch, queries] = [{B}, {M}], got "
                             f"{list(prefix.shape)}")

    def _check_mask(self, mask: Tensor | None, B: int, N: int) -> None:
        if mask is None:
            return
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError("key_padding_mask must be a bool tensor (True = padding), got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        if mask.shape != (B, N):
            raise ValueError(f"key_padding_mask must have shape [batch, source_length] = "
                             f"[{B}, {N}], got {list(mask.shape)}")

    # -- caches ----------------------------------------------------------------
    def new_cache(self, batch_size: int, *, cross: bool = False, max_length: int | None = None,
                  device=None, dtype=None) -> AttentionCache:
        """An empty decoding cache for this layer's self- (or ``cross=True``) attention."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        w = self.out_proj.weight
        cache = AttentionCache(owner=self.layer_id, kind="cross" if cross else "self",
                               batch_size=batch_size, max_length=max_length)
        self.attention.init_cache(cache, device=device or w.device, dtype=dtype or w.dtype)
        return cache

    def extend_memory(self, cache: AttentionCache, memory: Tensor, *,
                      key_padding_mask: Tensor | None = None,
                      key_length: Tensor | int | None = None) -> None:
        """Add source positions (``memory [B, S, kdim]``) to a cross-attention cache.

        ``key_length`` is the total source length per item, needed by cosFormer;
        if never given, the unpadded length of the first memory given is used.
        """
        if not self.batch_first:
            memory = memory.transpose(0, 1)
        self._extend(cache, memory, key_padding_mask, key_length)

    def _extend(self, cache, memory, key_padding_mask, key_length) -> None:
        if not isinstance(cache, AttentionCache):
            raise TypeError(f"cache must be an AttentionCache, got {type(cache).__name__}")
        self._check("memory", memory, self.kdim)
        B, S, _ = memory.shape
        self._check_mask(key_padding_mask, B, S)
        cache.check(self.layer_id, "cross", B, S)
        if key_length is not None or cache.source_length is None:
            default = _lengths_from_mask(key_padding_mask, S) if key_length is None else key_length
            cache.source_length = per_item(default, B, S, memory.device)
        k, v = self._project_kv(memory, memory)
        self.attention.cross_extend(k, v, cache, key_padding_mask=key_padding_mask)
        cache.length += S

    # -- forward ---------------------------------------------------------------
    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None, *,
                key_padding_mask: Tensor | None = None, need_weights: bool = False,
                average_attn_weights: bool = True, causal: bool = False,
                cache: AttentionCache | None = None, query_length: Tensor | int | None = None,
                key_length: Tensor | int | None = None,
                prefix: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``query [B, M, E]``, ``key [B, N, kdim]``, ``value [B, N, vdim]`` (``[T, B, E]``
        without ``batch_first``) -> ``(output [B, M, E], weights [B, (H,) M, N] or None)``.

        ``query_length``/``key_length`` (int or ``[B]``) are the target/source
        lengths that length-dependent mechanisms (cosFormer) use; by default the
        unpadded lengths. With ``cache``, a self-attention cache takes ``T``
        new tokens (causal), a cross-attention cache is first extended with
        ``key`` (if given) and then read. With a self-attention cache,
        ``key_padding_mask [B, T]`` marks padded new tokens (e.g. a left-padded
        batch of prompts): they add nothing to the cache and take no position
        (positions count each item's real tokens), so each item decodes as if
        alone; a padded token's own output is meaningless (zero when it
        follows no real token).

        ``prefix [B, M]`` (integer, in ``[0, N]``): query ``i`` attends to the
        keys ``0 .. prefix[b, i] - 1`` only (wait-k training). cosFormer keeps
        ``key_length`` (the whole source) in its key proportions ``j / N``.
        Not with ``causal`` or ``cache``.
        """
        if not self.batch_first:
            query = query.transpose(0, 1)
            key = None if key is None else key.transpose(0, 1)
            value = None if value is None else value.transpose(0, 1)
        self._check("query", query, self.embed_dim)
        if cache is not None:
            if prefix is not None:
                raise ValueError("prefix is for training; while decoding, the cross-attention "
                                 "cache holds exactly the source read so far")
            out = self._decode(query, key, value, cache, key_padding_mask, need_weights,
                               query_length, key_length)
            return (out if self.batch_first else out.transpose(0, 1)), None
        self_attn = key is None
        key = query if self_attn else key
        value = key if value is None else value
        self._check("key", key, self.kdim)
        self._check("value", value, self.vdim)
        B, M, _ = query.shape
        N = key.shape[1]
        if key.shape[0] != B or value.shape[:2] != key.shape[:2]:
            raise ValueError(f"query {list(query.shape)}, key {list(key.shape)} and value "
                             f"{list(value.shape)} must share batch (and key/value length)")
        self._check_mask(key_padding_mask, B, N)
        if causal and M != N:
            raise ValueError(f"causal attention needs query and key of one length, got {M} and {N}")
        extra = {}
        if prefix is not None:
            self._check_prefix(prefix, B, M, causal)
            extra["prefix"] = prefix
        if self_attn:
            L = query_length if query_length is not None else \
                _lengths_from_mask(key_padding_mask, M)
            q_len = k_len = per_item(L, B, M, query.device)
        else:
            q_len = per_item(query_length, B, M, query.device)
            k_len = per_item(key_length if key_length is not None else
                             _lengths_from_mask(key_padding_mask, N), B, N, query.device)
        if self_attn:
            q, k, v = self._project_qkv(query)
        else:
            q = self._project_q(query)
            k, v = self._project_kv(key, value)
        o, weights = self.attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask,
                                    need_weights=need_weights, q_len=q_len, k_len=k_len,
                                    **extra)
        out = self._merge(o)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None and average_attn_weights:
            weights = weights.mean(1)
        return out, weights

    def _decode(self, query, key, value, cache, key_padding_mask, need_weights, query_length,
                key_length) -> Tensor:
        if not isinstance(cache, AttentionCache):
            raise TypeError(f"cache must be an AttentionCache, got {type(cache).__name__}")
        if need_weights:
            raise ValueError("need_weights=True is not available while decoding with a cache")
        B, T, _ = query.shape
        q_len = None if query_length is None else per_item(query_length, B, T, query.device)
        if cache.kind == "self":
            if key is not None or value is not None:
                raise ValueError("a self-attention cache takes the new tokens as query only")
            self._check_mask(key_padding_mask, B, T)
            if key_padding_mask is not None and not bool(key_padding_mask.any()):
                key_padding_mask = None
            cache.check(self.layer_id, "self", B, T)
            q, k, v = self._project_qkv(query)
            o = self.attention.self_step(q, k, v, cache, q_len=q_len,
                                         key_padding_mask=key_padding_mask)
            cache.advance(T, key_padding_mask)
        else:
            if key is not None:
                if value is not None and value is not key:
                    raise ValueError("cross-attention caches take key = value = memory")
                self._extend(cache, key, key_padding_mask, key_length)
            cache.check(self.layer_id, "cross", B, 0)
            if cache.length == 0:
                raise ValueError("the cross-attention cache holds no source yet; pass the "
                                 "memory as key or call extend_memory first")
            o = self.attention.cross_read(self._project_q(query), cache, q_len=q_len)
        cache.queries += T
        return self._merge(o)
