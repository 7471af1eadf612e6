"""Speech-to-text encoder-decoder (ASR and speech translation) on the Seq2Seq/MLA machinery.

:class:`SpeechSeq2Seq` is a :class:`~leapformer.models.Seq2Seq` whose source is
a sequence of filterbank frames ``[B, T, input_dim]`` (80-bin Kaldi fbank,
global CMVN applied by the data pipeline) instead of tokens. The front-end is
fairseq's S2T convolutional subsampler (:class:`Conv1dSubsampler`: two
``Conv1d`` of kernel 5 and stride 2, each followed by a GLU over channels, so
4x fewer frames), then, as fairseq's ``S2TTransformerEncoder`` does::

    x = sqrt(d) * Subsampler(fbank) + pos          (positions 1-based, per item)
    memory = Encoder(dropout(x))                   (the MLA ``enc`` blocks)

The decoder, output projection, loss, decoding cache, greedy/beam search and
wait-k ``memory_prefix`` training are those of :class:`Seq2Seq` unchanged: a
spec ``"enc=leap,dec=leap,cross=leap"`` picks the mechanism of each block.
:class:`SpecAugment` (frequency and time masks, Park et al. 2019) is applied to
the features in training only, when the model is given one.

**Streaming** (simultaneous speech translation): with a causal encoder
(``causal_encoder=True``) the subsampler is causal too (its convolutions are
padded on the left only, by ``kernel - 1`` frames, which gives the same output
lengths as fairseq's symmetric padding), so encoder state ``j`` depends on
feature frames ``<= 4 j + 3`` only. :meth:`SpeechSeq2Seq.new_stream` and
:meth:`SpeechSeq2Seq.stream_encode` then encode the frames as they arrive:
each new frame goes once through the subsampler (its state keeps the last
``kernel - 1`` inputs of each convolution) and each new encoder state once
through the encoder (its self-attention cache). The concatenated outputs equal
:meth:`SpeechSeq2Seq.encode` of the whole utterance (tested). The re-encode
baseline (the official SimulST agent's) encodes the whole prefix again with
:meth:`SpeechSeq2Seq.encode`, bidirectionally.

Speech models take no ``lookup`` length predictor (it is keyed on source
tokens); ``ratio`` (fitted on encoder-state lengths) and ``conv`` work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.models.lm import sinusoidal_embedding
from leapformer.models.seq2seq import Seq2Seq, Seq2SeqConfig
from leapformer.models.seq2seq_cache import EncoderOutput
from leapformer.models.target_length import build_length_predictor
from leapformer.nn import AttentionSpec
from leapformer.nn.cache import DecoderCache
from leapformer.nn.length import LengthPredictor, RatioLength

logger = logging.getLogger(__name__)

__all__ = ["Conv1dSubsampler", "SpecAugment", "SpeechSeq2Seq", "SpeechStream",
           "subsampled_lengths"]


def _shape(t) -> list:
    return list(getattr(t, "shape", []))


def subsampled_lengths(lengths: Tensor | int, num_layers: int = 2) -> Tensor | int:
    """Frames after ``num_layers`` stride-2 convolutions (kernel ``k``, ``k - 1`` padding):
    ``n -> floor((n - 1) / 2) + 1`` per layer (0 stays 0), fairseq's formula."""
    out = lengths
    for _ in range(num_layers):
        out = (out - 1) // 2 + 1
    return out


