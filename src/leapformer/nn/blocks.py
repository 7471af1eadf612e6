"""Transformer blocks whose attention mechanism is chosen per block (MLA).

``EncoderLayer`` (self-attention + FFN), ``DecoderLayer`` (causal
self-attention, optional cross-attention, FFN), and the stacks ``Encoder``
and ``Decoder`` that take an :class:`~leapformer.nn.AttentionSpec`. Pre-norm
by default (``norm_first=False`` for post-norm). Inputs are ``[B, T, E]``.

Decoding: ``Decoder.new_cache(batch, memory=...)`` makes one
:class:`~leapformer.nn.LayerCache` per layer (cross-attention sums over the
memory computed once); ``Decoder(x_new, cache=cache)`` runs ``T >= 1`` new
tokens; ``Decoder.extend_memory`` adds newly read source (simultaneous
decoding). Length-dependent mechanisms (cosFormer) read ``target_length``
(true in training, predicted at inference) and ``source_length``.

Wait-k training (docs/math.md §4): ``Decoder(..., memory_prefix=prefix)`` limits
target position ``t`` to the first ``prefix[b, t]`` memory positions in every
layer's cross-attention (``leapformer.ops.waitk_prefix`` makes
``g(t) = min(k + t - 1, |x|)``). ``Encoder(..., causal=True)`` (or
``causal=True`` per call) makes the encoder unidirectional, so a streamed
source is encoded once: ``Encoder.new_cache`` and ``Encoder(chunk,
cache=cache)`` encode newly read source after the cached part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.nn.attention import MultiheadAttention
from leapformer.nn.cache import DecoderCache, LayerCache
from leapformer.nn.spec import AttentionSpec

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


@dataclass
class BlockConfig:
    """Sizes and options shared by all layers of a stack."""

    d_model: int = 512
    nhead: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = True
    layer_norm_eps: float = 1e-5
    bias: bool = True

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.d_model % self.nhead:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of nhead ({self.nhead})")


def _dropout(module: nn.Dropout, x: Tensor) -> Tensor:
    """Skip the call when it is the identity (decoding steps are bound by per-op overhead)."""
    return module(x) if module.training and module.p > 0 else x


class FeedForward(nn.Module):
    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.linear1 = nn.Linear(cfg.d_model, cfg.dim_feedforward, bias=cfg.bias)
        self.linear2 = nn.Linear(cfg.dim_feedforward, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.activation = ACTIVATIONS[cfg.activation]

    def forward(self, x: Tensor) -> Tensor:
        h = self.activation(self.linear1(x))
        return self.linear2(_dropout(self.dropout, h))


class _Sublayer(nn.Module):
    """Residual + norm around one sublayer, pre- or post-norm."""

    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm_first = cfg.norm_first

    def forward(self, x: Tensor, fn) -> Tensor:
        if self.norm_first:
            return x + _dropout(self.dropout, fn(self.norm(x)))
        return self.norm(x + _dropout(self.dropout, fn(x)))


def _attention(cfg: BlockConfig, mechanism: str, options: dict | None) -> MultiheadAttention:
    return MultiheadAttention(cfg.d_model, cfg.nhead, mechanism, dropout=cfg.dropout,
                              bias=cfg.bias, mechanism_options=options)


class EncoderLayer(nn.Module):
    """Bidirectional self-attention + feed-forward."""

    def __init__(self, cfg: BlockConfig, mechanism: str = "softmax",
                 mechanism_options: dict | None = None):
        super().__init__()
        self.self_attn = _attention(cfg, mechanism, mechanism_options)
        self.ffn = FeedForward(cfg)
        self.sub_attn, self.sub_ffn = _Sublayer(cfg), _Sublayer(cfg)

    def new_cache(self, batch_size: int, *, max_length: int | None = None) -> LayerCache:
        """A causal self-attention cache, for incremental (streaming) encoding."""
        return LayerCache(self.self_attn.new_cache(batch_size, max_length=max_length))

    def forward(self, x: Tensor, *, key_padding_mask: Tensor | None = None,
                length: Tensor | int | None = None, causal: bool = False,
                cache: LayerCache | None = None) -> Tensor:
        if cache is None:
            x = self.sub_attn(x, lambda h: self.self_attn(
                h, key_padding_mask=key_padding_mask, causal=causal, query_length=length)[0])
        else:
            x = self.sub_attn(x, lambda h: self.self_attn(
                h, cache=cache.self_attn, key_padding_mask=key_padding_mask,
                query_length=length)[0])
        return self.sub_ffn(x, self.ffn)


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention (unless ``cross_mechanism=None``), feed-forward."""

    def __init__(self, cfg: BlockConfig, self_mechanism: str = "softmax",
                 cross_mechanism: str | None = "softmax", *, self_options: dict | None = None,
                 cross_options: dict | None = None):
        super().__init__()
        self.self_attn = _attention(cfg, self_mechanism, self_options)
        self.cross_attn = None if cross_mechanism is None else \
            _attention(cfg, cross_mechanism, cross_options)
        self.ffn = FeedForward(cfg)
        self.sub_self, self.sub_ffn = _Sublayer(cfg), _Sublayer(cfg)
        self.sub_cross = None if cross_mechanism is None else _Sublayer(cfg)

    def new_cache(self, batch_size: int, *, max_length: int | None = None) -> LayerCache:
        cross = None if self.cross_attn is None else self.cross_attn.new_cache(batch_size, cross=True)
        return LayerCache(self.self_attn.new_cache(batch_size, max_length=max_length), cross)

    def forward(self, x: Tensor, memory: Tensor | None = None, *,
                tgt_key_padding_mask: Tensor | None = None,
                memory_key_padding_mask: Tensor | None = None, cache: LayerCache | None = None,
                target_length: Tensor | int | None = None,
                source_length: Tensor | int | None = None,
                memory_prefix: Tensor | None = None) -> Tensor:
        if memory_prefix is not None:
            if self.cross_attn is None:
                raise ValueError("memory_prefix needs a decoder layer with cross-attention")
            if cache is not None:
                raise ValueError("memory_prefix is for training (wait-k); while decoding, the "
                                 "cross-attention cache holds exactly the source read so far")
        if cache is None:
            x = self.sub_self(x, lambda h: self.self_attn(
                h, key_padding_mask=tgt_key_padding_mask, causal=True,
                query_length=target_length)[0])
        else:
            x = self.sub_self(x, lambda h: self.self_attn(
                h, cache=cache.self_attn, key_padding_mask=tgt_key_padding_mask,
                query_length=target_length)[0])
        if self.cross_attn is not None:
            cross_cache = None if cache is None else cache.cross_attn
            if cross_cache is None and memory is None:
                raise ValueError("this decoder layer has cross-attention: pass memory (or a cache "
                                 "holding it)")
            x = self.sub_cross(x, lambda h: self.cross_attn(
                h, memory, key_padding_mask=memory_key_padding_mask, cache=cross_cache,
                query_length=target_length, key_length=source_length,
                prefix=memory_prefix)[0])
        return self.sub_ffn(x, self.ffn)


