"""Decoding caches: explicit, per layer and per attention block.

A cache holds what one attention block needs to decode without recomputing
the past. Its tensors depend on the mechanism (``tensors`` is filled and read
by the mechanism only):

| mechanism | self-attention cache | bytes per token per layer |
|---|---|---|
| softmax | keys and values so far, ``[B, H, T, D]`` each | grows: ``2 H D`` numbers per token |
| linear, elu, performer | fused running sums ``s [B, H, 1, F, P]`` | constant: ``H F P`` numbers in all |
| cosformer, leap | the sin and cos halves, ``s [B, H, 2, F, P]`` | constant: ``2 H F P`` numbers in all |
| gla, gated-leap | as linear, leap; each token first decays it (``diag(a_t) s``) | constant, as linear, leap |

(``F`` = feature size, the head size for ReLU/ELU; ``P`` = value size + 1
rounded up to 8.) A cross-attention cache holds the same over the source (the
memory): computed once, and *extended* as new source arrives in simultaneous
decoding (MLA Algorithm 1).

Every cache knows the layer that made it (``owner``), its batch size and an
optional ``max_length``; using it with another layer, another batch size, or
decoding past ``max_length`` raises ``ValueError``.

Padded slots (self-attention): new tokens may come with a
``key_padding_mask [B, T]`` (e.g. a left-padded batch of prompts). A padded
slot adds nothing to the state (zeroed features in the running sums, a masked
key for softmax) and takes no position: positions count each item's real
tokens only (``real_length``), so a padded batch decodes as its items alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(eq=False)
class AttentionCache:
    """Decoding state of one attention block of one layer."""

    owner: int
    kind: str  # "self" or "cross"
    batch_size: int
    max_length: int | None = None
    length: int = 0  # keys consumed (target tokens for self, source tokens for cross)
    queries: int = 0  # queries answered so far (target position before the next query)
    source_length: Tensor | None = None  # cross: total source length per item, if declared
    # self: real (unpadded) tokens consumed per item [B] (long), once some slot was padding;
    # None while every slot is real (every item then has ``length`` tokens)
    real_length: Tensor | None = None
    tensors: dict[str, Tensor] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Memory held by the cache's tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @property
    def padded(self) -> bool:
        """Whether some slot of this (self-attention) cache is padding."""
        return self.real_length is not None

    def new_positions(self, count: int, key_padding_mask: Tensor | None = None, *,
                      device=None) -> Tensor | None:
        """1-based per-item positions ``[B, count]`` (long) of ``count`` new tokens,
        counting real tokens only (a padded slot repeats the position before it,
        0 before an item's first real token); ``None`` when neither the cache nor
        the new tokens hold padding (the positions are then ``length + 1 ..`` for
        every item)."""
        if key_padding_mask is None and self.real_length is None:
            return None
        device = device if key_padding_mask is None else key_padding_mask.device
        base = self.real_length if self.real_length is not None else \
            torch.full((self.batch_size,), self.length, dtype=torch.long, device=device)
        if key_padding_mask is None:
            steps = torch.arange(1, count + 1, device=base.device).expand(self.batch_size, count)
        else:
            steps = (~key_padding_mask).long().cumsum(1)
        return base[:, None] + steps

    def advance(self, count: int, key_padding_mask: Tensor | None = None) -> None:
        """Record ``count`` consumed slots (``key_padding_mask [B, count]``: which are padding)."""
        positions = self.new_positions(count, key_padding_mask)
        if positions is not None:
            self.real_length = positions[:, -1].clone()
        self.length += count

    def check(self, owner: int, kind: str, batch_size: int, new_tokens: int) -> None:
        """Raise ``ValueError`` if this cache cannot take ``new_tokens`` more from ``owner``."""
        if owner != self.owner:
            raise ValueError(f"this {self.kind}-attention cache belongs to another layer "
                             f"(made by layer #{self.owner}, used by layer #{owner})")
        if kind != self.kind:
            raise ValueError(f"a {self.kind}-attention cache was passed where a {kind}-attention "
                             f"cache is needed")
        if batch_size != self.batch_size:
            raise ValueError(f"cache was made for batch size {self.batch_size}, got a batch of "
                             f"{batch_size}")
        if self.max_length is not None and self.length + new_tokens > self.max_length:
            raise ValueError(f"decoding past the cache's max_length={self.max_length}: "
                             f"{self.length} tokens held, {new_tokens} more given")


@dataclass(eq=False)
class LayerCache:
    """The caches of one decoder layer: self-attention and (optional) cross-attention."""

    self_attn: AttentionCache
    cross_attn: AttentionCache | None = None

    @property
    def nbytes(self) -> int:
        return self.self_attn.nbytes + (0 if self.cross_attn is None else self.cross_attn.nbytes)


@dataclass(eq=False)
class DecoderCache:
    """One :class:`LayerCache` per decoder layer."""

    layers: list[LayerCache]

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    @property
    def length(self) -> int:
        """Target tokens decoded so far."""
        return self.layers[0].self_attn.length if self.layers else 0