class Conv1dSubsampler(nn.Module):
    """fairseq's S2T convolutional subsampler: ``len(kernel_sizes)`` layers of
    ``Conv1d(stride 2) + GLU(dim=channels)``; ``[B, T, in] -> [B, ceil-ish(T / 4), out]``.

    ``causal=True`` pads each convolution by ``kernel - 1`` frames on the left
    (so an output never sees a later frame) instead of ``kernel // 2`` on both
    sides; the output lengths are the same (:func:`subsampled_lengths`). Outputs
    past an item's length are zeroed between layers, so a padded batch gives
    each item what it gets alone.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 kernel_sizes: Sequence[int] = (5, 5), *, causal: bool = False):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("mid_channels", mid_channels),
                        ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        kernel_sizes = tuple(kernel_sizes)
        if not kernel_sizes or any(isinstance(k, bool) or not isinstance(k, int) or k < 1
                                   or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive ints, got {kernel_sizes!r}")
        if mid_channels % 2:
            raise ValueError(f"mid_channels must be even (GLU halves it), got {mid_channels}")
        n = len(kernel_sizes)
        self.kernel_sizes, self.causal = kernel_sizes, causal
        self.in_channels, self.out_channels = in_channels, out_channels
        self.convs = nn.ModuleList(
            nn.Conv1d(in_channels if i == 0 else mid_channels // 2,
                      mid_channels if i < n - 1 else out_channels * 2, k, stride=2)
            for i, k in enumerate(kernel_sizes))

    def _pad(self, k: int) -> tuple[int, int]:
        return (k - 1, 0) if self.causal else (k // 2, k // 2)

    def output_lengths(self, lengths: Tensor | int) -> Tensor | int:
        return subsampled_lengths(lengths, len(self.convs))

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, T, in_channels]``, ``lengths [B]`` -> ``([B, T', out_channels], lengths')``."""
        h = x.transpose(1, 2)
        for conv, k in zip(self.convs, self.kernel_sizes, strict=True):
            h = F.glu(conv(F.pad(h, self._pad(k))), dim=1)
            lengths = subsampled_lengths(lengths, 1)
            keep = torch.arange(h.shape[-1], device=h.device)[None, :] < lengths[:, None]
            h = h * keep[:, None, :].to(h.dtype)
        return h.transpose(1, 2), lengths

    def new_state(self, batch_size: int, *, device=None, dtype=None) -> list[Tensor]:
        """The streaming state of a causal subsampler: per layer, the inputs not yet
        consumed (starting with the ``kernel - 1`` frames of left padding)."""
        if not self.causal:
            raise ValueError("streaming needs a causal subsampler (Conv1dSubsampler(..., "
                             "causal=True))")
        w = self.convs[0].weight
        device, dtype = device or w.device, dtype or w.dtype
        return [torch.zeros(batch_size, conv.in_channels, k - 1, device=device, dtype=dtype)
                for conv, k in zip(self.convs, self.kernel_sizes, strict=True)]

    def stream(self, x: Tensor, state: list[Tensor]) -> Tensor:
        """The outputs ``[B, t, out]`` that the new frames ``x [B, T, in]`` complete
        (``t >= 0``); ``state`` (from :meth:`new_state`) is updated in place."""
        if len(state) != len(self.convs):
            raise ValueError(f"state must come from new_state ({len(self.convs)} layers)")
        h = x.transpose(1, 2)
        for i, (conv, k) in enumerate(zip(self.convs, self.kernel_sizes, strict=True)):
            buf = torch.cat([state[i], h], dim=-1)
            n_out = (buf.shape[-1] - k) // 2 + 1 if buf.shape[-1] >= k else 0
            if n_out:
                h = F.glu(conv(buf[..., :2 * (n_out - 1) + k]), dim=1)
            else:
                h = buf.new_zeros(buf.shape[0], conv.out_channels // 2, 0)
            state[i] = buf[..., 2 * n_out:]
        return h.transpose(1, 2)


class SpecAugment(nn.Module):
    """SpecAugment (Park et al. 2019) on features ``[B, T, C]``, in training only:
    ``freq_masks`` bands of ``[0, freq_width]`` bins and ``time_masks`` spans of
    ``[0, min(time_width, time_ratio * length)]`` frames per item set to
    ``mask_value`` (0: the mean after CMVN). fairseq's LB policy:
    ``freq_masks=1, freq_width=27, time_masks=1, time_width=100``."""

    def __init__(self, freq_masks: int = 2, freq_width: int = 27, time_masks: int = 2,
                 time_width: int = 100, time_ratio: float = 1.0, mask_value: float = 0.0):
        super().__init__()
        for name, v in (("freq_masks", freq_masks), ("freq_width", freq_width),
                        ("time_masks", time_masks), ("time_width", time_width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        if not 0.0 <= time_ratio <= 1.0:
            raise ValueError(f"time_ratio must be in [0, 1], got {time_ratio!r}")
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.time_ratio, self.mask_value = float(time_ratio), float(mask_value)

    def extra_repr(self) -> str:
        return (f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, time_masks="
                f"{self.time_masks}, time_width={self.time_width}, time_ratio={self.time_ratio}")

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if not self.training or (self.freq_masks == 0 and self.time_masks == 0):
            return x
        B, T, C = x.shape
        dev = x.device
        masked = torch.zeros(B, T, C, dtype=torch.bool, device=dev)
        bins = torch.arange(C, device=dev)
        frames = torch.arange(T, device=dev)
        for _ in range(self.freq_masks):
            w = torch.randint(0, self.freq_width + 1, (B,), device=dev).clamp_max(C)
            f0 = (torch.rand(B, device=dev) * (C - w + 1)).long()
            band = (bins[None, :] >= f0[:, None]) & (bins[None, :] < (f0 + w)[:, None])
            masked |= band[:, None, :]
        limit = torch.minimum(torch.full_like(lengths, self.time_width),
                              (lengths.double() * self.time_ratio).long())
        for _ in range(self.time_masks):
            w = (torch.rand(B, device=dev) * (limit + 1).to(dev)).long()
            t0 = (torch.rand(B, device=dev) * (lengths.to(dev) - w + 1).clamp_min(1)).long()
            span = (frames[None, :] >= t0[:, None]) & (frames[None, :] < (t0 + w)[:, None])
            masked |= span[:, :, None]
        return x.masked_fill(masked, self.mask_value)


@dataclass(eq=False)
class SpeechStream:
    """Streaming encoder state of one :class:`SpeechSeq2Seq` utterance batch:
    ``subsampler`` (per-layer pending inputs), ``encoder`` (self-attention
    caches), ``frames`` fed and encoder ``states`` produced so far."""

    subsampler: list[Tensor]
    encoder: DecoderCache
    frames: int = 0
    states: int = 0


def _check_features(name: str, x, dim: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3 or not x.is_floating_point() \
            or x.shape[-1] != dim:
        raise ValueError(f"{name} must be a float tensor [batch, frames, {dim}], got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {_shape(x)}")


class SpeechSeq2Seq(Seq2Seq):
    """Speech encoder (subsampler + MLA transformer encoder) + text decoder; see the
    module docstring. ``cfg.src_vocab_size`` is unused (no source embedding) but
    must be valid for :class:`Seq2SeqConfig`; ``cfg.tgt_vocab_size`` is the text
    vocabulary. ``input_dim``: feature bins (80); ``conv_channels``: the
    subsampler's inner width (fairseq: 1024); ``kernel_sizes``: per layer (5, 5);
    ``causal_subsampler``: default ``causal_encoder``; ``specaugment``: a
    :class:`SpecAugment` used in training, or None."""

    def __init__(self, cfg: Seq2SeqConfig,
                 spec: AttentionSpec | str = "enc=leap,dec=leap,cross=leap",
                 length_predictor: str | LengthPredictor | None = None, *,
                 causal_encoder: bool = False, input_dim: int = 80, conv_channels: int = 1024,
                 kernel_sizes: Sequence[int] = (5, 5), causal_subsampler: bool | None = None,
                 specaugment: SpecAugment | None = None):
        if length_predictor == "lookup":
            raise ValueError("length_predictor='lookup' is keyed on source tokens; a speech "
                             "model takes None, 'ratio' or 'conv'")
        super().__init__(cfg, spec, length_predictor, causal_encoder=causal_encoder)
        del self.src_embed  # the source is speech
        causal_subsampler = causal_encoder if causal_subsampler is None else causal_subsampler
        if causal_encoder and not causal_subsampler:
            raise ValueError("a causal encoder needs causal_subsampler=True to stream")
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise ValueError(f"input_dim must be a positive int, got {input_dim!r}")
        if specaugment is not None and not isinstance(specaugment, SpecAugment):
            raise TypeError(f"specaugment must be a SpecAugment or None, got "
                            f"{type(specaugment).__name__}")
        self.input_dim = input_dim
        self.subsampler = Conv1dSubsampler(input_dim, conv_channels, cfg.d_model, kernel_sizes,
                                           causal=causal_subsampler)
        self.specaugment = specaugment
        self.frontend = {"input_dim": input_dim, "conv_channels": conv_channels,
                         "kernel_sizes": list(self.subsampler.kernel_sizes),
                         "causal_subsampler": causal_subsampler}

    # -- length predictors (no source tokens) ---------------------------------------
    def _build_length_predictor(self, spec) -> LengthPredictor | None:
        if spec == "lookup":
            raise ValueError("length_predictor='lookup' is keyed on source tokens; a speech "
                             "model takes None, 'ratio' or 'conv'")
        cfg = self.cfg
        return build_length_predictor(spec, d_model=cfg.d_model, src_vocab_size=cfg.src_vocab_size,
                                      hidden=cfg.length_hidden, dropout=cfg.dropout)

    def set_length_predictor(self, spec: str | LengthPredictor | None) -> LengthPredictor | None:
        pred = self._build_length_predictor(spec)
        self.length_predictor = pred.to(self.tgt_embed.weight.device) if pred is not None else None
        return self.length_predictor

    def fit_length_predictor(self, source_lengths: Sequence[int],
                             target_lengths: Sequence[int]) -> LengthPredictor:
        """Fit a ``ratio`` predictor: ``source_lengths`` are encoder states per utterance
        (:meth:`encoder_lengths` of the frame counts), ``target_lengths`` decoder positions."""
        if not isinstance(self.length_predictor, RatioLength):
            raise ValueError(f"a speech model fits a 'ratio' predictor only; this model has "
                             f"{type(self.length_predictor).__name__}")
        if len(source_lengths) != len(target_lengths) or not len(source_lengths):
            raise ValueError(f"need as many source_lengths as target_lengths (> 0), got "
                             f"{len(source_lengths)} and {len(target_lengths)}")
        self.length_predictor = RatioLength.fit([int(n) for n in source_lengths],
                                                [int(m) for m in target_lengths]).to(
            self.tgt_embed.weight.device)
        return self.length_predictor

    # -- encoder ----------------------------------------------------------------------
    def encoder_lengths(self, frames: Tensor | int) -> Tensor | int:
        """Encoder states of ``frames`` feature frames (4x fewer)."""
        return self.subsampler.output_lengths(frames)

    def _positions(self, h: Tensor, start: int) -> Tensor:
        T = h.shape[1]
        pos = torch.arange(start + 1, start + T + 1, device=h.device)
        x = h * self.embed_scale
        if self.src_pos is not None:
            if start + T > self.cfg.max_positions:
                raise ValueError(f"encoder position {start + T} is past the learned position "
                                 f"table (max_positions={self.cfg.max_positions})")
            x = x + self.src_pos(pos - 1)
        else:
            x = x + sinusoidal_embedding(pos, self.cfg.d_model).to(x.dtype)
        return self.dropout(x)

    def embed_source(self, tokens: Tensor, start: int = 0) -> Tensor:  # noqa: ARG002
        raise TypeError("a SpeechSeq2Seq has no source tokens; use encode(features) or "
                        "stream_encode(frames, stream)")

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> EncoderOutput:
        """Encode features ``src [B, T, input_dim]`` (``src_mask [B, T]``: True = padded
        frame, right padding). The output's padding mask covers encoder states."""
        _check_features("src", src, self.input_dim)
        B, T, _ = src.shape
        if T < 1:
            raise ValueError(f"src must hold at least one frame, got {_shape(src)}")
        if src_mask is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=src.device)
        else:
            if not isinstance(src_mask, Tensor) or src_mask.dtype != torch.bool \
                    or src_mask.shape != (B, T):
                raise ValueError(f"src_mask must be a bool tensor [batch, frames] = [{B}, {T}] "
                                 f"(True = padding), got {_shape(src_mask)}")
            if bool((src_mask[:, 1:] < src_mask[:, :-1]).any()) or bool(src_mask[:, 0].any()):
                raise ValueError("src_mask must mark right padding only, and every item needs "
                                 "at least one frame")
            lengths = (~src_mask).sum(1)
        if self.specaugment is not None:
            src = self.specaugment(src, lengths)
        h, enc_len = self.subsampler(src, lengths)
        S = h.shape[1]
        mask = torch.arange(S, device=h.device)[None, :] >= enc_len[:, None]
        mask = mask if bool(mask.any()) else None
        memory = self.encoder(self._positions(h, 0), key_padding_mask=mask)
        return EncoderOutput(memory, mask, enc_len, src)

    # -- streaming --------------------------------------------------------------------
    def new_stream(self, batch_size: int = 1) -> SpeechStream:
        """An empty streaming state (causal encoder and subsampler needed)."""
        if not self.encoder.causal:
            raise ValueError("streaming needs a causal encoder (SpeechSeq2Seq(..., "
                             "causal_encoder=True)); re-encode the prefix with encode() instead")
        return SpeechStream(self.subsampler.new_state(batch_size),
                            self.encoder.new_cache(batch_size))

    def stream_encode(self, frames: Tensor, stream: SpeechStream, *,
                      length: Tensor | int | None = None) -> Tensor:
        """Encoder states ``[B, t, d_model]`` completed by the new feature ``frames
        [B, T, input_dim]`` (``t`` may be 0), after those already in ``stream``.
        ``length``: the whole utterance's encoder states (cosFormer only; an oracle)."""
        if not isinstance(stream, SpeechStream):
            raise TypeError(f"stream must be a SpeechStream (new_stream()), got "
                            f"{type(stream).__name__}")
        _check_features("frames", frames, self.input_dim)
        h = self.subsampler.stream(frames, stream.subsampler)
        stream.frames += frames.shape[1]
        if h.shape[1] == 0:
            return h
        x = self._positions(h, stream.states)
        stream.states += h.shape[1]
        return self.encoder(x, cache=stream.encoder, length=length)

    @property
    def num_frames_per_state(self) -> int:
        return 2 ** len(self.subsampler.convs)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, frames_per_state={self.num_frames_per_state}"
