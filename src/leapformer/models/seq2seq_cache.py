"""Decoding state of :class:`~leapformer.models.Seq2Seq`: the encoder output, the
decoder cache, and the reordering of their batch rows that beam search needs."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from leapformer.nn import DecoderCache
from leapformer.nn.cache import AttentionCache

__all__ = ["EncoderOutput", "Seq2SeqCache", "reorder_decoder_cache"]


def _shape(t) -> list:
    return list(getattr(t, "shape", []))


@dataclass(eq=False)
class EncoderOutput:
    """What the decoder needs from the source: ``memory [B, S, E]``, ``padding_mask
    [B, S]`` (True = padding, or None), ``src_lengths [B]`` and ``src_tokens [B, S]``."""

    memory: Tensor
    padding_mask: Tensor | None
    src_lengths: Tensor
    src_tokens: Tensor

    @property
    def batch_size(self) -> int:
        return self.memory.shape[0]

    def index_select(self, index: Tensor) -> EncoderOutput:
        """Rows ``index`` (e.g. ``arange(B).repeat_interleave(beam)``)."""
        sel = lambda t: None if t is None else t.index_select(0, index.to(t.device))
        return EncoderOutput(sel(self.memory), sel(self.padding_mask), sel(self.src_lengths),
                             sel(self.src_tokens))


def _reorder_attention_cache(cache: AttentionCache, index: Tensor) -> None:
    B = cache.batch_size
    for name, t in list(cache.tensors.items()):
        if t.dim() == 0 or t.shape[0] != B:
            raise ValueError(f"cannot reorder cache tensor {name!r} of shape {_shape(t)}: its "
                             f"first axis is not the batch ({B})")
        cache.tensors[name] = t.index_select(0, index.to(t.device))
    if cache.source_length is not None:
        cache.source_length = cache.source_length.index_select(
            0, index.to(cache.source_length.device))
    cache.batch_size = int(index.numel())


def reorder_decoder_cache(cache: DecoderCache, index: Tensor, *, cross: bool = True) -> None:
    """Select/repeat the batch rows ``index [B']`` of every layer's caches, in place
    (``cross=False`` leaves the cross-attention caches alone: fine when ``index``
    only permutes rows that share a source, as beams of one sentence do).

    Every cache tensor of :mod:`leapformer.nn` mechanisms has the batch on
    its first axis (softmax keys/values ``[B, H, T, D]`` and padding ``[B, T]``,
    linear running sums ``[B, H, G, F, P]``); anything else raises ``ValueError``.
    """
    if not isinstance(index, Tensor) or index.dim() != 1 or index.is_floating_point():
        raise ValueError(f"index must be a 1-D integer tensor, got {_shape(index)}")
    for lc in cache.layers:
        _reorder_attention_cache(lc.self_attn, index)
        if lc.cross_attn is not None:
            if cross:
                _reorder_attention_cache(lc.cross_attn, index)
            elif lc.cross_attn.batch_size != index.numel():
                raise ValueError(f"cross=False needs the batch size to stay "
                                 f"{lc.cross_attn.batch_size}, got {index.numel()} rows")


@dataclass(eq=False)
class Seq2SeqCache:
    """Decoding state of a :class:`Seq2Seq`: the decoder's caches, the target
    length ``M [B]`` cosFormer reads (None if no decoder block needs it), and the
    decoder positions consumed so far (``length``)."""

    decoder: DecoderCache
    target_length: Tensor | None
    batch_size: int

    @property
    def length(self) -> int:
        return self.decoder.length

    @property
    def nbytes(self) -> int:
        return self.decoder.nbytes

    def reorder(self, index: Tensor, *, cross: bool = True) -> None:
        """Keep/repeat batch rows ``index`` in place (see :func:`reorder_decoder_cache`)."""
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.batch_size):
            raise ValueError(f"index holds rows outside [0, {self.batch_size}): "
                             f"{index.tolist()}")
        reorder_decoder_cache(self.decoder, index, cross=cross)
        if self.target_length is not None:
            self.target_length = self.target_length.index_select(
                0, index.to(self.target_length.device))
        self.batch_size = int(index.numel())