class Encoder(nn.Module):
    """``num_layers`` encoder layers (mechanism of block ``enc`` per layer) + final norm (pre-norm).

    ``causal=True`` makes the self-attention unidirectional (each position sees
    itself and earlier ones): a streamed source is then encoded once, with
    :meth:`new_cache` and ``forward(chunk, cache=cache)`` taking each newly read
    chunk after the cached ones (simultaneous translation, docs/math.md §4).
    """

    def __init__(self, num_layers: int, cfg: BlockConfig, spec: AttentionSpec | str = "softmax",
                 mechanism_options: dict[str, dict] | None = None, *, causal: bool = False):
        super().__init__()
        self.causal = causal
        spec = AttentionSpec.parse(spec) if isinstance(spec, str) else spec
        spec.check_layers("enc", num_layers)
        opts = mechanism_options or {}
        self.layers = nn.ModuleList(
            EncoderLayer(cfg, spec.mechanism("enc", i), opts.get(spec.mechanism("enc", i)))
            for i in range(num_layers))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm_first else None

    def new_cache(self, batch_size: int, *, max_length: int | None = None) -> DecoderCache:
        """Empty causal self-attention caches, one :class:`LayerCache` per layer (no
        cross-attention), for incremental encoding of a streamed source."""
        return DecoderCache([layer.new_cache(batch_size, max_length=max_length)
                             for layer in self.layers])

    def forward(self, x: Tensor, *, key_padding_mask: Tensor | None = None,
                length: Tensor | int | None = None, causal: bool | None = None,
                cache: DecoderCache | None = None) -> Tensor:
        """``x [B, S, E]`` -> ``[B, S, E]``. ``causal`` overrides the constructor's
        setting for this call. With ``cache`` (from :meth:`new_cache`), ``x`` is
        the next chunk of a stream encoded causally after the cached positions
        (``key_padding_mask [B, S]`` then marks padded tokens of the chunk, which
        the cache skips; cosFormer needs ``length``, the whole source length).
        Causally, the first ``s`` outputs depend on the first ``s`` tokens only,
        so a streamed source is encoded once, each chunk as it is read."""
        causal = self.causal if causal is None else causal
        if cache is not None:
            if not causal:
                raise ValueError("incremental encoding with a cache needs a causal encoder "
                                 "(Encoder(..., causal=True) or causal=True)")
            if not isinstance(cache, DecoderCache) or len(cache.layers) != len(self.layers):
                raise ValueError(f"cache must come from Encoder.new_cache ({len(self.layers)} "
                                 f"layers)")
        for i, layer in enumerate(self.layers):
            x = layer(x, key_padding_mask=key_padding_mask, length=length, causal=causal,
                      cache=None if cache is None else cache.layers[i])
        return x if self.norm is None else self.norm(x)


