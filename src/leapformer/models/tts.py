"""TransformerTTS (Li et al. 2019) with a mechanism per attention block (MLA, docs/math.md §2-§3).

Text (character or phoneme ids, ``pad_id=0``) -> normalised log-mel frames::

    memory  = Encoder(alpha_e PE + EncoderPrenet(text))
    h       = Decoder(alpha_d PE + DecoderPrenet([go, y_1 .. y_{T-1}]), memory)
    mel     = Linear(h)                      # before the post-net
    mel'    = mel + Postnet(mel)             # after the post-net
    stop    = Linear(h)                      # logit of "frame t is the last"

The encoder self- (``enc``), decoder self- (``dec``) and cross-attention
(``cross``) blocks each take the mechanism an :class:`~leapformer.nn.AttentionSpec`
names. The go frame is all zeros. :meth:`TransformerTTS.loss`: L1 (or L2,
``cfg.loss="l2"``) on ``mel`` and ``mel'`` against the target over the real
frames, plus binary cross-entropy on the stop logit (target 1 on each item's
last frame) with ``pos_weight = cfg.stop_pos_weight``, plus
``length_loss_weight`` times the ``conv`` length predictor's loss if it has one.

**Target length.** cosFormer in a decoder block needs ``M``, the number of
decoder positions = mel frames. Training uses each item's true frame count.
Synthesis stops on the stop token; cosFormer's ``M`` then comes from the
``length_predictor`` (``ratio``/``lookup`` fitted on text -> frames with
:meth:`TransformerTTS.fit_length_predictor`, or ``conv`` trained jointly; the
plumbing of :mod:`leapformer.models.target_length`), or is given.

**Frames per step** (``cfg.frames_per_step = r``, fairseq's ``n_frames_per_step``):
the decoder predicts ``r`` frames per position. The mel target is cut into groups of
``r`` frames (the last one zero-padded); the decoder input of group ``j`` is the
whole group ``j - 1`` (``r * n_mels`` values, the go group all zeros), ``mel_linear``
returns ``r * n_mels`` values and ``stop_linear`` ``r`` stop logits, one per frame
(so lengths stay exact to the frame; the frames of a last group past an item's end
are masked out of every loss). The post-net, the losses and all lengths the API takes
or returns (``mel_lengths``, ``target_length``, ``max_frames``) count frames;
cosFormer's ``M`` counts groups (``ceil(frames / r)``). ``r = 1`` is the model above.

**Decoding** is autoregressive, frame by frame (group by group), on the decoder cache
(:meth:`new_decoder_cache`, :meth:`decode_step`): a constant-size state for
the linear family, keys and values for softmax. :meth:`synthesize` runs the
whole loop and the post-net; its steps run the model's compiled fused decoder step
(:mod:`leapformer.models.fused_step`: pre-net, positions, decoder and both heads in
one compiled function; eager for cosFormer, or with ``compile_step=False``). The
pre-net's dropout stays on while decoding (Tacotron 2's rule) unless
``model.decoder_prenet.always_dropout = False``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leapformer.models.fused_step import FusedDecoderStep, shared_step, warm_up_step
from leapformer.models.seq2seq_cache import EncoderOutput, Seq2SeqCache
from leapformer.models.target_length import (
    build_length_predictor,
    fit_length_predictor,
    needs_target_length,
    predict_target_length,
    resolve_target_length,
)
from leapformer.models.tts_nets import DecoderPrenet, EncoderPrenet, Postnet, ScaledPositions
from leapformer.nn import MECHANISMS, AttentionSpec, BlockConfig, Decoder, Encoder, length_loss
from leapformer.nn.length import ConvLength, LengthPredictor

log = logging.getLogger(__name__)

__all__ = ["TTS_LOSSES", "TTS_PRESETS", "TTSConfig", "TTSOutput", "TransformerTTS",
           "frames_for_seconds", "lengths_to_mask"]

TTS_LOSSES = ("l1", "l2")

#: ``paper``: Li et al. 2019 (6+6 layers, 512 wide, 8 heads, FFN 2048, pre-nets 512/256).
#: ``lite``: 3+3 layers, 256 wide, 4 heads (trains on a CPU). ``tiny``: for tests.
TTS_PRESETS: dict[str, dict] = {
    "paper": {"d_model": 512, "nhead": 8, "num_encoder_layers": 6, "num_decoder_layers": 6,
              "dim_feedforward": 2048, "prenet_channels": 512, "prenet_hidden": 256,
              "postnet_channels": 512},
    "lite": {"d_model": 256, "nhead": 4, "num_encoder_layers": 3, "num_decoder_layers": 3,
             "dim_feedforward": 1024, "prenet_channels": 256, "prenet_hidden": 256,
             "postnet_channels": 256},
    "tiny": {"d_model": 64, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
             "dim_feedforward": 128, "prenet_channels": 64, "prenet_hidden": 64,
             "postnet_channels": 64, "dropout": 0.0},
}


@dataclass
class TTSConfig:
    """Sizes and options of a :class:`TransformerTTS` (see the module docstring)."""

    vocab_size: int
    n_mels: int = 80
    d_model: int = 256
    nhead: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 1024
    dropout: float = 0.1
    activation: str = "relu"
    prenet_channels: int = 256
    prenet_layers: int = 3
    prenet_hidden: int = 256
    prenet_dropout: float = 0.5
    postnet_channels: int = 256
    postnet_layers: int = 5
    kernel_size: int = 5
    loss: str = "l1"
    stop_pos_weight: float = 5.0
    length_loss_weight: float = 1.0
    length_hidden: int = 256
    pad_id: int = 0
    mechanism_options: dict = field(default_factory=dict)
    frames_per_step: int = 1

    def __post_init__(self):
        for name in ("vocab_size", "n_mels", "num_encoder_layers", "num_decoder_layers",
                     "prenet_channels", "prenet_layers", "prenet_hidden", "postnet_channels",
                     "postnet_layers", "kernel_size", "length_hidden", "frames_per_step"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.loss not in TTS_LOSSES:
            raise ValueError(f"loss must be one of {TTS_LOSSES}, got {self.loss!r}")
        for name in ("dropout", "prenet_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.stop_pos_weight > 0:
            raise ValueError(f"stop_pos_weight must be > 0, got {self.stop_pos_weight}")
        if self.length_loss_weight < 0:
            raise ValueError(f"length_loss_weight must be >= 0, got {self.length_loss_weight}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id={self.pad_id} is outside the vocabulary ({self.vocab_size})")
        self.block()  # validates d_model / nhead / activation

    @classmethod
    def preset(cls, name: str, vocab_size: int, **overrides) -> TTSConfig:
        """The sizes of :data:`TTS_PRESETS` ``[name]`` with ``overrides``."""
        if name not in TTS_PRESETS:
            raise ValueError(f"unknown TTS preset {name!r}; known: {sorted(TTS_PRESETS)}")
        return cls(vocab_size=vocab_size, **{**TTS_PRESETS[name], **overrides})

    def block(self) -> BlockConfig:
        return BlockConfig(d_model=self.d_model, nhead=self.nhead,
                           dim_feedforward=self.dim_feedforward, dropout=self.dropout,
                           activation=self.activation, norm_first=True)


@dataclass
class TTSOutput:
    """Teacher-forced outputs: ``mel`` and ``mel_post`` ``[B, T, n_mels]``, ``stop`` logits
    ``[B, T]``."""

    mel: Tensor
    mel_post: Tensor
    stop: Tensor


def _shape(t) -> list:
    return list(getattr(t, "shape", []))


def _check_text(text: Tensor, mask: Tensor | None, vocab: int) -> None:
    if not isinstance(text, Tensor) or text.dim() != 2 or text.dtype not in (torch.int64,
                                                                             torch.int32):
        raise ValueError(f"text must be an integer tensor [batch, length], got "
                         f"{getattr(text, 'dtype', type(text).__name__)} {_shape(text)}")
    if text.shape[1] < 1 or text.shape[0] < 1:
        raise ValueError(f"text must hold at least one item and symbol, got {_shape(text)}")
    if int(text.min()) < 0 or int(text.max()) >= vocab:
        raise ValueError(f"text holds ids outside [0, {vocab}): min {int(text.min())}, "
                         f"max {int(text.max())}")
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != text.shape:
            raise ValueError(f"text_mask must be a bool tensor {_shape(text)} (True = padding), "
                             f"got {getattr(mask, 'dtype', None)} {_shape(mask)}")
        if bool(mask[:, 0].any()):
            raise ValueError("text_mask: every item needs at least one real symbol")


def _check_mel(name: str, mel: Tensor, n_mels: int, batch: int) -> None:
    if not isinstance(mel, Tensor) or mel.dim() != 3 or not mel.is_floating_point() \
            or mel.shape[2] != n_mels or mel.shape[0] != batch or mel.shape[1] < 1:
        raise ValueError(f"{name} must be a float tensor [batch={batch}, frames>=1, "
                         f"n_mels={n_mels}], got {getattr(mel, 'dtype', type(mel).__name__)} "
                         f"{_shape(mel)}")


def lengths_to_mask(lengths: Tensor, size: int) -> Tensor | None:
    """Bool ``[B, size]`` (True = padding) for ``lengths [B]``; None when nothing is padded."""
    mask = torch.arange(size, device=lengths.device)[None, :] >= lengths[:, None]
    return mask if bool(mask.any()) else None


class TransformerTTS(nn.Module):
    """TransformerTTS with an MLA spec (see the module docstring).

    ``length_predictor``: None, ``"ratio"``, ``"lookup"``, ``"conv"`` or a
    :class:`~leapformer.nn.length.LengthPredictor`; needed for synthesis with
    a cosFormer decoder block unless ``target_length`` is given.
    """

    def __init__(self, cfg: TTSConfig, spec: AttentionSpec | str = "softmax",
                 length_predictor: str | LengthPredictor | None = None):
        super().__init__()
        if not isinstance(cfg, TTSConfig):
            raise TypeError(f"cfg must be a TTSConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.spec = AttentionSpec.parse(spec) if isinstance(spec, str) else spec
        if not isinstance(self.spec, AttentionSpec):
            raise TypeError(f"spec must be an AttentionSpec or a string, got {type(spec).__name__}")
        for block in ("dec", "cross"):
            for i in range(cfg.num_decoder_layers):
                name = self.spec.mechanism(block, i)
                if not MECHANISMS[name].full:
                    full = sorted(n for n, c in MECHANISMS.items() if c.full)
                    raise ValueError(f"mechanism {name!r} (block {block}, layer {i}) has no "
                                     f"causal/cross/decoding form; use one of {full}")
        d, block = cfg.d_model, cfg.block()
        self.encoder_prenet = EncoderPrenet(cfg.vocab_size, d, channels=cfg.prenet_channels,
                                            layers=cfg.prenet_layers, kernel_size=cfg.kernel_size,
                                            dropout=cfg.dropout, pad_id=cfg.pad_id)
        self.decoder_prenet = DecoderPrenet(cfg.n_mels * cfg.frames_per_step, d,
                                            hidden=cfg.prenet_hidden, dropout=cfg.prenet_dropout)
        self.encoder_pos, self.decoder_pos = ScaledPositions(d), ScaledPositions(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg.num_encoder_layers, block, self.spec, cfg.mechanism_options)
        self.decoder = Decoder(cfg.num_decoder_layers, block, self.spec, cfg.mechanism_options)
        self.mel_linear = nn.Linear(d, cfg.n_mels * cfg.frames_per_step)
        self.stop_linear = nn.Linear(d, cfg.frames_per_step)
        self.postnet = Postnet(cfg.n_mels, channels=cfg.postnet_channels,
                               layers=cfg.postnet_layers, kernel_size=cfg.kernel_size,
                               dropout=cfg.dropout)
        self.length_predictor = self._build_length_predictor(length_predictor)

    # -- target length ----------------------------------------------------------
    def _build_length_predictor(self, spec) -> LengthPredictor | None:
        cfg = self.cfg
        return build_length_predictor(spec, d_model=cfg.d_model, src_vocab_size=cfg.vocab_size,
                                      hidden=cfg.length_hidden, dropout=cfg.dropout)

    def set_length_predictor(self, spec: str | LengthPredictor | None) -> LengthPredictor | None:
        """Replace the length predictor (a new ``ratio``/``lookup`` one must be fitted)."""
        pred = self._build_length_predictor(spec)
        self.length_predictor = None if pred is None else pred.to(self.mel_linear.weight.device)
        return self.length_predictor

    @property
    def needs_target_length(self) -> bool:
        """True if a decoder block re-weights by the target length (cosFormer)."""
        return needs_target_length(self.decoder)

    def fit_length_predictor(self, texts: Sequence[Sequence[int]],
                             frames: Sequence[int]) -> LengthPredictor:
        """Fit the ``ratio``/``lookup`` predictor on ``texts`` (symbol id lists, as encoded)
        -> ``frames`` (mel frames per utterance). Replaces the predictor; returns it."""
        new = fit_length_predictor(self.length_predictor, texts, frames,
                                   src_vocab_size=self.cfg.vocab_size)
        self.length_predictor = new.to(self.mel_linear.weight.device)
        return self.length_predictor

    def predict_target_length(self, enc: EncoderOutput) -> Tensor:
        """Predicted mel frames ``[B]`` (>= 1) from the length predictor."""
        return predict_target_length(self.length_predictor, enc)

    # -- encoder / decoder pieces ----------------------------------------------
    def encode(self, text: Tensor, text_mask: Tensor | None = None) -> EncoderOutput:
        """Encode ``text [B, S]`` (``text_mask`` True = padding, right padding)."""
        _check_text(text, text_mask, self.cfg.vocab_size)
        if text_mask is not None and not bool(text_mask.any()):
            text_mask = None
        x = self.dropout(self.encoder_pos(self.encoder_prenet(text, text_mask)))
        memory = self.encoder(x, key_padding_mask=text_mask)
        lengths = torch.full((text.shape[0],), text.shape[1], dtype=torch.long,
                             device=text.device) if text_mask is None else (~text_mask).sum(1)
        return EncoderOutput(memory, text_mask, lengths, text)

    def _decoder_input(self, frames: Tensor, start: int) -> Tensor:
        return self.dropout(self.decoder_pos(self.decoder_prenet(frames), start))

    def _heads(self, h: Tensor) -> tuple[Tensor, Tensor]:
        stop = self.stop_linear(h)  # [B, G, r]: one logit per frame
        return self.mel_linear(h), stop.reshape(stop.shape[0], -1)

    def forward(self, text: Tensor, text_mask: Tensor | None, mel: Tensor,
                mel_lengths: Tensor | None = None, *, target_length: Tensor | int | None = None,
                enc: EncoderOutput | None = None) -> TTSOutput:
        """Teacher-forced outputs for target frames ``mel [B, T, n_mels]`` (``mel_lengths``
        [B]: real frames per item, default all ``T``). ``target_length`` (frames; cosFormer's
        ``M`` is ``ceil(target_length / frames_per_step)``) defaults to ``mel_lengths``."""
        enc = self.encode(text, text_mask) if enc is None else enc
        B = enc.batch_size
        _check_mel("mel", mel, self.cfg.n_mels, B)
        T = mel.shape[1]
        if mel_lengths is None:
            mel_lengths = torch.full((B,), T, dtype=torch.long, device=mel.device)
        if mel_lengths.shape != (B,) or bool((mel_lengths < 1).any()) or \
                bool((mel_lengths > T).any()):
            raise ValueError(f"mel_lengths must be [batch={B}] ints in [1, {T}], got "
                             f"{mel_lengths.tolist()}")
        mask = lengths_to_mask(mel_lengths, T)
        grouped = self.group(mel)
        steps = self.steps(mel_lengths)
        go = mel.new_zeros(B, 1, grouped.shape[2])
        y = self._decoder_input(torch.cat([go, grouped[:, :-1]], dim=1), 0)
        M = steps if target_length is None else self.steps(target_length)
        h = self.decoder(y, enc.memory, tgt_key_padding_mask=lengths_to_mask(steps, y.shape[1]),
                         memory_key_padding_mask=enc.padding_mask, target_length=M,
                         source_length=enc.src_lengths)
        pre, stop = self._heads(h)
        pre = self.ungroup(pre)[:, :T]
        return TTSOutput(pre, pre + self.postnet(pre, mask), stop[:, :T])

    # -- frames per step ----------------------------------------------------------
    def steps(self, frames: Tensor | int) -> Tensor | int:
        """Decoder positions (groups of ``frames_per_step``) of ``frames`` mel frames."""
        r = self.cfg.frames_per_step
        return (frames + r - 1) // r

    def group(self, mel: Tensor) -> Tensor:
        """``[B, T, n_mels] -> [B, ceil(T / r), r * n_mels]`` (the last group zero-padded)."""
        r = self.cfg.frames_per_step
        if r == 1:
            return mel
        B, T, C = mel.shape
        pad = (-T) % r
        if pad:
            mel = torch.cat([mel, mel.new_zeros(B, pad, C)], dim=1)
        return mel.reshape(B, (T + pad) // r, r * C)

    def ungroup(self, grouped: Tensor) -> Tensor:
        """``[B, G, r * n_mels] -> [B, G * r, n_mels]``."""
        B, G, _ = grouped.shape
        return grouped.reshape(B, G * self.cfg.frames_per_step, self.cfg.n_mels)

    def loss(self, text: Tensor, text_mask: Tensor | None, mel: Tensor,
             mel_lengths: Tensor | None = None) -> dict[str, Tensor]:
        """``{"loss", "mel_loss", "post_loss", "stop_loss", "length_loss"}`` of a batch
        (means over the real frames; see the module docstring)."""
        enc = self.encode(text, text_mask)
        _check_mel("mel", mel, self.cfg.n_mels, enc.batch_size)
        B, T = mel.shape[0], mel.shape[1]
        if mel_lengths is None:
            mel_lengths = torch.full((B,), T, dtype=torch.long, device=mel.device)
        out = self.forward(text, text_mask, mel, mel_lengths, enc=enc)
        valid = (torch.arange(T, device=mel.device)[None, :] < mel_lengths[:, None]).float()
        dist = F.l1_loss if self.cfg.loss == "l1" else F.mse_loss
        denom = valid.sum() * self.cfg.n_mels

        def mel_loss(pred: Tensor) -> Tensor:
            return (dist(pred, mel, reduction="none") * valid[..., None]).sum() / denom

        stop_target = F.one_hot(mel_lengths - 1, T).float()
        pos_weight = torch.tensor(self.cfg.stop_pos_weight, device=mel.device)
        stop = F.binary_cross_entropy_with_logits(out.stop, stop_target, reduction="none",
                                                  pos_weight=pos_weight)
        stop_loss = (stop * valid).sum() / valid.sum()
        pre, post = mel_loss(out.mel), mel_loss(out.mel_post)
        len_loss = pre.new_zeros(())
        if isinstance(self.length_predictor, ConvLength):
            len_loss = length_loss(self.length_predictor(enc.memory, enc.padding_mask),
                                   mel_lengths)
        total = pre + post + stop_loss + self.cfg.length_loss_weight * len_loss
        return {"loss": total, "mel_loss": pre, "post_loss": post, "stop_loss": stop_loss,
                "length_loss": len_loss}

    # -- decoding ---------------------------------------------------------------
    def new_decoder_cache(self, enc: EncoderOutput, *, target_length: Tensor | int | None = None,
                          max_length: int | None = None) -> Seq2SeqCache:
        """A decoding cache over ``enc`` (cross-attention computed once). ``target_length``
        (frames) overrides cosFormer's predicted ``M``; ``max_length``: most frames."""
        if not isinstance(enc, EncoderOutput):
            raise TypeError(f"enc must be an EncoderOutput (TransformerTTS.encode), got "
                            f"{type(enc).__name__}")
        M = resolve_target_length(enc, target_length, needed=self.needs_target_length,
                                  has_predictor=self.length_predictor is not None,
                                  predict=self.predict_target_length)
        if M is not None:
            M = self.steps(M)
        if max_length is not None:
            max_length = self.steps(max_length)
        dec = self.decoder.new_cache(enc.batch_size, max_length=max_length, memory=enc.memory,
                                     memory_key_padding_mask=enc.padding_mask,
                                     source_length=enc.src_lengths)
        return Seq2SeqCache(dec, M, enc.batch_size)

    def decode_step(self, frames: Tensor, cache: Seq2SeqCache) -> tuple[Tensor, Tensor]:
        """``(mel [B, T, r * n_mels], stop logits [B, T * r])`` (before the post-net; one
        stop logit per frame) for the
        next ``T >= 1`` decoder inputs ``frames [B, T, r * n_mels]`` (groups of ``r =
        frames_per_step`` frames, :meth:`group`; the first is the go group, zeros),
        continuing ``cache`` (updated in place)."""
        if not isinstance(cache, Seq2SeqCache):
            raise TypeError(f"cache must be a Seq2SeqCache (TransformerTTS.new_decoder_cache), "
                            f"got {type(cache).__name__}")
        _check_mel("frames", frames, self.cfg.n_mels * self.cfg.frames_per_step,
                   cache.batch_size)
        y = self._decoder_input(frames, cache.length)
        return self._heads(self.decoder(y, cache=cache.decoder,
                                        target_length=cache.target_length))

    def fused_step(self) -> FusedDecoderStep:
        """The model's shared compiled decoding step (:func:`~leapformer.models.fused_step.
        shared_step`): one group of frames through the pre-net, positions, decoder and
        both heads, ``step(frames [B,1,r*n_mels], cache.decoder, positions [B,1],
        owner=model, target_length=cache.target_length) -> (mel, stop)`` as
        :meth:`decode_step`. Compiled after its first ``COMPILE_AFTER`` steps."""
        return shared_step(self, self.decoder, embed=_step_input, head=_step_heads)

    def warm_up(self, groups: int = 4) -> bool:
        """Compile :meth:`fused_step` now, on an untimed synthesis of ``groups`` groups
        from a short dummy text (evaluations call it before timing). Returns whether
        the step is compiled (False for cosFormer decoders)."""
        token = (self.cfg.pad_id + 1) % self.cfg.vocab_size
        text = torch.full((1, 4), token, dtype=torch.long, device=self.stop_linear.weight.device)
        n = groups * self.cfg.frames_per_step
        return warm_up_step(self.fused_step(), lambda: self.synthesize(
            text, None, max_frames=n, min_frames=n, target_length=n))

    @torch.no_grad()
    def synthesize(self, text: Tensor, text_mask: Tensor | None = None, *, max_frames: int,
                   stop_threshold: float = 0.5, min_frames: int = 1,
                   target_length: Tensor | int | None = None,
                   enc: EncoderOutput | None = None,
                   compile_step: bool = True) -> tuple[Tensor, Tensor]:
        """``(mel_post [B, T, n_mels], lengths [B])``: frame-by-frame (group-by-group)
        decoding until ``sigmoid(stop) > stop_threshold`` (from frame ``min_frames`` on)
        or ``max_frames``; the post-net runs once at the end over each item's frames.
        With ``frames_per_step = r`` the stop logits of a group are read frame by frame.
        ``compile_step``: decode on :meth:`fused_step` (default) or, ``False``, the eager
        :meth:`decode_step`."""
        if not isinstance(compile_step, bool):
            raise TypeError(f"compile_step must be a bool, got {compile_step!r}")
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(f"max_frames must be a positive int, got {max_frames!r}")
        if (isinstance(min_frames, bool) or not isinstance(min_frames, int)
                or not 1 <= min_frames <= max_frames):
            raise ValueError(f"min_frames must be an int in [1, max_frames={max_frames}], got "
                             f"{min_frames!r}")
        if not 0.0 < stop_threshold < 1.0:
            raise ValueError(f"stop_threshold must be in (0, 1), got {stop_threshold}")
        enc = self.encode(text, text_mask) if enc is None else enc
        B, r = enc.batch_size, self.cfg.frames_per_step
        cache = self.new_decoder_cache(enc, target_length=target_length, max_length=max_frames)
        frame = enc.memory.new_zeros(B, 1, self.cfg.n_mels * r)
        lengths = torch.full((B,), max_frames, dtype=torch.long, device=frame.device)
        done = torch.zeros(B, dtype=torch.bool, device=frame.device)
        step = self.fused_step() if compile_step else None
        out = []
        for t in range(self.steps(max_frames)):
            if step is None:
                frame, stop = self.decode_step(frame, cache)
            else:
                positions = torch.full((B, 1), cache.length + 1, dtype=torch.long,
                                       device=frame.device)
                frame, stop = step(frame, cache.decoder, positions, owner=self,
                                   target_length=cache.target_length)
            out.append(frame)
            for f in range(r):
                n = t * r + f + 1
                if min_frames <= n <= max_frames:
                    now = (torch.sigmoid(stop[:, f]) > stop_threshold) & ~done
                    lengths[now] = n
                    done |= now
            if bool(done.all()):
                break
        mel = self.ungroup(torch.cat(out, dim=1))[:, :int(lengths.max())]
        mask = lengths_to_mask(lengths, mel.shape[1])
        post = mel + self.postnet(mel, mask)
        if mask is not None:
            post = post.masked_fill(mask[..., None], 0.0)
        return post, lengths

    def extra_repr(self) -> str:
        return f"spec={self.spec}, params={sum(p.numel() for p in self.parameters()):,}"


def _step_input(model: TransformerTTS, frames: Tensor, positions: Tensor) -> Tensor:
    """The decoder input of one group at ``positions [B, 1]``: what
    :meth:`TransformerTTS.decode_step` computes, with positions as a tensor."""
    return model.dropout(model.decoder_pos.at(model.decoder_prenet(frames), positions))


def _step_heads(model: TransformerTTS, h: Tensor) -> tuple[Tensor, Tensor]:
    return model._heads(h)


def frames_for_seconds(seconds: float, sample_rate: int = 22050, hop: int = 256) -> int:
    """Mel frames of ``seconds`` of audio (``1 + samples // hop``, centred frames)."""
    return 1 + int(math.floor(seconds * sample_rate)) // hop