class Decoder(nn.Module):
    """``num_layers`` decoder layers (blocks ``dec`` and ``cross``; ``cross=False``
    for a decoder-only stack) + final norm (pre-norm)."""

    def __init__(self, num_layers: int, cfg: BlockConfig, spec: AttentionSpec | str = "softmax",
                 mechanism_options: dict[str, dict] | None = None, *, cross: bool = True):
        super().__init__()
        spec = AttentionSpec.parse(spec) if isinstance(spec, str) else spec
        spec.check_layers("dec", num_layers)
        if cross:
            spec.check_layers("cross", num_layers)
        opts = mechanism_options or {}
        layers = []
        for i in range(num_layers):
            dec = spec.mechanism("dec", i)
            crs = spec.mechanism("cross", i) if cross else None
            layers.append(DecoderLayer(cfg, dec, crs, self_options=opts.get(dec),
                                       cross_options=opts.get(crs) if crs else None))
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm_first else None

    def new_cache(self, batch_size: int, *, max_length: int | None = None,
                  memory: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                  source_length: Tensor | int | None = None) -> DecoderCache:
        """Empty self-attention caches; cross-attention caches filled with ``memory`` if given."""
        cache = DecoderCache([layer.new_cache(batch_size, max_length=max_length)
                              for layer in self.layers])
        if memory is not None:
            self.extend_memory(cache, memory, key_padding_mask=memory_key_padding_mask,
                               source_length=source_length)
        return cache

    def extend_memory(self, cache: DecoderCache, memory: Tensor, *,
                      key_padding_mask: Tensor | None = None,
                      source_length: Tensor | int | None = None) -> None:
        """Add newly read source ``memory [B, S, E]`` to every layer's cross-attention sums."""
        for layer, lc in zip(self.layers, cache.layers, strict=True):
            if layer.cross_attn is None:
                raise ValueError("this decoder has no cross-attention")
            layer.cross_attn.extend_memory(lc.cross_attn, memory,
                                           key_padding_mask=key_padding_mask,
                                           key_length=source_length)

    def forward(self, x: Tensor, memory: Tensor | None = None, *,
                tgt_key_padding_mask: Tensor | None = None,
                memory_key_padding_mask: Tensor | None = None, cache: DecoderCache | None = None,
                target_length: Tensor | int | None = None,
                source_length: Tensor | int | None = None,
                memory_prefix: Tensor | None = None) -> Tensor:
        """``x [B, T, E]`` over ``memory [B, S, E]`` -> ``[B, T, E]``.

        ``memory_prefix [B, T]`` (integer, in ``[0, S]``; wait-k training):
        target position ``t`` attends to the first ``memory_prefix[b, t]``
        memory positions in every layer's cross-attention. Not with ``cache``:
        in decoding the cache holds what has been read (``extend_memory``).
        """
        if cache is not None:
            if not isinstance(cache, DecoderCache) or len(cache.layers) != len(self.layers):
                raise ValueError(f"cache must be a DecoderCache with {len(self.layers)} layers")
            if memory is not None:
                self.extend_memory(cache, memory, key_padding_mask=memory_key_padding_mask,
                                   source_length=source_length)
                memory = None
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask,
                      cache=None if cache is None else cache.layers[i],
                      target_length=target_length, source_length=source_length,
                      memory_prefix=memory_prefix)
        return x if self.norm is None else self.norm(x)
